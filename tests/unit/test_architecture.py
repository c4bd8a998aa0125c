"""The rules ARCHITECTURE.md states, checked on the source: which layer may import which, no import cycle,
no loose modules in proxy/, no module over the size that says it holds two things."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "proxy"
MAX_LINES = 500
"""A module over this is usually two modules (generated code aside)."""

# Layer -> the layers it may import (itself always). The core sees only itself; adapters see the core;
# app/cli/bench/demo sit on top. Kept in step with ARCHITECTURE.md.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "migration": frozenset({"core"}),
    "adapters": frozenset({"core"}),
    "transport": frozenset({"core", "migration", "_gen"}),
    "planning": frozenset({"core", "migration"}),
    "app": frozenset({"core", "migration", "adapters", "transport", "_gen"}),
    "cli": frozenset({"core", "migration", "app", "planning", "demo", "bench", "_gen"}),
    "demo": frozenset({"core", "cli"}),
    "bench": frozenset(
        {"core", "migration", "adapters", "transport", "app", "cli", "demo", "planning", "_gen"}
    ),
    "__main__": frozenset({"cli"}),
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if "_gen" in relative.parts:
            continue
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> set[str]:
    """Every proxy module this one imports, at any depth (lazy and TYPE_CHECKING imports count too)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base])
            found.add(base.rstrip("."))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("proxy.")}


MODULES = dict(_modules())
GRAPH = {
    module: {target for target in _imports(module, path) if target in MODULES and target != module}
    for module, path in MODULES.items()
}


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _adapter_package(module: str) -> str:
    return ".".join(module.split(".")[:3])


def test_layers_import_only_what_architecture_md_allows() -> None:
    broken = []
    for module, targets in GRAPH.items():
        layer = _layer(module)
        for target in targets:
            other = _layer(target)
            if other and other != layer and other not in ALLOWED.get(layer, frozenset()):
                broken.append(f"{module} imports {target} ({layer} -> {other})")
    assert not broken, "\n".join(sorted(broken))


def test_no_adapter_imports_another_adapter() -> None:
    crossing = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _layer(module) == "adapters"
        for target in targets
        if _layer(target) == "adapters" and _adapter_package(target) != _adapter_package(module)
    ]
    assert not crossing, "\n".join(crossing)


def _find_cycle() -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(GRAPH[module]):
            # A package's __init__ re-exporting its own modules is not a cycle of mechanisms.
            if target.startswith(f"{module}."):
                continue
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(GRAPH):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = _find_cycle()
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    GRAPH["proxy.core.model"].add("proxy.core.merge")
    try:
        assert _find_cycle() is not None
    finally:
        GRAPH["proxy.core.model"].discard("proxy.core.merge")


def test_proxy_root_holds_packages_only() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules directly in proxy/: {loose}; each belongs in the folder of its layer"


def test_no_module_is_two_modules() -> None:
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    too_long = [f"{module}: {lines} lines" for module, lines in sorted(sizes.items()) if lines > MAX_LINES]
    assert not too_long, f"split these by mechanism (over {MAX_LINES} lines): {too_long}"
