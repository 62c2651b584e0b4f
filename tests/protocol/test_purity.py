"""The protocol package must stay sans-I/O and independent of the server and agent."""

from __future__ import annotations

import ast
from pathlib import Path

import wiremesh.protocol

PACKAGE_DIR = Path(wiremesh.protocol.__file__).parent
FORBIDDEN = ("asyncio", "socket", "time", "datetime", "wiremesh.server", "wiremesh.agent",
             "websockets", "threading", "selectors")  # fmt: skip


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_package_has_modules_to_check() -> None:
    assert len(list(PACKAGE_DIR.glob("*.py"))) >= 5


def test_no_io_or_cross_package_imports() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in PACKAGE_DIR.glob("*.py")
        for module in _imported_modules(path)
        if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert not offenders


def test_public_api_is_exported() -> None:
    exported = set(wiremesh.protocol.__all__)
    assert all(hasattr(wiremesh.protocol, name) for name in exported)
    assert {"ServerSession", "AgentSession", "encode", "decode_agent_message",
            "decode_server_message", "encode_peers_delta", "CloseCode", "ProtocolError",
            "PROTOCOL_VERSION", "MAX_MESSAGE_BYTES"} <= exported  # fmt: skip
