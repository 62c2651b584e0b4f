"""Running the system's tools (``wg``, ``ip``, ``wireguard-go``) without a shell.

Every command is an argument vector run with :func:`asyncio.create_subprocess_exec`; its
exit status is checked and a failure carries the command line and its stderr. Nothing
secret is ever put on a command line (``ps`` shows it to every user): the private key
goes through standard input (``wg set <iface> private-key /dev/stdin``), so the command
line in an error message is safe to log.

:class:`CommandRunner` is the narrow interface the backends use; :class:`SubprocessRunner`
is the real one. Its ``prefix`` runs every command through another (``ip netns exec NS``),
which is how the tests drive a backend inside a network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from wiremesh.agent.backend import BackendUnavailable

__all__ = [
    "COMMAND_TIMEOUT",
    "CommandError",
    "CommandResult",
    "CommandRunner",
    "SubprocessRunner",
    "format_argv",
]

logger = logging.getLogger("wiremesh.agent.wireguard")

COMMAND_TIMEOUT: Final = 30.0
"""A ``wg`` or ``ip`` call that takes longer than this is killed and reported."""

STDERR_LIMIT: Final = 2000
"""Characters of a failed command's stderr kept in the error message."""

_TOOL_ENV: Final = {"LC_ALL": "C"}
"""Untranslated messages: the backends recognise some of them."""

_PR_SET_PDEATHSIG: Final = 1


def format_argv(argv: Sequence[str]) -> str:
    """The command line as a person would type it (for messages; never holds a secret)."""
    return shlex.join(argv)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A finished command: its exit status and what it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(OSError):
    """A command failed (non-zero exit, timeout). The message names it and quotes stderr."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        status = "timed out" if returncode is None else f"failed with exit status {returncode}"
        detail = self.stderr[:STDERR_LIMIT] or "no error output"
        super().__init__(f"`{format_argv(argv)}` {status}: {detail}")


class CommandRunner(Protocol):
    """Runs the tools a backend needs; the seam between a backend and the system."""

    async def run(self, argv: Sequence[str], *, stdin: str | None = None) -> CommandResult:
        """Run ``argv`` to completion; :class:`CommandError` unless it exits with 0.

        ``stdin`` is written to the command's standard input (the only way a secret is
        ever passed), which is otherwise empty.
        """
        ...

    async def start(
        self, argv: Sequence[str], *, env: Mapping[str, str]
    ) -> asyncio.subprocess.Process:
        """Start a long-running child with stdout and stderr merged into one pipe.

        It runs in its own session (terminal signals do not reach it: the agent stops it
        in order) and receives SIGTERM when the agent dies, so it never outlives the agent.
        """
        ...


@dataclass(frozen=True, slots=True)
class SubprocessRunner:
    """Runs commands as child processes, each behind ``prefix`` (e.g. ``ip netns exec NS``)."""

    prefix: tuple[str, ...] = ()
    timeout: float = COMMAND_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for every command (on top of this process's)."""

    def _argv(self, argv: Sequence[str]) -> list[str]:
        if not argv:
            raise ValueError("empty command")
        return [*self.prefix, *argv]

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**os.environ, **_TOOL_ENV, **self.env, **extra}

    async def run(self, argv: Sequence[str], *, stdin: str | None = None) -> CommandResult:
        full = self._argv(argv)
        try:
            process = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environment({}),
            )
        except FileNotFoundError:
            raise BackendUnavailable(f"the `{full[0]}` command is not installed") from None
        data = stdin.encode("utf-8") if stdin is not None else None
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate(data)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise CommandError(full, None, f"no answer within {self.timeout:g} s") from None
        except BaseException:  # cancelled: do not leave the child behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        result = CommandResult(
            tuple(full),
            process.returncode if process.returncode is not None else -1,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
        )
        if result.returncode != 0:
            raise CommandError(full, result.returncode, result.stderr)
        return result

    async def start(
        self, argv: Sequence[str], *, env: Mapping[str, str]
    ) -> asyncio.subprocess.Process:
        full = self._argv(argv)
        try:
            return await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._environment(env),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError:
            raise BackendUnavailable(f"the `{full[0]}` command is not installed") from None


def _load_prctl() -> Callable[..., object] | None:
    try:
        prctl: Callable[..., object] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):  # not Linux or no libc symbol: no parent-death signal
        return None


_prctl = _load_prctl()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the agent dies, even by SIGKILL.

    Without it, an agent killed hard would leave wireguard-go running with the old
    configuration; the next start would then have to clean up after it.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
