"""What a real backend needs from the system, checked before the agent starts.

:func:`missing_prerequisites` lists everything that is missing at once (rights, tools,
the kernel module or wireguard-go), so the person at the console fixes it in one go
instead of meeting the problems one failed start at a time. :func:`resolve_auto` is
``--backend auto``: the kernel when it has WireGuard, else wireguard-go.

Only files are read here (``/proc``, ``/sys``, ``/lib/modules``, ``$PATH``): nothing is
changed, so the check is safe to run anywhere. The kernel check is a best guess; the
kernel backend's ``ip link add ... type wireguard`` is the final word and fails with
:data:`~wiremesh.agent.wireguard.kernel.NO_KERNEL_MODULE` when the guess was wrong.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from wiremesh.agent.backend import BackendName, BackendUnavailable

__all__ = [
    "System",
    "has_net_admin",
    "kernel_module_missing",
    "missing_prerequisites",
    "prerequisites_message",
    "resolve_auto",
]

CAP_NET_ADMIN: Final = 12

NEED_ROOT: Final = "root or the CAP_NET_ADMIN capability (run the agent as root)"
NEED_WG: Final = "the `wg` command (package wireguard-tools)"
NEED_IP: Final = "the `ip` command (package iproute2)"
NEED_WIREGUARD_GO: Final = "the `wireguard-go` program (package wireguard-go)"
NEED_TUN: Final = "the TUN device /dev/net/tun (load the `tun` module, or pass it to the container)"

_MODULE_FILE: Final = re.compile(r"(?:^|/)wireguard\.ko(?:\.[a-z0-9]+)?(?::|$)", re.MULTILINE)


def _release() -> str:
    return os.uname().release


@dataclass(frozen=True, slots=True)
class System:
    """Where the checks look; tests point it at a fake tree."""

    proc_status: Path = Path("/proc/self/status")
    sys_module: Path = Path("/sys/module")
    lib_modules: Path = Path("/lib/modules")
    tun_device: Path = Path("/dev/net/tun")
    which: Callable[[str], str | None] = field(default=shutil.which)
    release: Callable[[], str] = field(default=_release)


def has_net_admin(system: System | None = None) -> bool:
    """Whether this process may configure network interfaces (CAP_NET_ADMIN in effect)."""
    system = system or System()
    try:
        for line in system.proc_status.read_text(encoding="ascii").splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def kernel_module_missing(system: System | None = None) -> str | None:
    """``None`` when the kernel has WireGuard (loaded, built in, or installed as a module);
    otherwise what is missing, as an item of :func:`prerequisites_message`."""
    system = system or System()
    if (system.sys_module / "wireguard").exists():
        return None
    release = system.release()
    directory = system.lib_modules / release
    for index in ("modules.builtin", "modules.dep"):
        try:
            text = (directory / index).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if _MODULE_FILE.search(text):
            return None
    return (
        f"the WireGuard kernel module (not loaded, not built into Linux {release}, "
        f"not installed under {directory})"
    )


def _tools(system: System) -> list[str]:
    missing = [] if has_net_admin(system) else [NEED_ROOT]
    if system.which("wg") is None:
        missing.append(NEED_WG)
    if system.which("ip") is None:
        missing.append(NEED_IP)
    return missing


def _userspace(system: System) -> list[str]:
    missing = [] if system.which("wireguard-go") is not None else [NEED_WIREGUARD_GO]
    if not system.tun_device.exists():
        missing.append(NEED_TUN)
    return missing


def missing_prerequisites(name: BackendName | str, system: System | None = None) -> list[str]:
    """Everything the named backend lacks here (empty: ready). ``memory`` needs nothing."""
    system = system or System()
    wanted = BackendName(name)
    if wanted is BackendName.MEMORY:
        return []
    missing = _tools(system)
    module = kernel_module_missing(system)
    if wanted is BackendName.KERNEL:
        if module is None:
            return missing
        return [*missing, f"{module}; or run WireGuard in userspace with --backend wireguard-go"]
    userspace = _userspace(system)
    if wanted is BackendName.WIREGUARD_GO:
        return [*missing, *userspace]
    if module is None or not userspace:  # auto: either implementation will do
        return missing
    return [*missing, f"a WireGuard implementation: {module}, or {' and '.join(userspace)}"]


def resolve_auto(system: System | None = None) -> BackendName:
    """``--backend auto``: the kernel when it has WireGuard, else wireguard-go."""
    system = system or System()
    module = kernel_module_missing(system)
    if module is None:
        return BackendName.KERNEL
    if system.which("wireguard-go") is not None:
        return BackendName.WIREGUARD_GO
    raise BackendUnavailable(
        f"no WireGuard backend is available: {module}, and {NEED_WIREGUARD_GO} is not "
        "installed; install one of them"
    )


def prerequisites_message(name: BackendName | str, missing: list[str]) -> str:
    """One message naming everything missing for the backend."""
    return f"the {BackendName(name).value} backend cannot run here; missing: " + "; ".join(missing)
