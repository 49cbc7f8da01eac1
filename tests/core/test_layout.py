"""The package's shape: no import cycle (imports inside functions included), dependencies
pointing from the front doors to the core, frameworks imported only by their own door."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "posthog_callbacks"
FRONT_DOORS = ("langchain", "llama_index")
FRAMEWORKS = {"langchain_core": "langchain", "langgraph": "langchain", "llama_index": "llama_index"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(package modules, top-level outside packages) imported anywhere in ``path``."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("posthog_callbacks"):
                outside.add(target.split(".")[0])
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            inside.update(subs if len(subs) == len(node.names) else [target, *subs])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("posthog_callbacks"):
                    inside.add(alias.name)
                else:
                    outside.add(alias.name.split(".")[0])
    inside.discard(module)
    return {m for m in inside if m in modules}, outside


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    graph, external = {}, {}
    for name, path in modules.items():
        graph[name], external[name] = _imports(name, path, modules)
    return graph, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _door(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FRONT_DOORS else None


def test_no_import_cycle_even_inside_functions() -> None:
    graph, _ = _graph()
    assert len(graph) > 30  # the walk really saw the package
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_never_imports_a_front_door_or_explore() -> None:
    graph, _ = _graph()
    core = [
        m
        for m in graph
        if m.count(".") == 1 and m.split(".")[1] not in (*FRONT_DOORS, "explore", "cli")
    ]
    assert "posthog_callbacks.tracing" in core and "posthog_callbacks.exporter" in core
    for module in core:
        wrong = {m for m in graph[module] if _door(m) or ".explore" in m or ".cli" in m}
        assert not wrong, (module, wrong)


def test_frameworks_are_imported_only_by_their_own_door() -> None:
    _, external = _graph()
    for module, names in external.items():
        for name in names & FRAMEWORKS.keys():
            owner = FRAMEWORKS[name]
            assert _door(module) == owner or module.startswith("posthog_callbacks.cli"), (
                module,
                name,
            )


def test_importing_the_package_imports_no_framework() -> None:
    code = (
        "import sys, posthog_callbacks, posthog_callbacks.explore\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core', 'langgraph', 'llama_index', 'pandas', 'matplotlib')]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
