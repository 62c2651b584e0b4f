"""What the system must have, checked in a fake file tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from wiremesh.agent.backend import BackendName, BackendUnavailable
from wiremesh.agent.wireguard.prereq import (
    NEED_IP,
    NEED_ROOT,
    NEED_TUN,
    NEED_WG,
    NEED_WIREGUARD_GO,
    System,
    has_net_admin,
    kernel_module_missing,
    missing_prerequisites,
    prerequisites_message,
    resolve_auto,
)

RELEASE = "6.1.0-test-amd64"
ROOT_CAPS = "000001ffffffffff"
NO_NET_ADMIN = f"{0x1FFFFFFFFFF & ~(1 << 12):016x}"


def make_system(
    tmp_path: Path,
    *,
    caps: str = ROOT_CAPS,
    tools: tuple[str, ...] = ("wg", "ip", "wireguard-go"),
    module: str | None = None,
    tun: bool = True,
) -> System:
    """A fake system; ``module`` is "loaded", "builtin", "installed" or None (absent)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t{caps}\n")
    sys_module = tmp_path / "sys-module"
    sys_module.mkdir()
    lib = tmp_path / "lib-modules" / RELEASE
    lib.mkdir(parents=True)
    (lib / "modules.builtin").write_text("kernel/drivers/net/dummy.ko\n")
    (lib / "modules.dep").write_text("kernel/drivers/net/veth.ko:\n")
    if module == "loaded":
        (sys_module / "wireguard").mkdir()
    elif module == "builtin":
        (lib / "modules.builtin").write_text("kernel/drivers/net/wireguard/wireguard.ko\n")
    elif module == "installed":
        (lib / "modules.dep").write_text(
            "kernel/drivers/net/wireguard/wireguard.ko.xz: kernel/net/ipv6/ip6_udp_tunnel.ko.xz\n"
        )
    tun_device = tmp_path / "tun"
    if tun:
        tun_device.touch()
    return System(
        proc_status=status,
        sys_module=sys_module,
        lib_modules=tmp_path / "lib-modules",
        tun_device=tun_device,
        which=lambda name: f"/usr/bin/{name}" if name in tools else None,
        release=lambda: RELEASE,
    )


def test_cap_net_admin_is_read_from_the_effective_set(tmp_path: Path) -> None:
    assert has_net_admin(make_system(tmp_path / "a", caps=ROOT_CAPS))
    assert not has_net_admin(make_system(tmp_path / "b", caps=NO_NET_ADMIN))
    assert has_net_admin(make_system(tmp_path / "c", caps="0000000000001000"))  # only NET_ADMIN


@pytest.mark.parametrize("module", ["loaded", "builtin", "installed"])
def test_the_kernel_module_is_found_loaded_built_in_or_installed(
    tmp_path: Path, module: str
) -> None:
    assert kernel_module_missing(make_system(tmp_path, module=module)) is None


def test_a_kernel_without_the_module_is_described(tmp_path: Path) -> None:
    message = kernel_module_missing(make_system(tmp_path))
    assert message is not None
    assert f"not built into Linux {RELEASE}" in message
    assert str(tmp_path / "lib-modules" / RELEASE) in message


def test_a_ready_system_misses_nothing(tmp_path: Path) -> None:
    system = make_system(tmp_path, module="loaded")
    for name in BackendName:
        assert missing_prerequisites(name, system) == []


def test_everything_missing_is_listed_at_once(tmp_path: Path) -> None:
    system = make_system(tmp_path, caps=NO_NET_ADMIN, tools=(), tun=False)
    assert missing_prerequisites("wireguard-go", system) == [
        NEED_ROOT, NEED_WG, NEED_IP, NEED_WIREGUARD_GO, NEED_TUN,
    ]  # fmt: skip
    kernel = missing_prerequisites("kernel", system)
    assert kernel[:3] == [NEED_ROOT, NEED_WG, NEED_IP]
    assert kernel[3].startswith("the WireGuard kernel module")
    assert kernel[3].endswith("; or run WireGuard in userspace with --backend wireguard-go")
    auto = missing_prerequisites("auto", system)
    assert auto[:3] == [NEED_ROOT, NEED_WG, NEED_IP]
    assert auto[3].startswith("a WireGuard implementation: the WireGuard kernel module")
    assert NEED_WIREGUARD_GO in auto[3]
    assert missing_prerequisites("memory", system) == []
    message = prerequisites_message("wireguard-go", missing_prerequisites("wireguard-go", system))
    assert message.startswith("the wireguard-go backend cannot run here; missing: root or")
    assert message.count(";") == 5


def test_auto_is_happy_with_either_implementation(tmp_path: Path) -> None:
    assert missing_prerequisites("auto", make_system(tmp_path / "k", tools=("wg", "ip"),
                                                     module="loaded")) == []  # fmt: skip
    assert missing_prerequisites("auto", make_system(tmp_path / "u")) == []


def test_the_kernel_backend_needs_no_wireguard_go(tmp_path: Path) -> None:
    system = make_system(tmp_path, tools=("wg", "ip"), module="builtin", tun=False)
    assert missing_prerequisites("kernel", system) == []


def test_auto_prefers_the_kernel_then_wireguard_go(tmp_path: Path) -> None:
    assert resolve_auto(make_system(tmp_path / "a", module="installed")) is BackendName.KERNEL
    assert resolve_auto(make_system(tmp_path / "b")) is BackendName.WIREGUARD_GO
    with pytest.raises(BackendUnavailable, match="no WireGuard backend is available"):
        resolve_auto(make_system(tmp_path / "c", tools=("wg", "ip")))
