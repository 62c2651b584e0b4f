"""A real mesh on one host: the server on a bridge, agents with wireguard-go in namespaces.

``mesh`` gives a running server (``python -m wiremesh server`` on the bridge's host
address, SQLite in a temporary data dir, heartbeat 0.5 s / timeout 2 s), an organization
with network 100.64.0.0/24 and a reusable setup key. Machines, agents and the server are
torn down by the fixtures' finalizers whatever the test did; leftovers of a crashed run
are removed first. Skipped (with the reason) without root or the tools.

``nat_lab`` is the same lab where routers need nftables too; ``udp`` opens
:class:`~tests.netns.udp.UdpSocket` s on its machines and closes them after the test.

``start_deployment`` and ``processes`` are the shared fixtures of :mod:`tests.support`:
``start_deployment(2, host=lab.host_address)`` runs server replicas on one PostgreSQL
database where the lab's machines reach them. ``nat_mesh`` is ``mesh`` with relays
allowed and relay ``r1`` on machine 1. ``mesh_default_heartbeat`` is ``mesh`` with the
server's default heartbeat (15 s / 60 s), where a lost WebSocket is not noticed for a
minute, as in production. The classes and probes they use are in
:mod:`tests.netns.mesh`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns.lab import Lab, Machine, missing_requirements, remove_stale
from tests.netns.mesh import RELAY_TOKEN, Mesh, NatMesh
from tests.netns.udp import UdpSocket
from tests.support.processes import ProcessGroup
from wiremesh.protocol.server import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT


@contextlib.contextmanager
def _lab(*tools: str) -> Iterator[Lab]:
    reason = missing_requirements(*tools)
    if reason is not None:
        pytest.skip(reason)
    removed = remove_stale()
    if removed:
        print(f"removed leftovers of a crashed run: {', '.join(removed)}")
    lab = Lab()
    try:
        lab.start()
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture
def lab() -> Iterator[Lab]:
    with _lab() as lab:
        yield lab


@pytest.fixture
def nat_lab() -> Iterator[Lab]:
    """A lab whose routers NAT (they need ``nft``)."""
    with _lab("nft") as lab:
        yield lab


@pytest.fixture
def udp() -> Iterator[Callable[..., UdpSocket]]:
    """``udp(machine, port=0, *, echo=False, extra_ports=())``: a socket on that machine."""
    sockets: list[UdpSocket] = []

    def open_socket(machine: Machine, port: int = 0, **options: Any) -> UdpSocket:
        sockets.append(UdpSocket(machine, port, **options))
        return sockets[-1]

    try:
        yield open_socket
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
async def mesh(lab: Lab, processes: ProcessGroup, tmp_path: Path) -> AsyncIterator[Mesh]:
    mesh = Mesh(lab, processes, tmp_path)
    try:
        await mesh.start_server()
        await mesh.create_org()
        yield mesh
    finally:
        processes.cleanup()  # agents first, so their namespaces empty before the lab goes


@pytest.fixture
async def mesh_default_heartbeat(
    lab: Lab, processes: ProcessGroup, tmp_path: Path
) -> AsyncIterator[Mesh]:
    heartbeat = {
        "WIREMESH_HEARTBEAT_INTERVAL": str(DEFAULT_HEARTBEAT_INTERVAL),
        "WIREMESH_HEARTBEAT_TIMEOUT": str(DEFAULT_HEARTBEAT_TIMEOUT),
    }
    mesh = Mesh(lab, processes, tmp_path, heartbeat)
    try:
        await mesh.start_server()
        await mesh.create_org()
        yield mesh
    finally:
        processes.cleanup()


@pytest.fixture
async def nat_mesh(nat_lab: Lab, processes: ProcessGroup, tmp_path: Path) -> AsyncIterator[NatMesh]:
    mesh = Mesh(nat_lab, processes, tmp_path, {"WIREMESH_RELAY_TOKEN": RELAY_TOKEN})
    try:
        await mesh.start_server()
        await mesh.create_org()
        nat = NatMesh(mesh)
        await nat.add_relay("r1", nat_lab.machine(1))
        yield nat
    finally:
        processes.cleanup()
