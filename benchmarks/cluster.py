"""The system under test: a fresh database, seeded devices, the load generator's agents, and
the server replicas they connect to; what the scenarios share.

:class:`Bench` creates the database and seeds it (:mod:`benchmarks.seed`), starts the load
generator (:mod:`benchmarks.loadgen`), starts, restarts and stops servers
(:mod:`benchmarks.server`) on ports of their own, routes agents to replicas, and collects the
table's rows and the run's details.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.loadgen import LoadGen, source_addresses, ws_url
from benchmarks.plan import FD_RESERVE, MASS_CLOSE_CONCURRENCY, Plan
from benchmarks.report import Row, log
from benchmarks.seed import Seeded, admin_url, asyncpg_dsn, create_database, drop_database, seed
from benchmarks.server import ServerProcess
from benchmarks.simagents import raise_nofile_limit


class Bench:
    def __init__(self, plan: Plan, workdir: Path, *, keep_db: bool = False) -> None:
        self.plan = plan
        self.workdir = workdir
        self.keep_db = keep_db
        self.admin = admin_url()
        self.db_name = f"wiremesh_bench_{os.getpid()}"
        self.db_url = ""
        self.seeded: Seeded | None = None
        self.hold_indices: list[int] = []
        self.fanout_orgs: list[list[int]] = []
        self.replica_fanout_org: list[int] = []
        """The org that ``fanout_replicas`` spreads: its online agents, then two sets of
        fresh joiners (one per setting)."""
        self.replica_fanout_pool_size = 20
        """Per replica for ``fanout_replicas``, on one replica too, so both settings match."""
        self.loadgen: LoadGen | None = None
        self.server: ServerProcess | None = None
        self.server_config: tuple[float, float, float | None, int | None] | None = None
        self.fd_limit = raise_nofile_limit()
        self.replica_count = plan.replicas or max(
            1, math.ceil(plan.agents / (self.fd_limit - FD_RESERVE))
        )
        self.ports = [
            free_port() for _ in range(max(self.replica_count, plan.replica_fanout_replicas))
        ]
        self.port = self.ports[0]
        self.pool_size = 20
        """Per replica; lowered in setup so every replica's pool and overflow fit the
        database's max_connections (three default pools would not fit PostgreSQL's 100)."""
        self.org_of: dict[int, int] = {}
        """Agent index -> its org's position among the hold orgs (replicas are chosen by org)."""
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self._server_count = 0
        self.extra_servers: list[ServerProcess] = []
        """Replicas 1.. of the hold, stopped when it ends (or at teardown, if it failed)."""

    # -------------------------------------------------------------- plumbing

    async def setup(self) -> None:
        plan = self.plan
        self.pool_size = await pool_size_for(self.replica_count)
        self.replica_fanout_pool_size = await pool_size_for(plan.replica_fanout_replicas)
        log(f"creating database {self.db_name} and running the migrations")
        self.db_url = await create_database(self.admin, self.db_name)
        hold_sizes = [plan.org_size] * (plan.agents // plan.org_size)
        if plan.agents % plan.org_size:
            hold_sizes.append(plan.agents % plan.org_size)
        started = time.perf_counter()
        replica_fanout_devices = plan.replica_fanout_size + 2 * plan.replica_fanout_joins
        self.seeded = await seed(
            self.db_url, [*hold_sizes, *plan.fanout_sizes, replica_fanout_devices]
        )
        log(
            f"seeded {len(self.seeded.devices)} devices in {len(self.seeded.orgs)} orgs "
            f"in {time.perf_counter() - started:.1f} s"
        )
        hold_orgs = self.seeded.orgs[: len(hold_sizes)]
        self.hold_indices = [d.index for org in hold_orgs for d in org.devices]
        self.org_of = {
            d.index: position for position, org in enumerate(hold_orgs) for d in org.devices
        }
        random.Random(7).shuffle(self.hold_indices)
        fanout_end = len(hold_sizes) + len(plan.fanout_sizes)
        self.fanout_orgs = [
            [d.index for d in org.devices] for org in self.seeded.orgs[len(hold_sizes) : fanout_end]
        ]
        self.replica_fanout_org = [d.index for d in self.seeded.orgs[fanout_end].devices]
        credentials = [d.credential for d in self.seeded.devices]
        busiest = max([plan.agents, *plan.fanout_sizes, replica_fanout_devices])
        processes = plan.processes or max(2, math.ceil(busiest / (self.fd_limit - 2_000)))
        self.loadgen = LoadGen(
            [ws_url("127.0.0.1", port) for port in self.ports],
            credentials,
            processes=processes,
            addresses=source_addresses(busiest),
            parser=plan.parser,
            backoff_base=0.5,
            backoff_cap=5.0,
            max_pending=plan.max_pending,
            log_dir=self.workdir,
        )
        await self.loadgen.start()
        log(f"load generator: {processes} processes (pids {self.loadgen.pids})")

    async def stop_extra_servers(self) -> None:
        while self.extra_servers:
            server = self.extra_servers.pop()
            if server.running():
                await server.stop(signal.SIGTERM)

    async def teardown(self) -> None:
        if self.loadgen is not None:
            await self.loadgen.stop()
        await self.stop_extra_servers()
        if self.server is not None and self.server.running():
            await self.server.stop(signal.SIGTERM)
        if not self.keep_db and self.db_url:
            await drop_database(self.admin, self.db_name)

    @property
    def lg(self) -> LoadGen:
        assert self.loadgen is not None
        return self.loadgen

    @property
    def agents_per_server(self) -> int:
        """Agent sockets one server process can hold under the open-files limit."""
        return self.fd_limit - FD_RESERVE

    async def close_agents(self, indices: list[int]) -> None:
        """Close agents cleanly at the end of a scenario (or to move them elsewhere)."""
        await self.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)

    def server_env(
        self,
        interval: float,
        timeout: float,
        lease_ttl: float | None,
        replica: int = 0,
        pool_size: int | None = None,
    ) -> dict[str, str]:
        env = {
            # Stable per replica, as a deployment names its replicas: a restarted replica
            # ends the rows it left at once instead of waiting for its lease to run out.
            "WIREMESH_SERVER_ID": f"bench-replica-{replica}",
            "WIREMESH_DATABASE_URL": self.db_url,
            "WIREMESH_HEARTBEAT_INTERVAL": str(interval),
            "WIREMESH_HEARTBEAT_TIMEOUT": str(timeout),
            "WIREMESH_HEARTBEAT_FLUSH_INTERVAL": str(self.plan.flush_interval),
            "WIREMESH_LOG_LEVEL": "warning",
            "WIREMESH_DATABASE_POOL_SIZE": str(pool_size or self.pool_size),
            "WIREMESH_DATA_DIR": str(self.workdir / "server-data"),
        }
        if lease_ttl is not None:
            env["WIREMESH_REPLICA_LEASE_TTL"] = str(lease_ttl)
        return env

    async def start_server(
        self,
        interval: float,
        timeout_s: float,
        lease_ttl: float | None = None,
        *,
        pool_size: int | None = None,
    ) -> ServerProcess:
        """A server with this heartbeat (and pool, default ``self.pool_size``); the running
        one is reused when it already has them."""
        config = (interval, timeout_s, lease_ttl, pool_size)
        if self.server is not None and self.server.running() and self.server_config == config:
            return self.server
        if self.server is not None and self.server.running():
            await self.server.stop(signal.SIGTERM)
        self._server_count += 1
        server = ServerProcess(
            "127.0.0.1",
            self.port,
            self.server_env(interval, timeout_s, lease_ttl, pool_size=pool_size),
            self.workdir / f"server-{self._server_count}.log",
            prelude=self.plan.server_prelude,
        )
        await server.start()
        self.server, self.server_config = server, config
        log(f"server pid {server.pid} ready ({interval:g} s / {timeout_s:g} s heartbeat)")
        return server

    async def start_extra_replicas(
        self,
        interval: float,
        timeout_s: float,
        *,
        replicas: int | None = None,
        pool_size: int | None = None,
    ) -> list[ServerProcess]:
        """Replicas 1.. (of the hold's count by default), each on its own port, on replica
        0's database; stopped by :meth:`stop_extra_servers`."""
        servers = []
        for replica in range(1, replicas or self.replica_count):
            self._server_count += 1
            server = ServerProcess(
                "127.0.0.1",
                self.ports[replica],
                self.server_env(interval, timeout_s, None, replica, pool_size),
                self.workdir / f"server-{self._server_count}-replica-{replica}.log",
                prelude=self.plan.server_prelude,
            )
            self.extra_servers.append(server)
            await server.start()
            log(f"replica {replica}: server pid {server.pid} ready on port {server.port}")
            servers.append(server)
        return servers

    async def route_by_org(self, indices: list[int], replicas: int) -> None:
        """Every org on one replica (org position modulo replicas), as a sticky balancer would."""
        parts: dict[int, list[int]] = {}
        for index in indices:
            parts.setdefault(self.org_of.get(index, 0) % replicas, []).append(index)
        for replica, part in parts.items():
            await self.lg.route(part, replica)

    async def restart_server(self, lease_ttl: float | None) -> ServerProcess:
        assert self.server_config is not None
        interval, timeout_s, _, pool_size = self.server_config
        self.server = None
        return await self.start_server(interval, timeout_s, lease_ttl, pool_size=pool_size)

    def peer_id(self, index: int) -> str:
        assert self.seeded is not None
        return self.seeded.devices[index].peer_id

    # -------------------------------------------------------------- database

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.admin, self.db_name))

    async def count_rows(self, where: str, *args: Any) -> int:
        connection = await self.db()
        try:
            value = await connection.fetchval(
                f"SELECT count(*) FROM connection_status WHERE {where}", *args
            )
            return int(value)
        finally:
            await connection.close()

    async def xact_counts(self) -> tuple[int, int]:
        connection = await asyncpg.connect(asyncpg_dsn(self.admin))
        try:
            row = await connection.fetchrow(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.db_name,
            )
            assert row is not None
            return int(row["xact_commit"]), int(row["xact_rollback"])
        finally:
            await connection.close()

    async def wait_rows(self, connection_ids: list[str], seconds: float) -> dict[str, Any]:
        """Poll until every row has ended (or ``seconds`` passed); rows by connection id."""
        ids = [cid for cid in connection_ids if cid]
        deadline = time.monotonic() + seconds
        connection = await self.db()
        try:
            while True:
                rows = await connection.fetch(
                    "SELECT connection_id::text AS cid, status, disconnected_at "
                    "FROM connection_status WHERE connection_id::text = ANY($1::text[])",
                    ids,
                )
                found = {row["cid"]: row for row in rows}
                ended = sum(1 for row in rows if row["status"] != "connected")
                if ended >= len(ids) or time.monotonic() >= deadline:
                    return found
                await asyncio.sleep(0.1)
        finally:
            await connection.close()

    # -------------------------------------------------------------- agents and rows

    async def ramp(self, indices: list[int], what: str) -> tuple[bool, float, dict[str, Any]]:
        """Connect ``indices`` (paced handshakes) and wait until all are established."""
        started = time.time()
        before = (await self.lg.stats())["established"]
        await self.lg.connect(indices)
        last_log = [0.0]

        def progress(stats: dict[str, Any]) -> None:
            if time.monotonic() - last_log[0] >= 10:
                last_log[0] = time.monotonic()
                log(f"{what}: {stats['established']} established, states {stats['states']}")

        stats = await self.lg.wait_established(
            before + len(indices),
            self.plan.ramp_timeout,
            since=0.0,
            poll=0.5,
            progress=progress,
        )
        elapsed = time.time() - started
        ok = stats["welcomed_since"] >= before + len(indices)
        log(f"{what}: {stats['established']} established in {elapsed:.1f} s")
        return ok, elapsed, stats

    def add(self, row: Row) -> None:
        self.rows.append(row)
        log(f"{row.metric}: {row.measured} ({row.verdict}){'; ' + row.notes if row.notes else ''}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def pool_size_for(replicas: int, reserve: int = 10) -> int:
    """The largest pool (at most the default 20) whose pool plus overflow, times the
    replicas, leaves ``reserve`` of PostgreSQL's connections for everyone else."""
    connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
    try:
        limit = int(await connection.fetchval("SHOW max_connections"))
    finally:
        await connection.close()
    return max(2, min(20, (limit - reserve) // (2 * replicas)))


async def pg_version() -> str:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
    try:
        version = await connection.fetchval("SHOW server_version")
        return f"PostgreSQL {str(version).split()[0]}"
    finally:
        await connection.close()
