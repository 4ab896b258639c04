"""The package's structure, read from its source with ``ast`` (nothing is imported).

Every module under ``edgel3/`` is parsed and every import statement in it is
collected: module level and inside functions or ``if TYPE_CHECKING`` blocks,
relative and absolute. The tests fail on

* an import cycle between modules (the cycle is printed);
* an underscore name imported from another edgel3 module (``from .x import _y``,
  or a private module ``from ._x import y``), reported as file:line;
* a module over 500 lines (``frontend.py`` and ``sparse.py`` may reach 560);
* a low-layer module (loading, checks, pipeline, runners, the public API...)
  importing from a higher one (batch extraction, evaluation, export,
  compression, the command line);
* command modules outside ``edgel3/commands/`` (one naming pattern).

The checkers are plain functions of a source tree, and the last tests run them
on small synthetic packages to show that each one does catch what it looks for.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "edgel3"

MAX_LINES = 500
#: Cohesive modules allowed to exceed MAX_LINES, with their own ceiling.
LINE_ALLOWANCE = {"edgel3/frontend.py": 560, "edgel3/sparse.py": 560}

#: Modules (``edgel3.NAME``) that must not import from the higher layer below.
LOW_LAYER = frozenset(
    {
        "checks",
        "tensors",  # issue 15: tensors in (as_array)
        "exceptions",
        "version",
        "specs",
        "resample",
        "resample_kernel",  # split out of resample
        "frontend",
        "files",
        "naming",  # output names (issue 11)
        "provenance",
        "locks",
        "pipeline",
        "weights",
        "weight_cache",
        "fetch",
        "legacy_h5",
        "layers",
        "networks",
        "sparse",
        "sparse_kernels",
        "dense_kernels",  # issue 13: Winograd on BLAS
        "blas",
        "stft",
        "keras_file",  # issue 13: .keras files without Keras
        "keras_ops",
        "keras_runner",
        "model_identity",
        "numpy_runtime",
        "litert",
        "loading",
        "runners",
        "reference",
        "engine",
        "core",
        "runs",  # process_files (issue 11)
    }
)
#: Packages and modules (``edgel3.NAME``) of the higher layer.
HIGH_LAYER = frozenset(
    {
        "batch",
        "evaluate",
        "export",
        "compress",
        "commands",
        "cli",
        "parallel",
        "distributed",
        "outputs",
    }
)


# --------------------------------------------------------------------------- the walker


@dataclass(frozen=True)
class Import:
    """One imported module (and name) found in a source file."""

    source: str  # importing module, e.g. 'edgel3.commands.embed'
    target: str  # imported module, e.g. 'edgel3.batch.inputs'
    name: str | None  # the name taken from ``target`` (``from target import name``), if any
    path: str  # importing file, relative to the project root
    line: int


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    root = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _base_package(module: str, path: Path, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return package


def collect_imports(package_dir: Path) -> list[Import]:
    """Every import of a package module by a package module (nested imports included)."""
    modules = module_files(package_dir)
    top = package_dir.name
    root = package_dir.parent
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        found.append(Import(module, alias.name, None, rel, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _base_package(module, path, node.level)
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                if target != top and not target.startswith(top + "."):
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in modules:  # ``from package import submodule``
                        found.append(Import(module, submodule, None, rel, node.lineno))
                    else:
                        found.append(Import(module, target, alias.name, rel, node.lineno))
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its source)."""
    modules = module_files(package_dir)
    graph = {module: set() for module in modules}
    for imp in collect_imports(package_dir):
        target = imp.target
        while target not in modules and "." in target:  # an attribute path: its module
            target = target.rpartition(".")[0]
        if target in modules and target != imp.source:
            graph[imp.source].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on deep graphs
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(graph, component) for component in components]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module (sorted) of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    next_frontier.append(child)
        frontier = next_frontier
    raise AssertionError(f"no cycle through {start}")  # unreachable for a real component


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(package_dir: Path) -> list[str]:
    """``file:line: from X import _name`` for underscore names taken from other modules."""
    problems = []
    for imp in collect_imports(package_dir):
        private_module = [p for p in imp.target.split(".") if _is_private(p)]
        if imp.name is not None and _is_private(imp.name):
            problems.append(f"{imp.path}:{imp.line}: from {imp.target} import {imp.name}")
        elif private_module and imp.target != imp.source:
            problems.append(f"{imp.path}:{imp.line}: imports private module {imp.target}")
    return problems


def long_modules(package_dir: Path, allowance: dict[str, int]) -> list[str]:
    """``file: N lines (limit L)`` for modules over their line limit."""
    root = package_dir.parent
    problems = []
    for path in module_files(package_dir).values():
        rel = path.relative_to(root).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        limit = allowance.get(rel, MAX_LINES)
        if lines > limit:
            problems.append(f"{rel}: {lines} lines (limit {limit})")
    return problems


def layer_violations(package_dir: Path, low: frozenset, high: frozenset) -> list[str]:
    """``file:line: low imports high`` for imports from the higher layer into the lower one."""
    top = package_dir.name

    def layer_name(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == top else ""

    problems = []
    for imp in collect_imports(package_dir):
        if layer_name(imp.source) in low and layer_name(imp.target) in high:
            what = imp.target + (f".{imp.name}" if imp.name else "")
            problems.append(f"{imp.path}:{imp.line}: {imp.source} imports {what}")
    return problems


# --------------------------------------------------------------------------- the package


def test_no_import_cycles():
    cycles = find_cycles(import_graph(PACKAGE_DIR))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_underscore_names_imported_across_modules():
    problems = private_imports(PACKAGE_DIR)
    assert not problems, "underscore names imported from another module:\n" + "\n".join(problems)


def test_no_module_over_500_lines():
    problems = long_modules(PACKAGE_DIR, LINE_ALLOWANCE)
    assert not problems, "modules over their line limit:\n" + "\n".join(problems)


def test_low_layer_never_imports_the_high_layer():
    problems = layer_violations(PACKAGE_DIR, LOW_LAYER, HIGH_LAYER)
    assert not problems, "imports from a higher layer:\n" + "\n".join(problems)


def test_low_layer_names_existing_modules():
    # A renamed low-layer module must not silently leave the layer check. (High-layer names
    # may disappear: parallel, distributed and outputs move into batch/.)
    top_level = {name.split(".")[1] for name in module_files(PACKAGE_DIR) if "." in name}
    assert LOW_LAYER <= top_level, sorted(LOW_LAYER - top_level)


def test_command_modules_follow_one_pattern():
    # One naming pattern: edgel3/cli.py dispatches, edgel3/commands/NAME.py implements.
    root = PACKAGE_DIR.parent
    stray = [
        path.relative_to(root).as_posix()
        for path in module_files(PACKAGE_DIR).values()
        if ("cli" in path.stem or path.stem == "commands")
        and path.relative_to(root).as_posix() != "edgel3/cli.py"
        and "commands" not in path.relative_to(PACKAGE_DIR).parts[:-1]
    ]
    assert not stray, f"command modules outside edgel3/commands/: {stray}"
    commands = PACKAGE_DIR / "commands"
    for path in sorted(commands.glob("*.py")):
        if path.stem in ("__init__", "common"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        } | {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        missing = {"DESCRIPTION", "add_arguments", "run"} - defined
        assert not missing, f"{path.name} lacks {sorted(missing)}"


# --------------------------------------------------------------------------- the checkers


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "edgel3" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "edgel3"


def test_checkers_find_a_cycle_through_nested_and_absolute_imports(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import f\n",
            "b.py": "def f():\n    import edgel3.sub.c\n",
            "sub/__init__.py": "",
            "sub/c.py": "from .. import a\n",
            "d.py": "from . import a\n",  # imports into the cycle, is not part of it
        },
    )
    assert find_cycles(import_graph(package)) == [
        ["edgel3.a", "edgel3.b", "edgel3.sub.c", "edgel3.a"]
    ]


def test_checkers_find_private_imports_with_their_line(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "from .version import __version__\n",
            "version.py": "__version__ = '1'\n_x = 1\n",
            "a.py": "import os\n\n\ndef g():\n    from .version import _x\n",
            "_hidden.py": "y = 1\n",
            "b.py": "from ._hidden import y\nfrom os import _exit\n",
        },
    )
    assert private_imports(package) == [
        "edgel3/a.py:5: from edgel3.version import _x",
        "edgel3/b.py:1: imports private module edgel3._hidden",
    ]


def test_checkers_find_layer_violations_and_long_modules(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "core.py": "def f():\n    from .export.convert import g\n" + "\n" * 600,
            "export/__init__.py": "",
            "export/convert.py": "from ..core import f\n",
        },
    )
    assert layer_violations(package, frozenset({"core"}), frozenset({"export"})) == [
        "edgel3/core.py:2: edgel3.core imports edgel3.export.convert.g"
    ]
    assert long_modules(package, {}) == ["edgel3/core.py: 602 lines (limit 500)"]
    assert long_modules(package, {"edgel3/core.py": 610}) == []


@pytest.mark.parametrize("level, expected", [(1, "edgel3.sub"), (2, "edgel3")])
def test_relative_imports_resolve_from_modules_and_packages(tmp_path, level, expected):
    package = _write_package(tmp_path, {"__init__.py": "", "sub/__init__.py": "", "sub/m.py": ""})
    modules = module_files(package)
    assert _base_package("edgel3.sub.m", modules["edgel3.sub.m"], level) == expected
    # In a package's __init__, one dot is the package itself.
    assert _base_package("edgel3.sub", modules["edgel3.sub"], level) == expected
