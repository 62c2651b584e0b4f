"""The agent never imports the server (it must run where only the agent is installed), and
its modules import each other in layers: no cycles, the backend contract at the bottom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wiremesh.agent
import wiremesh.cli.agent

AGENT_FILES = [
    *Path(wiremesh.agent.__file__).parent.rglob("*.py"),
    Path(wiremesh.cli.agent.__file__),
]


AGENT_DIR = Path(wiremesh.agent.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from a import b``
    gives ``a``, and ``a.b`` too, so a submodule imported by name counts)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def module_name(path: Path) -> str:
    parts = ["wiremesh", "agent", *path.relative_to(AGENT_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def agent_import_graph() -> dict[str, set[str]]:
    """Agent module -> the agent modules it imports."""
    paths = {module_name(path): path for path in AGENT_DIR.rglob("*.py")}
    return {name: imported_modules(path) & paths.keys() for name, path in paths.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


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


def loaded_after_importing(modules: str, prefix: str) -> str:
    """The modules under ``prefix`` that importing ``modules`` loads, in a fresh interpreter."""
    code = (
        "import sys\n"
        f"import {modules}\n"
        f"print(sorted(m for m in sys.modules if m.startswith({prefix!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_importing_the_agent_and_its_commands_loads_nothing_of_the_server() -> None:
    assert loaded_after_importing("wiremesh.agent.cli", "wiremesh.server") == "[]"


@pytest.mark.parametrize("library", ["httpx", "cryptography", "rich"])
def test_the_long_running_agent_loads_no_http_client_nor_openssl(library: str) -> None:
    """``agent up`` stays small (benchmarks/agent_footprint.py): only the commands that
    talk HTTP or make keys load these."""
    assert loaded_after_importing("wiremesh.agent.cli, wiremesh.cli.agent", library) == "[]"


SERVER_STACK = ("fastapi", "sqlalchemy", "uvicorn", "starlette", "alembic", "wiremesh.server")


def server_modules_after_running(*argv: str) -> list[str]:
    """The server-stack modules loaded by running ``wiremesh ARGV`` in a fresh interpreter."""
    code = (
        "import sys\n"
        f"sys.argv = ['wiremesh', *{list(argv)!r}]\n"
        "from wiremesh.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted({{m.split('.')[0] if not m.startswith('wiremesh') else m\n"
        f"    for m in sys.modules if m.startswith({SERVER_STACK!r})}}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return list(ast.literal_eval(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [
        ("agent", "status", "--help"),
        ("agent", "up", "--help"),
        ("agent", "status", "--state-dir", "/nonexistent/wiremesh-test"),
    ],
)
def test_the_agent_group_of_the_main_command_loads_no_server_stack(argv: tuple[str, ...]) -> None:
    """``wiremesh agent ...`` starts as light as ``wiremesh-agent``: commands load lazily."""
    assert server_modules_after_running(*argv) == []


def test_the_server_commands_still_load_when_run() -> None:
    assert "fastapi" in server_modules_after_running("server", "--help")


def test_the_agent_modules_import_each_other_without_cycles() -> None:
    graph = agent_import_graph()
    assert "wiremesh.agent.factory" in graph
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_backend_contract_imports_nothing_of_wiremesh() -> None:
    imported = imported_modules(AGENT_DIR / "backend.py")
    assert not {module for module in imported if module.startswith("wiremesh")}


def test_only_the_factory_imports_the_real_backends() -> None:
    real = {"wiremesh.agent.wireguard.kernel", "wiremesh.agent.wireguard.userspace"}
    importers = {name for name, targets in agent_import_graph().items() if targets & real}
    assert importers == {"wiremesh.agent.factory"}


def test_the_session_loop_loads_no_real_backend() -> None:
    modules = "wiremesh.agent.runner, wiremesh.agent.memory"
    assert loaded_after_importing(modules, "wiremesh.agent.wireguard") == "[]"


BACKEND_LAYER = [
    "wiremesh.agent.backend",
    "wiremesh.agent.memory",
    "wiremesh.agent.reconcile",
    "wiremesh.agent.wireguard.base",
    "wiremesh.agent.wireguard.kernel",
    "wiremesh.agent.wireguard.userspace",
    "wiremesh.agent.wireguard.prereq",
    "wiremesh.agent.factory",
]
"""The modules of the old backend.py cycle (each once imported another first)."""


@pytest.mark.parametrize("name", BACKEND_LAYER)
def test_each_backend_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    """A cycle shows up as an ImportError only when its modules are imported in some order;
    importing each of them first covers every order that matters here."""
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, timeout=60)
