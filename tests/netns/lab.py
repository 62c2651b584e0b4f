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
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

PREFIX_ROOT: Final = "wmt"
RUN_DIR: Final = Path("/run")
UAPI_DIR: Final = Path("/run/wireguard")
UNDERLAY_POOL: Final = ipaddress.IPv4Network("198.18.0.0/15")
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


def missing_requirements() -> str | None:
    """Why the namespace tests cannot run here, or ``None``."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, TUN devices)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"needs {', '.join(absent)} (wireguard-go, wireguard-tools, iproute2, util-linux)"
    return None


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell); with ``check``, fail with its stderr."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
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

    def sh(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*self.argv(*command), check=check)

    def pids(self) -> list[int]:
        return [int(p) for p in sh("ip", "netns", "pids", self.name).stdout.split()]


class Lab:
    """A bridge on the host and machines wired to it; :meth:`cleanup` removes everything."""

    def __init__(self) -> None:
        self.prefix = run_prefix()
        self.mount_dir = RUN_DIR / f"{self.prefix}-lab"
        self.machines: list[Machine] = []
        self.bridge = f"{self.prefix}-br"
        self.network = _free_underlay()
        self.host_address = str(self.network.network_address + 1)
        self._made_bridge = False

    def start(self) -> None:
        """The bridge with the host's address, and the directory for mount namespaces."""
        UAPI_DIR.mkdir(mode=0o755, exist_ok=True)  # the mount point of each private tmpfs
        self.mount_dir.mkdir(mode=0o700)
        sh("mount", "--bind", str(self.mount_dir), str(self.mount_dir))
        sh("mount", "--make-private", str(self.mount_dir))
        sh("ip", "link", "add", "dev", self.bridge, "type", "bridge")
        self._made_bridge = True
        sh("ip", "address", "add", f"{self.host_address}/{self.network.prefixlen}",
           "dev", self.bridge)  # fmt: skip
        sh("ip", "link", "set", "dev", self.bridge, "up")

    def machine(self, number: int) -> Machine:
        """Machine ``number`` (1..): netns, mount ns, veth to the bridge, address ``.1N``."""
        name = f"{self.prefix}-m{number}"
        host_end, guest_end = f"{self.prefix}-h{number}", f"{self.prefix}-g{number}"
        address = str(self.network.network_address + 10 + number)
        mount_file = self.mount_dir / f"m{number}.mnt"
        sh("ip", "netns", "add", name)
        machine = Machine(name, mount_file, address)
        self.machines.append(machine)
        mount_file.touch()
        tmpfs = ["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", f"{self.prefix}-run"]
        sh("unshare", f"--mount={mount_file}", "--propagation", "slave", *tmpfs, str(UAPI_DIR))
        sh("ip", "link", "add", "dev", host_end, "type", "veth", "peer", "name", guest_end)
        sh("ip", "link", "set", "dev", guest_end, "netns", name)
        sh("ip", "link", "set", "dev", host_end, "master", self.bridge, "up")
        machine.sh("ip", "link", "set", "dev", "lo", "up")
        machine.sh("ip", "link", "set", "dev", guest_end, "name", "eth0")
        machine.sh("ip", "address", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
        machine.sh("ip", "link", "set", "dev", "eth0", "up")
        return machine

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


def _free_underlay() -> ipaddress.IPv4Network:
    """The first /24 of 198.18.0.0/15 that no interface of the host uses (parallel runs)."""
    used: list[ipaddress.IPv4Network] = []
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
