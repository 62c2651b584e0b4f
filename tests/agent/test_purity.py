"""The agent never imports the server: it must run where only the agent is installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wiremesh.agent
import wiremesh.cli.agent

AGENT_FILES = [
    *Path(wiremesh.agent.__file__).parent.rglob("*.py"),
    Path(wiremesh.cli.agent.__file__),
]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_there_are_agent_modules_to_check() -> None:
    assert len(AGENT_FILES) >= 8


def test_no_agent_module_imports_the_server() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in AGENT_FILES
        for module in imported_modules(path)
        if module == "wiremesh.server" or module.startswith("wiremesh.server.")
        or module in ("sqlalchemy", "fastapi")  # server-only libraries
    }  # fmt: skip
    assert not offenders


def test_importing_the_agent_and_its_commands_loads_nothing_of_the_server() -> None:
    code = (
        "import sys\n"
        "import wiremesh.agent.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('wiremesh.server')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
