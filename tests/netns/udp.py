"""UDP sockets on lab machines, driven from the test over pipes: what the NAT tests send and see.

The test makes a :class:`UdpSocket` on a machine; it runs this file as a script there
(``python udp.py --port P``, standard library only) and talks to it in JSON lines. The
socket lives as long as the script does, so one source port can be used for several steps,
as a WireGuard socket is. Two kinds:

- an **echo** socket (``echo=True``, one or more ports) answers every datagram with the
  ``ip:port`` it came from: a tiny STUN server that shows a NAT's public mapping;
- a **command** socket sends, collects what arrives (and ICMP errors, with
  ``IP_RECVERR``), asks an echo socket for its mapping, or punches: sends to a peer every
  20 ms until something from that peer arrives.

A step that waits returns as soon as what it waits for happened; only its ``seconds``
bound it. :meth:`UdpSocket.begin` and :meth:`UdpSocket.answer` split a request so that
two machines can act at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SCRIPT = Path(__file__).resolve()
ASK = b"?"
"""What :meth:`UdpSocket.ask` sends to an echo socket."""
PUNCH_INTERVAL = 0.02
ASK_INTERVAL = 0.05
PUNCH_TAIL = 3
"""Datagrams a punch still sends after hearing the peer, so the peer hears it too."""
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_EXTENDED_ERROR = struct.Struct("=IBBBBII")
"""``struct sock_extended_err``: errno, origin, ICMP type and code, pad, info, data."""
_ANSWER_GRACE = 5.0
"""Seconds an answer may take beyond the step's own bound before the test gives up."""

Address = tuple[str, int]


# ---------------------------------------------------------------------- on the machine


def _address(value: Any) -> Address:
    host, port = value
    return str(host), int(port)


class _Socket:
    """The script's side: one UDP socket, what arrived on it, and the steps."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_IP, _IP_RECVERR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.inbox: list[tuple[str, str, int]] = []
        self.errors: list[dict[str, Any]] = []

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the socket, then take in all it has."""
        if not self.selector.select(max(0.0, timeout)):
            return
        while True:
            try:
                _data, ancillary, _flags, target = self.sock.recvmsg(64, 512, _MSG_ERRQUEUE)
            except BlockingIOError:
                break
            for level, kind, payload in ancillary:
                if level == socket.SOL_IP and kind == _IP_RECVERR:
                    errno, _origin, icmp_type, icmp_code, _pad, _info, _extra = (
                        _EXTENDED_ERROR.unpack_from(payload)
                    )
                    offender = socket.inet_ntoa(payload[_EXTENDED_ERROR.size + 4 :][:4])
                    self.errors.append(
                        {
                            "errno": errno,
                            "icmp": [icmp_type, icmp_code],
                            "offender": offender,
                            "to": list(target),
                        }
                    )
        while True:
            try:
                data, sender = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            except ConnectionRefusedError:  # the pending error, already read from the queue
                continue
            self.inbox.append((data.decode(errors="replace"), sender[0], sender[1]))

    def heard_from(self, peer: Address) -> bool:
        return any((host, port) == peer for _data, host, port in self.inbox)

    def take(self) -> dict[str, Any]:
        inbox, errors = self.inbox, self.errors
        self.inbox, self.errors = [], []
        return {"inbox": [list(item) for item in inbox], "errors": errors}

    def step(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        seconds = float(request.get("seconds", 0))
        deadline = time.monotonic() + seconds
        if op == "send":
            to = _address(request["to"])
            for _ in range(int(request.get("count", 1))):
                self.sock.sendto(str(request["data"]).encode(), to)
            return {}
        if op == "take":  # what arrived until now, or until ``until`` did (within seconds)
            until = request.get("until")
            while time.monotonic() < deadline:
                if until is not None and self.heard_from(_address(until)):
                    break
                if until is None and (self.inbox or self.errors):
                    break
                self.pump(deadline - time.monotonic())
            self.pump(0)
            return self.take()
        if op == "ask":  # "?" to an echo socket until it says where it saw us from
            server = _address(request["to"])
            while time.monotonic() < deadline:
                self.sock.sendto(ASK, server)
                until = min(deadline, time.monotonic() + ASK_INTERVAL)
                while time.monotonic() < until:
                    self.pump(until - time.monotonic())
                    for index, (data, host, port) in enumerate(self.inbox):
                        if (host, port) == server:
                            del self.inbox[index]
                            mapped_host, _, mapped_port = data.rpartition(":")
                            return {"mapped": [mapped_host, int(mapped_port)]}
            return {"mapped": None}
        if op == "punch":  # send to the peer until it is heard, then a few more
            peer = _address(request["to"])
            started = time.monotonic()
            sent = 0
            while time.monotonic() < deadline:
                self.sock.sendto(b"punch", peer)
                sent += 1
                until = min(deadline, time.monotonic() + PUNCH_INTERVAL)
                while time.monotonic() < until and not self.heard_from(peer):
                    self.pump(until - time.monotonic())
                if self.heard_from(peer):
                    for _ in range(PUNCH_TAIL):
                        self.sock.sendto(b"punch", peer)
                    return {"heard": True, "seconds": time.monotonic() - started, "sent": sent}
            return {"heard": False, "seconds": time.monotonic() - started, "sent": sent}
        raise ValueError(f"unknown op {op!r}")


def _echo(ports: list[int]) -> None:
    """Answer every datagram with its sender's ``ip:port``, until standard input closes."""
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    selector.register(sys.stdin, selectors.EVENT_READ)
    print(json.dumps({"ports": [sock.getsockname()[1] for sock in sockets]}), flush=True)
    while True:
        for key, _events in selector.select():
            if not isinstance(key.fileobj, socket.socket):  # standard input
                if not sys.stdin.readline():
                    return
                continue
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                _data, (host, port) = key.fileobj.recvfrom(65535)
                key.fileobj.sendto(f"{host}:{port}".encode(), (host, port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--echo", action="store_true")
    args = parser.parse_args()
    if args.echo:
        _echo(args.port or [0])
        return
    ours = _Socket(args.port[0] if args.port else 0)
    print(json.dumps({"ports": [ours.sock.getsockname()[1]]}), flush=True)
    for line in sys.stdin:
        try:
            answer = ours.step(json.loads(line))
        except Exception as exc:  # reported to the test, which fails with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


# ---------------------------------------------------------------------- in the test


class _Machine(Protocol):
    name: str
    address: str

    def argv(self, *command: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Received:
    """What arrived on a socket: datagrams (text, sender) and ICMP errors."""

    datagrams: list[tuple[str, Address]]
    errors: list[dict[str, Any]]

    def texts_from(self, sender: Address) -> list[str]:
        return [text for text, source in self.datagrams if source == sender]


class UdpSocket:
    """A UDP socket on a lab machine (see the module doc); :meth:`close` ends it."""

    def __init__(
        self,
        machine: _Machine,
        port: int = 0,
        *,
        echo: bool = False,
        extra_ports: tuple[int, ...] = (),
    ) -> None:
        self.machine = machine
        argv = [sys.executable, str(SCRIPT), "--port", str(port)]
        for extra in extra_ports:
            argv += ["--port", str(extra)]
        if echo:
            argv.append("--echo")
        self.process = subprocess.Popen(
            machine.argv(*argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        self._pending = 0.0
        try:
            self.ports: list[int] = self._line(10)["ports"]
        except BaseException:
            self.close()
            raise

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def address(self) -> Address:
        """Where the machine's neighbours send to: its ``eth0`` address and the port."""
        return self.machine.address, self.port

    def begin(self, op: str, **fields: Any) -> None:
        """Start a step; its result is :meth:`answer`'s."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        self._pending = float(fields.get("seconds", 0))

    def answer(self) -> dict[str, Any]:
        result = self._line(self._pending + _ANSWER_GRACE)
        if "error" in result:
            raise AssertionError(f"udp socket on {self.machine.name}: {result['error']}")
        return result

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.begin(op, **fields)
        return self.answer()

    def send(self, to: Address, data: str, count: int = 1) -> None:
        self.request("send", to=list(to), data=data, count=count)

    def ask(self, server: Address, seconds: float = 3) -> Address | None:
        """The address and port ``server`` (an echo socket) sees this socket's datagrams from."""
        mapped = self.request("ask", to=list(server), seconds=seconds)["mapped"]
        return None if mapped is None else (str(mapped[0]), int(mapped[1]))

    def take(self, seconds: float = 0, until: Address | None = None) -> Received:
        """What arrived so far; waits up to ``seconds`` for a datagram from ``until`` (or,
        without it, for anything) first."""
        fields: dict[str, Any] = {"seconds": seconds}
        if until is not None:
            fields["until"] = list(until)
        result = self.request("take", **fields)
        return Received(
            [(text, (host, port)) for text, host, port in result["inbox"]], result["errors"]
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _line(self, seconds: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(seconds):
                raise AssertionError(f"udp socket on {self.machine.name}: no answer in {seconds} s")
        line = stdout.readline()
        if not line:
            raise AssertionError(
                f"udp socket on {self.machine.name} exited ({self.process.wait()})"
            )
        result: dict[str, Any] = json.loads(line)
        return result


if __name__ == "__main__":
    main()
