"""A scripted stand-in for `ip` and `wg`, and a fake wireguard-go process, for unit tests."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wiremesh.agent.wireguard.commands import CommandError, CommandResult

FAKE_WIREGUARD_GO = Path(__file__).with_name("fake_wireguard_go.py")


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    stdin: str | None


@dataclass
class FakeRunner:
    """Answers the commands the backends run, like a system with a few links would.

    ``links`` maps interface names to their kind; ``dump`` is what ``wg show X dump``
    prints; ``failures`` maps an argv prefix to the stderr of a failure of that command.
    ``start`` runs the fake wireguard-go script with the socket path of ``socket_dir``.
    """

    socket_dir: Path | None = None
    links: dict[str, str] = field(default_factory=dict)
    dump: str = ""
    random_port: int = 40123
    failures: dict[tuple[str, ...], str] = field(default_factory=dict)
    fail_start: bool = False
    calls: list[Call] = field(default_factory=list)
    started: list[tuple[tuple[str, ...], dict[str, str]]] = field(default_factory=list)

    def commands(self) -> list[list[str]]:
        """Every command run, less the ``ip link show`` look-ups."""
        return [list(c.argv) for c in self.calls if c.argv[:3] != ("ip", "-details", "-json")]

    async def run(self, argv: Sequence[str], *, stdin: str | None = None) -> CommandResult:
        args = tuple(argv)
        self.calls.append(Call(args, stdin))
        for prefix, stderr in self.failures.items():
            if args[: len(prefix)] == prefix:
                raise CommandError(args, 1, stderr)
        stdout = ""
        match args:
            case ("ip", "-details", "-json", "link", "show", "dev", name):
                if name not in self.links:
                    raise CommandError(args, 1, f'Device "{name}" does not exist.')
                info = {"info_kind": self.links[name]} if self.links[name] else None
                entry: dict[str, object] = {"ifname": name}
                if info is not None:
                    entry["linkinfo"] = info
                stdout = json.dumps([entry])
            case ("ip", "link", "add", "dev", name, "type", kind):
                self.links[name] = kind
            case ("ip", "link", "delete", "dev", name):
                if self.links.pop(name, None) is None:
                    raise CommandError(args, 1, 'Cannot find device "wm0"')
            case ("wg", "show", _name, "dump"):
                stdout = self.dump
            case ("wg", "show", _name, "listen-port"):
                stdout = f"{self.random_port}\n"
        return CommandResult(args, 0, stdout, "")

    async def start(
        self, argv: Sequence[str], *, env: Mapping[str, str]
    ) -> asyncio.subprocess.Process:
        assert self.socket_dir is not None, "this runner cannot start processes"
        self.started.append((tuple(argv), dict(env)))
        interface = argv[-1]
        socket_path = self.socket_dir / f"{interface}.sock"
        if not self.fail_start:
            self.links[interface] = "tun"
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(FAKE_WIREGUARD_GO),
            str(socket_path),
            "fail" if self.fail_start else "run",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
