"""The package's shape: no import cycle, layers that point one way, one owner of the run-directory names.

The import graph is read from the source (ast), so a cycle is caught whether or not the imports
involved happen to run. An edge is any ``import``/``from ... import`` of an ``nl2code`` module,
at module level or inside a function: a function-level import only defers a cycle to run time, it
does not remove it. Importing ``nl2code.a.b`` also runs ``nl2code/a/__init__.py``, so that package
is an edge too (unless the importer is inside it). Imports under ``if TYPE_CHECKING:`` never run and
are not edges.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "nl2code"


def _modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package)."""
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the nl2code modules (and their packages) it imports."""
    mods = _modules()

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        package = mod if is_pkg else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {t for a in node.names if (t := owner(a.name))}
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            for a in node.names:  # ``from pkg import module`` imports the module
                full = f"{name}.{a.name}"
                if (t := full if full in mods else owner(name)) is not None:
                    targets.add(t)
        for t in {t for t in targets if t.startswith("nl2code")}:
            parts = t.split(".")
            for i in range(2, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in mods and dep != mod and not (mod + ".").startswith(dep + "."):
                    graph[mod].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_function_level_imports_and_packages():
    graph = import_graph()
    # api imports the generation package at module level; cli imports commands inside a function
    # (by importlib, which is not an edge); generation.load imports safetensors only, in a function.
    assert "nl2code.generation" in graph["nl2code.api"]
    assert "nl2code.data.tokenizer" in graph["nl2code.rundir"]  # imported inside RunDir methods only
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


LIBRARY = ("eval", "models", "data", "train", "sampling", "diffusion", "objectives", "generation")


def test_library_code_never_imports_the_cli():
    graph = import_graph()
    bad = {
        mod: sorted(t for t in deps if t == "nl2code.cli" or t.startswith("nl2code.commands"))
        for mod, deps in graph.items()
        if mod.split(".")[1:2] in ([r] for r in LIBRARY) or mod in ("nl2code.rundir", "nl2code.api")
    }
    assert not {m: d for m, d in bad.items() if d}


def test_data_layer_imports_nothing_above_it():
    above = ("nl2code.train", "nl2code.sampling", "nl2code.models", "nl2code.objectives", "nl2code.generation")
    graph = import_graph()
    bad = {
        m: sorted(d for d in deps if d.startswith(above)) for m, deps in graph.items() if m.startswith("nl2code.data")
    }
    assert not {m: d for m, d in bad.items() if d}


def test_importing_the_data_layer_loads_no_training_sampling_or_model_code():
    data = sorted(m for m in _modules() if m.startswith("nl2code.data"))
    code = (
        "import importlib, sys\n"
        f"for m in {data!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('nl2code.train', 'nl2code.sampling', "
        "'nl2code.models', 'nl2code.objectives'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[]"


# The run directory's names are spelled only by its owner. Formats that are not a run directory keep
# their own names: the tokenizer's files inside its folder (data/tokenizer.py) and the Hugging Face
# folder layout, whose file names happen to match ours (models/hf_export.py).
OWNERS = {
    "config.yaml": {"rundir.py"},
    "model.safetensors": {"rundir.py", "models/hf_export.py"},
    "tokenizer/": {"rundir.py"},
    "tokenizer.json": {"rundir.py", "data/tokenizer.py", "models/hf_export.py"},
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def run_dir_names(source: str) -> list[tuple[int, str, str]]:
    """(line, name, literal) for each run-directory name a string literal spells (docstrings aside):
    the names inside any literal (f-string parts too), and ``"tokenizer"`` joined onto a path."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    joined = {id(n.right) for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value + ("/" if node.value == "tokenizer" and id(node) in joined else "")
            found += [(node.lineno, name, node.value) for name in OWNERS if name in text]
    return found


def test_the_name_check_sees_paths_messages_and_joins():
    src = '"""a model.safetensors doc"""\nx = d / "tokenizer"\ny = f"{d}/config.yaml: bad"\nz = {"tokenizer": 1}\n'
    assert sorted(name for _, name, _ in run_dir_names(src)) == ["config.yaml", "tokenizer/"]


def test_run_directory_names_are_spelled_only_by_their_owner():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for line, name, text in run_dir_names(path.read_text(encoding="utf-8")):
            if rel not in OWNERS[name]:
                offenders.append(f"{rel}:{line}: {name} in {text[:70]!r}")
    assert not offenders, "run-directory names outside nl2code/rundir.py:\n" + "\n".join(offenders)
