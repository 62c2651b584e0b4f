"""Throw-away "machines" on this host: network namespaces on a bridge, for the mesh tests.

Each machine is a network namespace *and* a mount namespace with its own ``/run/wireguard``.
wireguard-go and ``wg`` find an interface's UAPI socket at ``/var/run/wireguard/<iface>.sock``,
a path shared by every network namespace on one file system; real machines do not share
it, so each machine here gets a private tmpfs there and every machine can call its
interface ``wm0``. Commands run on a machine as
``nsenter --mount=<its mount ns> -- ip netns exec <its netns> COMMAND``.

Everything is named ``wmt<pid in base 36>-...`` after the pytest process that made it, so
a run that crashed is recognised by a later one (its pid is gone) and removed by
:func:`remove_stale`; a run of another live process is left alone. :class:`Lab` records
what it made and :meth:`Lab.cleanup` removes it all, whatever state the test left.
Addresses: the underlay is a /24 of 198.18.0.0/15 (benchmarking range, never routed),
the overlay is in 100.64.0.0/10.

A :class:`Router` is a machine on the underlay (``eth0``) with a LAN of its own behind it:
a bridge ``lan`` inside its namespace, another /24 of 198.18.0.0/15, and machines made with
``lab.machine(n, behind=router)`` plugged into it with a default route through the router.
nftables on the router translates what leaves ``eth0`` (:class:`NatMode`) and drops what
comes in on ``eth0`` unasked, as a home router does. The LAN side never exists on the host:
its veth pairs are made inside the namespaces and go with them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

PREFIX_ROOT: Final = "wmt"
RUN_DIR: Final = Path("/run")
UAPI_DIR: Final = Path("/run/wireguard")
UNDERLAY_POOL: Final = ipaddress.IPv4Network("198.18.0.0/15")
UNDERLAY_LOCK: Final = RUN_DIR / f"{PREFIX_ROOT}-underlay.lock"
PIDS_FILE: Final = "pids"
"""In a lab's directory: the processes it started on the host, for a later run to end."""
TOOLS: Final = ("ip", "wg", "wireguard-go", "nsenter", "unshare", "mount", "umount", "ping")
_OWNED: Final = re.compile(rf"^{PREFIX_ROOT}([0-9a-z]{{1,7}})-")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def run_prefix(pid: int | None = None) -> str:
    """``wmt<pid>-``'s stem for this process: short enough for 15-character link names."""
    return f"{PREFIX_ROOT}{_base36(os.getpid() if pid is None else pid)}"


def missing_requirements(*extra: str) -> str | None:
    """Why the namespace tests cannot run here (with ``extra`` tools too), or ``None``."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, TUN devices)"
    absent = [tool for tool in (*TOOLS, *extra) if shutil.which(tool) is None]
    if absent:
        return (
            f"needs {', '.join(absent)} "
            "(wireguard-go, wireguard-tools, iproute2, util-linux, nftables)"
        )
    return None


def sh(
    *argv: str, check: bool = True, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), ``stdin`` as its input; with ``check``, fail with its stderr."""
    result = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(name: str) -> bool:
    match = _OWNED.match(name)
    return match is not None and not _alive(int(match[1], 36))


def _kill_namespace_processes(netns: str) -> None:
    """SIGKILL what still runs in a namespace of ours (by pid), and wait for it to go."""
    pids = [int(p) for p in sh("ip", "netns", "pids", netns, check=False).stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _start_time(pid: int) -> str | None:
    """The process's start time (in clock ticks since boot): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _kill_recorded(directory: Path) -> None:
    """SIGKILL the processes a lab recorded (those still running under the same pid)."""
    try:
        lines = (directory / PIDS_FILE).read_text().splitlines()
    except OSError:
        return
    for line in lines:
        pid, started = line.split()
        if _start_time(int(pid)) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _netns_names() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line]


def _link_names() -> list[str]:
    links = json.loads(sh("ip", "-json", "link", "show").stdout or "[]")
    return [str(link["ifname"]) for link in links]


def _remove_mounts(directory: Path) -> None:
    """Undo a lab's mount directory: its namespace files, then the directory's own mount."""
    if directory.is_dir():
        for entry in directory.glob("*.mnt"):
            sh("umount", str(entry), check=False)
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(f" {directory} " in line for line in mounts):
        sh("umount", "-l", str(directory), check=False)
    shutil.rmtree(directory, ignore_errors=True)


def remove_stale(owner_pid: int | None = None) -> list[str]:
    """Remove what runs of dead processes left (or, with ``owner_pid``, that one's); names."""

    def doomed(name: str) -> bool:
        if owner_pid is not None:
            return name.startswith(f"{run_prefix(owner_pid)}-")
        return _owner_gone(name)

    removed: list[str] = []
    for directory in RUN_DIR.glob(f"{PREFIX_ROOT}*-lab"):
        if doomed(directory.name):
            _kill_recorded(directory)
    for netns in _netns_names():
        if doomed(netns):
            _kill_namespace_processes(netns)
            sh("ip", "netns", "delete", netns, check=False)
            removed.append(netns)
    for link in _link_names():
        if doomed(link):
            sh("ip", "link", "delete", "dev", link, check=False)
            removed.append(link)
    for directory in RUN_DIR.glob(f"{PREFIX_ROOT}*-lab"):
        if doomed(directory.name):
            _remove_mounts(directory)
            removed.append(str(directory))
    return removed


class Machine:
    """One namespace "machine": ``argv`` runs a command on it."""

    def __init__(self, name: str, mount_file: Path, address: str) -> None:
        self.name = name
        self.mount_file = mount_file
        self.address = address
        """Its underlay address (eth0)."""

    def argv(self, *command: str) -> list[str]:
        return [
            "nsenter", f"--mount={self.mount_file}", "--",
            "ip", "netns", "exec", self.name, *command,
        ]  # fmt: skip

    def sh(
        self, *command: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sh(*self.argv(*command), check=check, stdin=stdin)

    def pids(self) -> list[int]:
        return [int(p) for p in sh("ip", "netns", "pids", self.name).stdout.split()]


_M = TypeVar("_M", bound=Machine)


class NatMode(StrEnum):
    """How a :class:`Router` translates what its LAN sends out of ``eth0``."""

    MASQUERADE = "masquerade"
    """Linux's default: keeps the source port when it is free and maps one socket to one
    public port whatever the destination (endpoint-independent mapping). Inbound packets
    pass only from the address and port the socket sent to (port-restricted filtering)."""
    SYMMETRIC = "symmetric"
    """``masquerade fully-random``: every new destination gets a new random public port."""


_MASQUERADE_FLAGS: Final = {NatMode.MASQUERADE: "", NatMode.SYMMETRIC: " fully-random"}
NAT_TABLE: Final = "wmnat"
BLOCK_TABLE: Final = "wmblock"
DROP_COUNTER: Final = "inbound_dropped"
LAN_BRIDGE: Final = "lan"
MACHINE_HOSTS: Final = 10
"""Machine ``n`` is host ``10 + n`` of its /24 (on the underlay or on a router's LAN)."""
ROUTER_HOSTS: Final = 200
"""Router ``n`` is host ``200 + n`` of the underlay; its LAN address is host 1 of its LAN."""


def nat_ruleset(mode: NatMode) -> str:
    """The router's nftables ruleset (one atomic ``nft -f``; replaces an earlier one).

    What leaves ``eth0`` is masqueraded; what arrives on ``eth0`` passes (to the router
    or through it) only as part of a flow the LAN side began. Everything else is dropped
    and counted in ``inbound_dropped``. Dropping it in ``input`` matters: a packet that
    reaches the router's own UDP stack unasked leaves a conntrack entry behind, and that
    entry takes the public port a LAN host's later flow to the same peer would get.
    """
    return f"""
table ip {NAT_TABLE}
delete table ip {NAT_TABLE}
table ip {NAT_TABLE} {{
    counter {DROP_COUNTER} {{ }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth0" masquerade{_MASQUERADE_FLAGS[mode]}
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "eth0" ct state established,related accept
        iifname "eth0" counter name "{DROP_COUNTER}" drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "eth0" ct state established,related accept
        iifname "eth0" counter name "{DROP_COUNTER}" drop
    }}
}}
"""


class Router(Machine):
    """A machine on the underlay that NATs a LAN of machines behind it (see the module doc)."""

    def __init__(
        self, name: str, mount_file: Path, address: str, lan: ipaddress.IPv4Network
    ) -> None:
        super().__init__(name, mount_file, address)
        self.lan = lan
        self.lan_address = str(lan.network_address + 1)
        """Its address on the LAN bridge: the LAN machines' default gateway."""
        self.nat: NatMode | None = None

    def set_nat(self, mode: NatMode) -> None:
        """Translate with ``mode`` from now on (flows already translated keep their ports)."""
        self.sh("nft", "-f", "-", stdin=nat_ruleset(NatMode(mode)))
        self.nat = NatMode(mode)

    def block(self, address: str) -> None:
        """Drop what the LAN sends to ``address`` (a firewall between two sites); replaces an
        earlier block, leaves the NAT alone."""
        self.sh(
            "nft",
            "-f",
            "-",
            stdin=f"""
table ip {BLOCK_TABLE}
delete table ip {BLOCK_TABLE}
table ip {BLOCK_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        ip daddr {address} drop
    }}
}}
""",
        )

    def unblock(self) -> None:
        self.sh("nft", "delete", "table", "ip", BLOCK_TABLE, check=False)

    def dropped(self) -> int:
        """Packets dropped so far because they came in on ``eth0`` unasked."""
        shown = self.sh("nft", "-j", "list", "counter", "ip", NAT_TABLE, DROP_COUNTER).stdout
        for item in json.loads(shown)["nftables"]:
            if "counter" in item:
                packets: int = item["counter"]["packets"]
                return packets
        raise RuntimeError(f"no counter {DROP_COUNTER} on {self.name}")


class Lab:
    """A bridge on the host and machines wired to it; :meth:`cleanup` removes everything."""

    def __init__(self) -> None:
        self.prefix = run_prefix()
        self.mount_dir = RUN_DIR / f"{self.prefix}-lab"
        self.machines: list[Machine] = []
        self.bridge = f"{self.prefix}-br"
        self.network = _free_underlay()
        """Picked again by :meth:`start`, where it is taken for good."""
        self.host_address = str(self.network.network_address + 1)
        self._made_bridge = False

    def start(self) -> None:
        """The bridge with the host's address, and the directory for mount namespaces."""
        UAPI_DIR.mkdir(mode=0o755, exist_ok=True)  # the mount point of each private tmpfs
        self.mount_dir.mkdir(mode=0o700)
        sh("mount", "--bind", str(self.mount_dir), str(self.mount_dir))
        sh("mount", "--make-private", str(self.mount_dir))
        # Two runs that start together would both see the same /24 free: the choice and
        # the address that takes it happen under one lock.
        with UNDERLAY_LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.network = _free_underlay()
            self.host_address = str(self.network.network_address + 1)
            sh("ip", "link", "add", "dev", self.bridge, "type", "bridge")
            self._made_bridge = True
            sh("ip", "address", "add", f"{self.host_address}/{self.network.prefixlen}",
               "dev", self.bridge)  # fmt: skip
        sh("ip", "link", "set", "dev", self.bridge, "up")

    def machine(self, number: int, *, behind: Router | None = None) -> Machine:
        """Machine ``number`` (1..): netns, mount ns, ``eth0`` with address ``.1N``.

        On the underlay bridge, or with ``behind`` on that router's LAN, with a default
        route through it. Numbers are unique in a lab, wherever the machine is.
        """
        if not 1 <= number < ROUTER_HOSTS - MACHINE_HOSTS:
            raise ValueError(f"machine numbers are 1..{ROUTER_HOSTS - MACHINE_HOSTS - 1}")
        name = f"{self.prefix}-m{number}"
        if behind is None:
            address = str(self.network.network_address + MACHINE_HOSTS + number)
            machine = self._namespace(Machine(name, self._mount_file(name), address))
            self._plug_into_underlay(machine, f"{self.prefix}-h{number}")
            return machine
        address = str(behind.lan.network_address + MACHINE_HOSTS + number)
        machine = self._namespace(Machine(name, self._mount_file(name), address))
        port = f"p{number}"  # the router's end, made in the router's namespace
        sh("ip", "link", "add", "dev", "eth0", "netns", machine.name, "type", "veth",
           "peer", "name", port, "netns", behind.name)  # fmt: skip
        behind.sh("ip", "link", "set", "dev", port, "master", LAN_BRIDGE, "up")
        self._address_eth0(machine, f"{address}/{behind.lan.prefixlen}")
        machine.sh("ip", "route", "add", "default", "via", behind.lan_address)
        return machine

    def router(self, number: int, nat: NatMode = NatMode.MASQUERADE) -> Router:
        """Router ``number`` (1..): on the underlay at ``.20N``, a LAN /24 of its own behind
        it (the first free one), forwarding and NAT between the two."""
        if not 1 <= number < 255 - ROUTER_HOSTS:
            raise ValueError(f"router numbers are 1..{254 - ROUTER_HOSTS}")
        name = f"{self.prefix}-r{number}"
        lans = [m.lan for m in self.machines if isinstance(m, Router)]
        lan = _free_underlay(self.network, *lans)
        address = str(self.network.network_address + ROUTER_HOSTS + number)
        router = self._namespace(Router(name, self._mount_file(name), address, lan))
        self._plug_into_underlay(router, f"{self.prefix}-hr{number}")
        router.sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        if router.sh("test", "-e", "/proc/sys/net/bridge", check=False).returncode == 0:
            # With br_netfilter, frames between two LAN ports would run through the
            # router's IP rules and conntrack: a LAN is a plain switch here.
            router.sh("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
        router.sh("ip", "link", "add", "dev", LAN_BRIDGE, "type", "bridge")
        router.sh("ip", "address", "add", f"{router.lan_address}/{lan.prefixlen}",
                  "dev", LAN_BRIDGE)  # fmt: skip
        router.sh("ip", "link", "set", "dev", LAN_BRIDGE, "up")
        router.set_nat(nat)
        return router

    def record(self, pid: int) -> None:
        """Remember a process this lab's test started, so a run after a crash can end it."""
        with (self.mount_dir / PIDS_FILE).open("a") as pids:
            pids.write(f"{pid} {_start_time(pid)}\n")

    def cleanup(self) -> None:
        """Kill what runs on the machines, delete namespaces, links and mounts."""
        if self.mount_dir.is_dir():
            _kill_recorded(self.mount_dir)
        for machine in self.machines:
            _kill_namespace_processes(machine.name)
            sh("ip", "netns", "delete", machine.name, check=False)
        if self._made_bridge:
            sh("ip", "link", "delete", "dev", self.bridge, check=False)
        _remove_mounts(self.mount_dir)
        remove_stale(owner_pid=os.getpid())  # anything of ours the steps above missed

    # ------------------------------------------------------------------ internals

    def _mount_file(self, name: str) -> Path:
        return self.mount_dir / f"{name.removeprefix(f'{self.prefix}-')}.mnt"

    def _namespace(self, machine: _M) -> _M:
        """The machine's network namespace, and a mount namespace with its own tmpfs at
        ``/run/wireguard``; recorded before anything else, so cleanup finds it."""
        sh("ip", "netns", "add", machine.name)
        self.machines.append(machine)
        machine.mount_file.touch()
        tmpfs = ["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", f"{self.prefix}-run"]
        sh("unshare", f"--mount={machine.mount_file}", "--propagation", "slave",
           *tmpfs, str(UAPI_DIR))  # fmt: skip
        machine.sh("ip", "link", "set", "dev", "lo", "up")
        return machine

    def _plug_into_underlay(self, machine: Machine, host_end: str) -> None:
        """A veth from the host's bridge (``host_end``) to the machine's ``eth0``."""
        sh("ip", "link", "add", "dev", host_end, "type", "veth",
           "peer", "name", "eth0", "netns", machine.name)  # fmt: skip
        sh("ip", "link", "set", "dev", host_end, "master", self.bridge, "up")
        self._address_eth0(machine, f"{machine.address}/{self.network.prefixlen}")

    @staticmethod
    def _address_eth0(machine: Machine, interface: str) -> None:
        machine.sh("ip", "address", "add", interface, "dev", "eth0")
        machine.sh("ip", "link", "set", "dev", "eth0", "up")


def _free_underlay(*taken: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The first /24 of 198.18.0.0/15 that no interface of the host uses (parallel runs)
    and that is none of ``taken``."""
    used: list[ipaddress.IPv4Network] = list(taken)
    for link in json.loads(sh("ip", "-json", "address", "show").stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                used.append(ipaddress.IPv4Network(f"{info['local']}/24", strict=False))
    for candidate in UNDERLAY_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise RuntimeError("no free /24 left in 198.18.0.0/15")


def ping_argv(machine: Machine, address: str, timeout: float) -> Sequence[str]:
    """One echo request, waiting at most ``timeout`` seconds for the answer."""
    return machine.argv("ping", "-n", "-q", "-c", "1", "-W", f"{timeout:g}", address)
