"""Simulated agents: many per process, speaking the real protocol (the load generator's
worker side; :mod:`benchmarks.loadgen` drives the processes).

Each simulated agent opens a real WebSocket (:mod:`benchmarks.wsclient`, no compression),
authenticates with its device credential, answers every ping with a pong carrying the
ping's ``seq``, applies the welcome and every ``peers_delta`` to its peer map, and
reconnects by itself with full-jitter exponential backoff like the real agent. It can be
told to fall silent (stop answering pings, keep the socket open) or to close cleanly.

A worker process (``python -m benchmarks.simagents``) reads one JSON command per stdin line
and answers one JSON object per stdout line. It raises ``RLIMIT_NOFILE`` and spreads its
sockets over the source addresses it is given.

Parsers: ``light`` (default) decodes frames with ``json.loads`` and keeps ``peer_id ->
online``; ``session`` runs :class:`wiremesh.protocol.AgentSession` (full validation, as
the real agent). ``python -m benchmarks.loadgen parsers`` measures both. Welcomes of more
than ``peer_dict_max`` peers are only counted (header read with a regex), because ten
thousand agents each holding ten thousand peers would not fit the load generator's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from benchmarks.wsclient import OP_TEXT, LeanConnection, encode_client_frame, open_connection
from wiremesh.agent.backoff import Backoff
from wiremesh.protocol import (
    MAX_SERVER_MESSAGE_BYTES,
    AgentSession,
    AuthMessage,
    PeersChanged,
    PongMessage,
    ProtocolError,
    WelcomeReceived,
    encode,
    should_reconnect,
)

AGENT_VERSION = "wiremesh-bench/1"
OPEN_TIMEOUT = 30.0
LARGE_WELCOME_BYTES = 256 * 1024
_WELCOME_HEADER = re.compile(
    r'"connection_id":"(?P<cid>[^"]+)","device":\{"peer_id":"(?P<pid>[^"]+)"'
)


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def text_frame(text: str) -> bytes:
    """A protocol message as one masked client frame."""
    return encode_client_frame(OP_TEXT, text.encode())


@functools.lru_cache(maxsize=1 << 16)
def pong_frame(seq: int) -> bytes:
    """The pong answering ping ``seq`` (the protocol's encoder), as a frame. Cached, mask
    and all: seqs count up from 1 on every connection, so the agents of a worker answer the
    same few thousand. (A mask's unpredictability protects proxies from scripts in
    browsers; nothing of that exists between a load generator and a server on loopback.)"""
    return text_frame(encode(PongMessage(seq=seq)))


def auth_frame(credential: str) -> bytes:
    return text_frame(
        encode(AuthMessage(credential=credential, listen_port=51820, agent_version=AGENT_VERSION))
    )


# --------------------------------------------------------------------------- agent


class Agent:
    """One simulated agent and what happened to it."""

    __slots__ = (
        "close_code",
        "close_started_at",
        "closed_at",
        "connect_started_at",
        "connected_at",
        "connection_id",
        "connects",
        "credential",
        "index",
        "last_pong_at",
        "peer_count",
        "peer_id",
        "peers",
        "pongs",
        "reconnect",
        "replica",
        "session",
        "silenced_at",
        "silent",
        "source",
        "state",
        "stopping",
        "task",
        "welcome_at",
        "welcome_waiter",
        "welcomes",
        "ws",
    )

    def __init__(self, index: int, credential: str, source: str) -> None:
        self.index = index
        self.credential = credential
        self.source = source
        self.state = "idle"
        self.replica = 0
        self.task: asyncio.Task[None] | None = None
        self.ws: LeanConnection | None = None
        self.welcome_waiter: asyncio.Future[None] | None = None
        self.session: AgentSession | None = None
        self.silent = False
        self.stopping = False
        self.reconnect = True
        self.peer_id: str | None = None
        self.connection_id: str | None = None
        self.peers: dict[str, bool] | None = None
        self.peer_count = 0
        self.connects = 0
        self.welcomes = 0
        self.pongs = 0
        self.connect_started_at = 0.0
        self.connected_at = 0.0
        self.welcome_at = 0.0
        self.last_pong_at = 0.0
        self.silenced_at = 0.0
        self.close_started_at = 0.0
        self.closed_at = 0.0
        self.close_code: int | None = None

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": self.state,
            "peer_id": self.peer_id,
            "connection_id": self.connection_id,
            "peer_count": self.peer_count,
            "connects": self.connects,
            "welcomes": self.welcomes,
            "pongs": self.pongs,
            "connect_started_at": self.connect_started_at,
            "welcome_at": self.welcome_at,
            "last_pong_at": self.last_pong_at,
            "silenced_at": self.silenced_at,
            "close_started_at": self.close_started_at,
            "closed_at": self.closed_at,
            "close_code": self.close_code,
        }


class Worker:
    """The agents of one process and the commands that drive them."""

    def __init__(
        self,
        urls: list[str],
        agents: Iterable[tuple[int, str]],
        *,
        addresses: int,
        parser: str = "light",
        backoff_base: float = 0.5,
        backoff_cap: float = 5.0,
        max_pending: int = 100,
        peer_dict_max: int = 2000,
        seed: int = 0,
    ) -> None:
        if parser not in ("light", "session"):
            raise ValueError(f"unknown parser {parser!r}")
        self.urls = urls
        self.parser = parser
        # The agent's backoff; the count starts again at every welcome (reset_after=0).
        self.backoff = Backoff(
            base=backoff_base, cap=max(backoff_cap, backoff_base), reset_after=0.0
        )
        self.peer_dict_max = peer_dict_max
        self.pending = asyncio.Semaphore(max_pending)
        self.rng = random.Random(seed)
        self.agents = {
            index: Agent(index, credential, f"127.0.0.{2 + index % addresses}")
            for index, credential in agents
        }
        self.watched: set[str] = set()
        self.arrivals: dict[str, dict[int, float]] = {}
        self.close_codes: Counter[str] = Counter()
        self.connect_errors: Counter[str] = Counter()
        self._intern: dict[str, str] = {}
        self.states: Counter[str] = Counter({"idle": len(self.agents)})
        self.totals: Counter[str] = Counter(
            dict.fromkeys(("connects", "welcomes", "pings", "pongs", "deltas", "errors"), 0)
        )
        self.last_welcome_at = 0.0

    # ---------------------------------------------------------------- commands

    def connect(self, indices: Iterable[int], *, ramp: bool = True) -> int:
        """Start agents (not already running); ``ramp`` caps handshakes in flight."""
        started = 0
        for index in indices:
            agent = self.agents[index]
            if agent.task is not None and not agent.task.done():
                continue
            agent.stopping = False
            agent.silent = False
            agent.reconnect = True
            agent.task = asyncio.create_task(self._run(agent, ramp))
            started += 1
        return started

    def route(self, indices: Iterable[int], replica: int) -> int:
        """Send these agents' next connects to server ``replica`` (an index into the URLs)."""
        if not 0 <= replica < len(self.urls):
            raise ValueError(f"no server replica {replica}")
        count = 0
        for index in indices:
            self.agents[index].replica = replica
            count += 1
        return count

    def silence(self, indices: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Stop answering pings (socket stays open, no reconnect after the server drops it)."""
        now = time.time()
        out = {}
        for index in indices:
            agent = self.agents[index]
            agent.silent = True
            agent.reconnect = False
            agent.silenced_at = now
            out[index] = agent.report()
        return out

    async def close(self, indices: Iterable[int], concurrency: int = 50) -> dict[int, Any]:
        """Close cleanly (1000) and stop; returns each agent's close timestamps."""
        gate = asyncio.Semaphore(concurrency)

        async def close_one(agent: Agent) -> None:
            async with gate:
                agent.stopping = True
                agent.reconnect = False
                ws = agent.ws
                if agent.state == "established" and ws is not None:
                    agent.close_started_at = time.time()
                    with contextlib.suppress(Exception):
                        await ws.close()
                    agent.closed_at = time.time()
                task = agent.task
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                self._set_state(agent, "closed")

        chosen = [self.agents[index] for index in indices]
        await asyncio.gather(*(close_one(agent) for agent in chosen))
        return {agent.index: agent.report() for agent in chosen}

    def watch(self, peer_ids: Iterable[str]) -> None:
        for peer_id in peer_ids:
            self.watched.add(peer_id)
            self.arrivals.setdefault(peer_id, {})

    def arrival_times(self, peer_id: str) -> dict[int, float]:
        return dict(self.arrivals.get(peer_id, {}))

    def stats(self, since: float = 0.0) -> dict[str, Any]:
        """Counts kept as agents change, so the driver's polls cost nothing per agent (they
        come every half second through a ramp of tens of thousands); only ``since`` (the
        storms) looks at the agents one by one."""
        welcomed_since = self.states["established"]
        last_welcome = self.last_welcome_at
        if since > 0:
            welcomed = [
                agent.welcome_at
                for agent in self.agents.values()
                if agent.state == "established" and agent.welcome_at >= since
            ]
            welcomed_since, last_welcome = len(welcomed), max(welcomed, default=0.0)
        return {
            "states": {state: count for state, count in self.states.items() if count},
            "welcomed_since": welcomed_since,
            "last_welcome_at": last_welcome,
            "totals": dict(self.totals),
            "close_codes": dict(self.close_codes),
            "connect_errors": dict(self.connect_errors),
        }

    def _set_state(self, agent: Agent, state: str) -> None:
        self.states[agent.state] -= 1
        self.states[state] += 1
        agent.state = state

    def sessions(self, indices: Iterable[int]) -> dict[int, dict[str, Any]]:
        return {index: self.agents[index].report() for index in indices}

    async def shutdown(self) -> None:
        await self.close(list(self.agents), concurrency=500)

    # ---------------------------------------------------------------- one agent

    async def _run(self, agent: Agent, ramp: bool) -> None:
        attempt = 0
        gate: asyncio.Semaphore | None = self.pending if ramp else None
        while not agent.stopping:
            self._set_state(agent, "connecting")
            agent.connect_started_at = time.time()
            if gate is not None:
                async with gate:
                    ws = await self._open(agent)
                    if ws is not None and agent.welcome_waiter is not None:
                        # A handshake slot is held until the welcome (or the end).
                        await asyncio.wait(
                            (agent.welcome_waiter, ws.closed),
                            return_when=asyncio.FIRST_COMPLETED,
                        )
            else:
                ws = await self._open(agent)
            welcomed = False
            code: int | None = None
            if ws is not None:
                try:
                    await ws.closed
                finally:
                    ws.abort()
                    agent.ws = None
                welcomed = agent.welcome_waiter is not None and agent.welcome_waiter.done()
                if not agent.stopping:
                    agent.closed_at = time.time()
                agent.close_code = code = ws.close_code
                self.close_codes[str(ws.close_code)] += 1
            if agent.stopping or not agent.reconnect:
                break
            if code is not None and not should_reconnect(code):
                break
            if welcomed:
                attempt = 0
            self._set_state(agent, "backoff")
            await asyncio.sleep(self.backoff.delay(attempt, self.rng))
            attempt += 1
            gate = None  # reconnects are the agents' own, never paced by the driver
        self._set_state(agent, "closed")

    async def _open(self, agent: Agent) -> LeanConnection | None:
        """Connect and authenticate; None (counted) when the connection failed."""
        agent.welcome_waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                ws = await open_connection(
                    self.urls[agent.replica],
                    functools.partial(self._on_message, agent),
                    local_addr=(agent.source, 0),
                    max_size=MAX_SERVER_MESSAGE_BYTES,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.totals["errors"] += 1
            self.connect_errors[type(exc).__name__] += 1
            return None
        agent.ws = ws
        agent.connected_at = time.time()
        agent.connects += 1
        self.totals["connects"] += 1
        agent.session = AgentSession(time.monotonic()) if self.parser == "session" else None
        ws.send_frame(auth_frame(agent.credential))
        return ws

    def _on_message(self, agent: Agent, ws: LeanConnection, payload: bytes) -> None:
        """One server message, in the connection's ``data_received``: pongs are written
        at once, a protocol error closes like the real agent."""
        try:
            pong = self._handle(agent, payload)
        except ProtocolError as exc:
            self.close_codes[f"agent:{exc.code.name.lower()}"] += 1
            ws.start_close(exc.code, exc.reason)
            return
        if pong is not None:
            ws.send_frame(pong)
            agent.pongs += 1
            self.totals["pongs"] += 1
            agent.last_pong_at = time.time()

    def _handle(self, agent: Agent, frame: str | bytes) -> bytes | None:
        """Apply one server frame; returns the pong frame to send, if any."""
        if agent.session is not None:
            return self._handle_session(agent, frame)
        if isinstance(frame, bytes):
            frame = frame.decode()
        if len(frame) > LARGE_WELCOME_BYTES and frame.startswith('{"type":"welcome"'):
            match = _WELCOME_HEADER.search(frame, 0, 4096)
            if match is None:
                raise ValueError("welcome without connection_id/device")
            # Every peer carries one "peer_id"; the device object carries one more.
            self._welcomed(agent, match["cid"], match["pid"], None, frame.count('"peer_id":') - 1)
            return None
        message = json.loads(frame)
        kind = message["type"]
        if kind == "ping":
            self.totals["pings"] += 1
            return None if agent.silent else pong_frame(message["seq"])
        if kind == "peers_delta":
            self.totals["deltas"] += 1
            peers = agent.peers
            now = time.time()
            for change in message["changes"]:
                if change["op"] == "upsert":
                    peer = change["peer"]
                    peer_id = peer["peer_id"]
                    if peers is not None:
                        peers[self._intern.setdefault(peer_id, peer_id)] = peer["online"]
                    if peer["online"] and peer_id in self.watched:
                        self.arrivals[peer_id].setdefault(agent.index, now)
                elif peers is not None:
                    peers.pop(change["peer_id"], None)
            return None
        if kind == "welcome":
            listed = message["peers"]
            peers = None
            if len(listed) <= self.peer_dict_max:
                intern = self._intern
                peers = {intern.setdefault(p["peer_id"], p["peer_id"]): p["online"] for p in listed}
            self._welcomed(
                agent, message["connection_id"], message["device"]["peer_id"], peers, len(listed)
            )
        return None

    def _handle_session(self, agent: Agent, frame: str | bytes) -> bytes | None:
        session = agent.session
        assert session is not None
        pong: bytes | None = None
        for event in session.receive(frame, time.monotonic()):
            if isinstance(event, PongMessage):
                self.totals["pings"] += 1
                if not agent.silent:
                    pong = text_frame(encode(event))
            elif isinstance(event, WelcomeReceived):
                welcome = event.welcome
                self._welcomed(
                    agent,
                    str(welcome.connection_id),
                    welcome.device.peer_id,
                    None,
                    len(welcome.peers),
                )
            elif isinstance(event, PeersChanged):
                self.totals["deltas"] += 1
                now = time.time()
                for peer in event.upserted:
                    if peer.online and peer.peer_id in self.watched:
                        self.arrivals[peer.peer_id].setdefault(agent.index, now)
        return pong

    def _welcomed(
        self,
        agent: Agent,
        connection_id: str,
        peer_id: str,
        peers: dict[str, bool] | None,
        count: int,
    ) -> None:
        agent.welcome_at = self.last_welcome_at = time.time()
        agent.welcomes += 1
        self.totals["welcomes"] += 1
        agent.connection_id = connection_id
        agent.peer_id = peer_id
        agent.peers = peers
        agent.peer_count = count
        self._set_state(agent, "established")
        waiter = agent.welcome_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# --------------------------------------------------------------------------- worker process


async def serve_worker() -> None:
    """Worker process main: one JSON command per stdin line, one JSON answer per stdout line."""
    raise_nofile_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    worker: Worker | None = None
    tasks: set[asyncio.Task[None]] = set()
    done = asyncio.Event()

    def answer(request_id: int, result: Any = None, error: str | None = None) -> None:
        out.write(json.dumps({"id": request_id, "result": result, "error": error}).encode())
        out.write(b"\n")
        out.flush()

    async def execute(request: dict[str, Any]) -> None:
        nonlocal worker
        request_id = request["id"]
        command = request["cmd"]
        args = request.get("args", {})
        try:
            if command == "init":
                worker = Worker(
                    args["urls"],
                    [(int(i), c) for i, c in args["agents"]],
                    addresses=args["addresses"],
                    parser=args["parser"],
                    backoff_base=args["backoff_base"],
                    backoff_cap=args["backoff_cap"],
                    max_pending=args["max_pending"],
                    peer_dict_max=args["peer_dict_max"],
                    seed=args["seed"],
                )
                answer(request_id, {"pid": os.getpid(), "nofile": raise_nofile_limit()})
                return
            if command == "quit":
                if worker is not None:
                    await worker.shutdown()
                answer(request_id, True)
                done.set()
                return
            assert worker is not None, "init first"
            result: Any
            if command == "connect":
                result = worker.connect(args["indices"], ramp=args.get("ramp", True))
            elif command == "route":
                result = worker.route(args["indices"], args["replica"])
            elif command == "silence":
                result = worker.silence(args["indices"])
            elif command == "close":
                result = await worker.close(args["indices"], args.get("concurrency", 50))
            elif command == "watch":
                worker.watch(args["peer_ids"])
                result = True
            elif command == "arrivals":
                result = worker.arrival_times(args["peer_id"])
            elif command == "stats":
                result = worker.stats(args.get("since", 0.0))
            elif command == "sessions":
                result = worker.sessions(args["indices"])
            else:
                raise ValueError(f"unknown command {command!r}")
            answer(request_id, result)
        except Exception as exc:
            answer(request_id, None, f"{type(exc).__name__}: {exc}")

    async def read_commands() -> None:
        while True:
            line = await reader.readline()
            if not line:
                done.set()
                return
            task = asyncio.create_task(execute(json.loads(line)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    reading = asyncio.create_task(read_commands())
    await done.wait()
    reading.cancel()


def run_event_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(main())
    return uvloop.run(main())


# --------------------------------------------------------------------------- parser cost


def measure_parsers(peers: int = 100, repeat: int = 2000) -> dict[str, float]:
    """Microseconds per frame for the light parser and AgentSession (welcome, ping, delta)."""
    import uuid

    from wiremesh.protocol import (
        Device,
        Heartbeat,
        Peer,
        PeerUpsert,
        PingMessage,
        WelcomeMessage,
        encode_peers_delta,
    )

    listed = [
        Peer(
            peer_id=f"peer-{i:010x}", hostname=f"h{i}", virtual_ip=f"10.0.{i // 250}.{i % 250 + 1}"
        )
        for i in range(peers)
    ]
    welcome = encode(
        WelcomeMessage(
            connection_id=uuid.uuid4(),
            device=Device(peer_id="peer-self", virtual_ip="10.1.0.1", network="10.0.0.0/8"),
            heartbeat=Heartbeat(interval=15, timeout=60),
            peers=listed,
        )
    )
    ping = encode(PingMessage(seq=7))
    delta = encode_peers_delta([PeerUpsert(peer=listed[0])])
    out: dict[str, float] = {}
    for parser in ("light", "session"):
        worker = Worker(["ws://unused"], [(0, "x")], addresses=1, parser=parser)
        agent = worker.agents[0]

        def fresh(welcomed: bool, worker: Worker = worker, agent: Agent = agent) -> None:
            session = worker.parser == "session"
            agent.session = AgentSession(time.monotonic()) if session else None
            if welcomed:
                worker._handle(agent, welcome)

        for name, frame in (("welcome", welcome), ("ping", ping), ("delta", delta)):
            fresh(welcomed=frame is not welcome)
            elapsed = 0.0
            for _ in range(repeat):
                if frame is welcome:
                    fresh(welcomed=False)
                started = time.perf_counter()
                worker._handle(agent, frame)
                elapsed += time.perf_counter() - started
            out[f"{parser}_{name}_us"] = round(elapsed / repeat * 1e6, 1)
    return out


if __name__ == "__main__":
    run_event_loop(serve_worker)
