"""The import rules docs/architecture.md states for the server, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import wiremesh.server

SERVER_DIR = Path(wiremesh.server.__file__).parent
WEB_FRAMEWORK = ("fastapi", "starlette")
# Where HTTP lives: the app, the endpoint and dependency modules, the error handlers, the
# agent WebSocket gateway, the ASGI middleware that acts before parsing, and the dashboard.
WEB_MODULES = {"app.py", "http_errors.py", "presence/gateway.py", "limits.py"}
WEB_PACKAGES = ("web/",)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((SERVER_DIR / package).rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(SERVER_DIR).as_posix()


def _is_web_module(path: Path) -> bool:
    name = _name(path)
    return (
        path.name in {"api.py", "deps.py"} or name in WEB_MODULES or name.startswith(WEB_PACKAGES)
    )


def test_only_the_web_layer_imports_the_web_framework() -> None:
    offenders = [
        f"{_name(path)}: {module}"
        for path in SERVER_DIR.rglob("*.py")
        if not _is_web_module(path)
        for module in imports(path)
        if module.split(".")[0] in WEB_FRAMEWORK
    ]
    assert not offenders


def test_only_the_app_mounts_the_api_modules() -> None:
    offenders = [
        f"{_name(path)}: {module}"
        for path in SERVER_DIR.rglob("*.py")
        if _name(path) != "app.py"
        for module in imports(path)
        if module.startswith("wiremesh.server.") and module.endswith(".api")
    ]
    assert not offenders


def test_alerts_depend_one_way_on_presence_and_mail() -> None:
    offenders = [
        f"{_name(path)}: {module}"
        for package in ("mail", "presence")
        for path in modules(package)
        for module in imports(path)
        if module.startswith("wiremesh.server.alerts")
        or module == "wiremesh.server.orgs.invitations"
    ]
    assert modules("mail")
    assert modules("presence")
    assert not offenders


def test_only_the_app_mounts_the_dashboard() -> None:
    """The dashboard is an HTTP layer like the ``api.py`` modules: no domain module uses it."""
    offenders = [
        f"{_name(path)}: {module}"
        for path in SERVER_DIR.rglob("*.py")
        if _name(path) != "app.py" and not _name(path).startswith(WEB_PACKAGES)
        for module in imports(path)
        if module.startswith("wiremesh.server.web")
    ]
    assert modules("web")
    assert not offenders
