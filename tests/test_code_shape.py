"""The code's shape: functions short enough to read at once, and no import cycle among retrieval's modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "retrieval"
MAX_FUNCTION_LINES = 60


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def long_functions(path: Path, limit: int) -> list[str]:
    """``file:line name (N lines)`` for each function or method in ``path`` longer than ``limit`` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def module_name(path: Path) -> str:
    """``retrieval/models/__init__.py`` → ``retrieval.models``; ``retrieval/boxes.py`` → ``retrieval.boxes``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside functions or classes' methods, nor under
    ``if TYPE_CHECKING:``."""
    found = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.Try, ast.With, ast.ClassDef)):
                for block in ("body", "handlers", "orelse", "finalbody"):
                    for item in getattr(node, block, []):
                        visit(item.body if isinstance(item, ast.ExceptHandler) else [item])

    visit(tree.body)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``node`` (in the module ``importer``) loads, relative imports resolved.

    ``from .x import y`` loads ``x`` and, where ``y`` is a module of its own, ``x.y``. Loading ``a.b.c`` first
    runs the packages ``a`` and ``a.b``; they count where ``importer`` is outside them (a module inside a
    package is only ever imported after that package's ``__init__`` has started).
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = {target} if target in known else set()
    found |= {f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known}
    inside = _packages_of(importer) | ({importer} if is_package else set())
    return found | {package for module in found for package in _packages_of(module) if package not in inside}


def _packages_of(module: str) -> set[str]:
    """``a.b.c`` → ``{a, a.b}``: the packages whose ``__init__`` runs before ``module``."""
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    """Module → the retrieval modules it imports at module level."""
    paths = {module_name(path): path for path in python_files("retrieval")}
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set()
        for node in module_level_imports(tree):
            graph[name] |= imported_modules(node, name, is_package, known) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a → b → a``) per strongly connected group of modules that import each other."""
    found, seen = [], set()
    for start in sorted(graph):
        if start in seen:
            continue
        path = _cycle_from(start, graph)
        if path:
            found.append(path)
            seen |= set(path)
    return found


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """The shortest import path from ``start`` back to itself (breadth first), or ``None``."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for imported in sorted(graph.get(module, ())):
                if imported == start:
                    chain = [module]
                    while chain[-1] != start:
                        chain.append(parents[chain[-1]])
                    return [*reversed(chain), start]
                if imported not in parents:
                    parents[imported] = module
                    following.append(imported)
        frontier = following
    return None


def test_no_function_is_over_60_lines():
    offenders = [line for path in python_files("retrieval", "scripts", "tests") for line in long_functions(path, MAX_FUNCTION_LINES)]
    assert not offenders, "functions over 60 lines:\n" + "\n".join(offenders)


def test_no_import_cycle_among_retrievals_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in found)


def test_the_checks_find_what_they_look_for(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("def short():\n    pass\n\n\ndef long():\n" + "    x = 1\n" * 60)
    assert long_functions(long, MAX_FUNCTION_LINES) == ["long.py:5 long (61 lines)"]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import hidden\n"
        "from .sibling import thing\ntry:\n    import retrieval.kept\nexcept ImportError:\n    pass\n"
        "def f():\n    from . import inner\n"
    )
    known = {"retrieval", "retrieval.pkg", "retrieval.pkg.sibling", "retrieval.pkg.hidden", "retrieval.pkg.inner"}
    known |= {"retrieval.kept"}
    loaded = set().union(*(imported_modules(n, "retrieval.pkg.mod", False, known) for n in module_level_imports(tree)))
    assert loaded == {"retrieval.pkg.sibling", "retrieval.kept"}
    outside = imported_modules(ast.parse("from .pkg.sibling import x").body[0], "retrieval.other", False, known)
    assert outside == {"retrieval.pkg.sibling", "retrieval.pkg"}  # runs retrieval.pkg's __init__ first

