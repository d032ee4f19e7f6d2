"""Reads a package's imports (ast, no execution) so a test can check that they only point down the
layer order, and that the package has no import cycles."""
from __future__ import annotations

import ast
from pathlib import Path


def module_imports(package_dir: Path, package: str) -> dict[str, set[str]]:
    """{module: {imported modules of the same package}} for every .py file under `package_dir`.
    Relative imports are resolved; imports inside `if TYPE_CHECKING:` count too (a cycle in types
    is still a cycle in the design)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).with_suffix("")
        parts = [package, *rel.parts]
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mod = ".".join(parts)
        base = parts if is_pkg else parts[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    target = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.add(target)
                # `from pkg import submodule` imports the submodule
                found.update(f"{target}.{a.name}" for a in node.names)
        graph[mod] = {m for m in found if m == package or m.startswith(package + ".")}
    # keep only names that are modules or packages of this package
    known = set(graph)
    return {m: {i for i in deps if i in known and i != m} for m, deps in graph.items()}


def layer_of(module: str, layers: list[list[str]], package: str) -> int:
    """Index of the layer that holds `module`: layers are lists of module prefixes relative to the
    package ("engine" matches package.engine and package.engine.*), lowest layer first."""
    rel = module[len(package) + 1:] if module != package else ""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            if rel == p or rel.startswith(p + "."):
                if best is None or len(p) > best[0]:
                    best = (len(p), i)
    if best is None:
        raise KeyError(f"{module} is in no layer: add it to the layer map")
    return best[1]


def upward_imports(graph: dict[str, set[str]], layers: list[list[str]], package: str) -> list[str]:
    """Every import that points at a higher layer, as readable lines."""
    bad = []
    for mod, deps in sorted(graph.items()):
        if mod == package:
            continue
        here = layer_of(mod, layers, package)
        for dep in sorted(deps):
            if dep == package:
                continue
            there = layer_of(dep, layers, package)
            if there > here:
                bad.append(f"{mod} (layer {here}) imports {dep} (layer {there})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    """The module graph collapsed to the package's direct children (subpackages and top-level
    modules), so `cycles()` also finds cycles between subpackages."""
    def top(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else m

    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        if mod == package:
            continue
        out.setdefault(top(mod), set()).update(top(d) for d in deps if d != package and top(d) != top(mod))
    return out
