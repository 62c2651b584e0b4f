"""Running commands without a shell: exit codes, stderr in errors, stdin, timeouts, children."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wiremesh.agent.backend import BackendUnavailable
from wiremesh.agent.wireguard.commands import CommandError, SubprocessRunner

PY = sys.executable


async def test_a_command_s_output_and_stdin() -> None:
    runner = SubprocessRunner()
    code = "import sys; print(sys.stdin.read().upper(), end='')"
    result = await runner.run([PY, "-c", code], stdin="secret-key\n")
    assert result.returncode == 0
    assert result.stdout == "SECRET-KEY\n"


async def test_without_stdin_the_command_reads_nothing() -> None:
    result = await SubprocessRunner().run([PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert result.stdout.strip() == "''"


async def test_a_failure_names_the_command_its_status_and_stderr() -> None:
    code = "import sys; sys.stderr.write('Unable to modify interface: No such device\\n'); exit(1)"
    with pytest.raises(CommandError) as caught:
        await SubprocessRunner().run([PY, "-c", code])
    error = caught.value
    assert isinstance(error, OSError)
    assert error.returncode == 1
    assert error.stderr == "Unable to modify interface: No such device"
    assert str(error).startswith(f"`{PY} -c ")
    assert "failed with exit status 1: Unable to modify interface: No such device" in str(error)


async def test_a_missing_program_is_a_backend_that_cannot_run() -> None:
    with pytest.raises(BackendUnavailable, match="the `no-such-tool-wm` command is not installed"):
        await SubprocessRunner().run(["no-such-tool-wm", "show"])


async def test_a_hanging_command_is_killed_and_reported() -> None:
    runner = SubprocessRunner(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"timed out: no answer within 0\.3 s"):
        await runner.run([PY, "-c", "import time; time.sleep(30)"])
    assert time.monotonic() - started < 5


async def test_the_prefix_runs_every_command_through_another() -> None:
    runner = SubprocessRunner(prefix=("env", "WM_PREFIXED=yes"))
    result = await runner.run([PY, "-c", "import os; print(os.environ['WM_PREFIXED'])"])
    assert result.argv[:2] == ("env", "WM_PREFIXED=yes")
    assert result.stdout.strip() == "yes"


async def test_messages_of_the_tools_are_untranslated() -> None:
    result = await SubprocessRunner().run([PY, "-c", "import os; print(os.environ['LC_ALL'])"])
    assert result.stdout.strip() == "C"


async def test_a_child_runs_in_its_own_session_with_its_output_merged() -> None:
    code = "import sys; print('out', flush=True); print('err', file=sys.stderr, flush=True)"
    child = await SubprocessRunner().start([PY, "-c", code], env={"WM_X": "1"})
    assert child.stdout is not None
    output = await child.stdout.read()
    await child.wait()
    assert sorted(output.decode().split()) == ["err", "out"]


async def test_a_child_s_session_is_not_ours() -> None:
    child = await SubprocessRunner().start([PY, "-c", "import time; time.sleep(30)"], env={})
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        await child.wait()


def test_a_child_dies_with_the_agent_even_when_the_agent_is_killed() -> None:
    """The agent stand-in starts a long-running child, prints its pid, and is SIGKILL-ed."""
    agent = textwrap.dedent(
        f"""
        import asyncio, sys
        from wiremesh.agent.wireguard.commands import SubprocessRunner

        async def main():
            child = await SubprocessRunner().start(
                [{PY!r}, "-c", "import time; time.sleep(60)"], env={{}}
            )
            print(child.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    process = subprocess.Popen([PY, "-c", agent], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        child_pid = int(process.stdout.readline())
        os.kill(child_pid, 0)  # running
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _running(child_pid):
            assert time.monotonic() < deadline, "the child outlived the agent"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_cancelling_a_command_kills_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran-to-the-end"
    code = f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(marker)!r}).touch()"
    task = asyncio.create_task(SubprocessRunner().run([PY, "-c", code]))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.8)
    assert not marker.exists()
