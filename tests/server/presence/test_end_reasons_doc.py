"""The README's table of end reasons lists every reason the presence layer writes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import wiremesh.server.presence
from wiremesh.server.alerts.transitions import NOT_A_DEVICE_FAILURE

ROOT = Path(__file__).parents[3]
PRESENCE = Path(wiremesh.server.presence.__file__).parent


def documented_reasons() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("**End reasons.**")
    section = readme[start : readme.index("\n## ", start)]
    header = "| `end_reason` |"
    rows = [line for line in section.splitlines() if line.startswith("| `") and header not in line]
    return {name for row in rows for name in re.findall(r"`([a-z_<>]+)`", row.split("|")[1])}


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def written_reasons() -> set[str]:
    """Literal reasons in the presence code: what ``end_session``, ``ended_events`` and the
    repository are given, what the gateway's ``_end_reason`` returns, and the constants."""
    found: set[str] = set()
    for path in PRESENCE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "_end_reason":
                returns = [n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value]
                found |= {_text(n.value) or "" for n in returns if n.value is not None}
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                position = {"end_session": 2, "ended_events": 1}.get(str(name))
                if position is not None and len(node.args) > position:
                    found.add(_text(node.args[position]) or "")
                for keyword in node.keywords:
                    if keyword.arg in ("reason", "end_reason"):
                        found.add(_text(keyword.value) or "")
            elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id == "ORPHAN_REASON":
                    found.add(_text(node.value) or "")
                if node.targets[0].id == "_REMOVAL_REASONS" and isinstance(node.value, ast.Dict):
                    found |= {_text(value) or "" for value in node.value.values}
    return found - {""}


def test_the_scan_finds_the_reasons_it_should() -> None:
    expected = {"client_closed", "superseded", "server_lost", "deleted", "send_failed"}
    assert expected <= written_reasons()


def test_every_reason_written_is_documented() -> None:
    documented = documented_reasons()
    assert written_reasons() <= documented
    assert documented >= NOT_A_DEVICE_FAILURE
    # Built from close codes at run time, so documented as patterns.
    assert {"client_closed_<code>", "protocol_<code>"} <= documented
