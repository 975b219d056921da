"""The house's plan, checked: pipeline/ is pure audio and inference; each package of server/
imports only what its folder may touch; the client is apart from the server; and no project
module imports another that imports it back, counting imports under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"
FORBIDDEN = ("server", "client", "bench", "tests", "aiohttp", "aiortc", "jinja2", "prometheus_client")
PROJECT = ("server", "pipeline", "client", "bench")

# What each package may import of the project, besides itself and pipeline/ (a prefix each).
ALLOWED = {
    "server.edge": ("server.settings",),
    "server.rooms": ("server.edge", "server.messages"),
    "server.media": ("server.edge", "server.rooms", "server.messages", "server.state"),
    "server.routes": ("server.",),
    # The compatible APIs: what a route may use of the edge, rooms' subtitles and the app state.
    "server.api": (
        "server.edge",
        "server.rooms",
        "server.messages",
        "server.settings",
        "server.state",
        "server.metrics",
    ),
    "client": (),
}
TOP_LEVEL_MODULES = 12


def modules() -> dict[str, Path]:
    found = {}
    for package in PROJECT:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, at run time or for type checking alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name in known}


def test_pipeline_imports_no_edges() -> None:
    offenders = []
    for path in PIPELINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_each_package_imports_only_what_its_folder_may_touch() -> None:
    known = modules()
    offenders = []
    for name, path in known.items():
        package = next((p for p in ALLOWED if name == p or name.startswith(p + ".")), None)
        if package is None:
            continue
        for target in imports(path, known):
            allowed = (package, "pipeline", *ALLOWED[package])
            if not any(target == a or target.startswith(a if a.endswith(".") else a + ".") for a in allowed):
                offenders.append(f"{name} -> {target}")
    assert offenders == []


def test_the_server_never_imports_the_client_the_benchmarks_or_the_tests() -> None:
    """Only the CLI's entry point reaches the client, to start ``nova-voice dictate``."""
    known = modules()
    offenders = [
        f"{name} -> {target}"
        for name, path in known.items()
        if name.startswith("server") and name != "server.__main__"
        for target in imports(path, known)
        if target.split(".")[0] in ("client", "bench", "tests")
    ]
    assert offenders == []


def test_no_project_module_imports_one_that_imports_it_back() -> None:
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_every_package_says_what_it_owns_and_the_top_of_server_stays_small() -> None:
    for init in [*ROOT.glob("server/*/__init__.py"), ROOT / "client" / "__init__.py"]:
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) < 400, f"{init.parent.name}/ opens with what it owns, briefly"
    assert len(list((ROOT / "server").glob("*.py"))) <= TOP_LEVEL_MODULES
