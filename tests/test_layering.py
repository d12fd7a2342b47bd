"""The engine is pure: importing it pulls in no I/O library and no provider, and its modules
form a DAG."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import duro

FORBIDDEN = [
    "anyio",
    "httpx",
    "sqlite3",
    "opentelemetry",  # the engine carries trace context as data; spans are the shell's work
    "duro.providers",
    "duro._runtime",
    "duro._client",
    "duro._telemetry",
]


def test_engine_imports_no_io_and_no_provider() -> None:
    code = (
        "import sys, duro._engine\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    # duro/__init__ imports everything, so load the engine package without running it.
    out = subprocess.run(
        [sys.executable, "-c", _isolated(code)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def _isolated(code: str) -> str:
    """Run ``code`` with a stub ``duro`` package so ``duro/__init__.py`` is not executed."""
    return (
        "import sys, types, pathlib, importlib.util\n"
        "spec = importlib.util.find_spec('duro')\n"
        "pkg = types.ModuleType('duro')\n"
        "pkg.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['duro'] = pkg\n" + code
    )


ENGINE = pathlib.Path(duro.__file__).parent / "_engine"


def test_engine_modules_import_each_other_without_cycles() -> None:
    # Annotation-only imports (under ``if TYPE_CHECKING:``) count too: a cycle through them
    # still means neither module can be read, or changed, without the other.
    graph = {
        module: {dep for dep in imports if dep.startswith("duro._engine")}
        for module, imports in _imports_of_package(ENGINE, "duro._engine").items()
    }
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in the engine: " + " -> ".join(cycle or [])


def test_find_cycle_names_the_modules_in_import_order() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def _imports_of_package(directory: pathlib.Path, package: str) -> dict[str, set[str]]:
    """Module name -> every module it imports anywhere in its source, resolved to full names."""
    result: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.py")):
        module = package if path.stem == "__init__" else f"{package}.{path.stem}"
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(package, node.module, node.level)
                imported.add(base)
                # ``from . import _x`` imports the module ``_x`` itself.
                imported.update(f"{base}.{alias.name}" for alias in node.names)
        known = {f"{package}.{p.stem}" for p in directory.glob("*.py")} | {package}
        result[module] = {name for name in imported if name in known and name != module}
    return result


def _resolve(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None if the graph is a DAG."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            cycle = visit(dep)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None
