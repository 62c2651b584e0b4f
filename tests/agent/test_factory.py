"""Choosing and building a backend by its ``--backend`` name."""

from __future__ import annotations

import pytest

from wiremesh.agent.backend import BackendName, BackendUnavailable
from wiremesh.agent.factory import create_backend
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.wireguard import prereq
from wiremesh.agent.wireguard.kernel import KernelBackend
from wiremesh.agent.wireguard.userspace import WireGuardGoBackend


def test_memory_backend_is_created_by_name() -> None:
    assert isinstance(create_backend("memory"), MemoryBackend)
    assert isinstance(create_backend(BackendName.MEMORY), MemoryBackend)


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(BackendUnavailable, match=r"unknown backend 'wg'.*memory, wireguard-go"):
        create_backend("wg")


def test_create_backend_builds_the_real_backends_for_an_interface() -> None:
    kernel = create_backend("kernel", interface="wm7")
    assert isinstance(kernel, KernelBackend)
    assert kernel.interface == "wm7"
    userspace = create_backend(BackendName.WIREGUARD_GO)
    assert isinstance(userspace, WireGuardGoBackend)
    assert userspace.interface == "wm0"
    assert isinstance(create_backend("memory", interface="ignored"), MemoryBackend)
    assert (kernel.mtu, kernel.keepalive) == (1420, 25)  # WireGuard's MTU, set explicitly
    tuned = create_backend("wireguard-go", mtu=1280, keepalive=0)
    assert isinstance(tuned, WireGuardGoBackend)
    assert (tuned.mtu, tuned.keepalive) == (1280, 0)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [(BackendName.KERNEL, KernelBackend), (BackendName.WIREGUARD_GO, WireGuardGoBackend)],
)
def test_create_backend_auto_follows_the_system(
    monkeypatch: pytest.MonkeyPatch, choice: BackendName, expected: type
) -> None:
    monkeypatch.setattr(prereq, "resolve_auto", lambda: choice)
    assert isinstance(create_backend("auto", interface="wm3"), expected)


def test_create_backend_auto_never_falls_back_to_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing() -> BackendName:
        raise BackendUnavailable("no WireGuard backend is available: test")

    monkeypatch.setattr(prereq, "resolve_auto", nothing)
    with pytest.raises(BackendUnavailable, match="no WireGuard backend is available"):
        create_backend("auto")


def test_create_backend_refuses_an_unusable_interface_name() -> None:
    with pytest.raises(ValueError, match="not a usable interface name"):
        create_backend("kernel", interface="wm0; reboot")
