"""Mine an NL->code corpus from Python source trees (by default the installed standard library).

Every function or method (at any depth, ``async`` included) that has a docstring gives one record:

- ``nl``: the docstring's summary, i.e. its first paragraph (up to the first blank line) with the
  lines joined by single spaces;
- ``code``: the function's source (decorators included), dedented by the ``def`` line's indentation,
  with the docstring statement's lines removed. The full docstring is kept in ``extras``.

Rows that cannot be used are counted in ``dropped`` (a file that fails to parse, an empty summary,
a body that is only the docstring, a docstring sharing its line with code, too few/many lines).
The train/test split is by module: a file goes to ``test`` when the CRC-32 of its path relative to
the root, as a fraction of 2**32, is below ``test_fraction`` — stable across runs and machines.
Task ids are ``pysource/<relative path>::<qualified name>`` (``#k`` appended to the k-th repeat of a
name in one file, e.g. property setters).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import SourceError

# Folder names never descended into: tests, third-party packages, and stdlib parts that are tools,
# demos, data or Python-2 era code rather than library code.
SKIP_DIRS = frozenset({
    "test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3", "turtledemo",
    "__pycache__", "pydoc_data", "ensurepip", "lib-dynload", "venv", "node_modules",
})  # fmt: skip
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def default_root() -> Path:
    """The standard library of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def _skipped(name: str, skip_dirs: frozenset[str]) -> bool:
    # config-3.x-<platform> (stdlib) holds the build's Makefile and a stray python-config.py
    return name in skip_dirs or name.startswith((".", "config-3"))


def python_files(root: Path, skip_dirs: frozenset[str] = SKIP_DIRS) -> list[Path]:
    """All ``*.py`` files under ``root`` in sorted order, skipping ``skip_dirs`` and hidden folders."""
    if root.is_file():
        return [root]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending; sorting makes the order deterministic.
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d, skip_dirs))
        files.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def module_split(rel_path: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"`` for a module, from a stable hash of its relative path."""
    return "test" if zlib.crc32(rel_path.encode("utf-8")) / 2**32 < test_fraction else "train"


def summary(docstring: str) -> str:
    """First paragraph of a cleaned docstring, on one line."""
    lines = []
    for line in docstring.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """``(qualname, node)`` for every function, in source order, with ``<locals>`` like __qualname__."""
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    found = []
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _FUNCS):
                qual = prefix + child.name
                found.append((qual, child))
                stack.append((qual + ".<locals>.", child))
            elif isinstance(child, ast.ClassDef):
                stack.append((prefix + child.name + ".", child))
            else:
                stack.append((prefix, child))
    found.sort(key=lambda item: (item[1].lineno, item[1].col_offset))
    yield from found


def _extract(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str | None, str]:
    """``(code, "")`` for a documented function, or ``(None, drop reason)``."""
    doc = node.body[0]
    if len(node.body) == 1:
        return None, "body is only a docstring"
    first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    head, tail = lines[doc.lineno - 1], lines[doc.end_lineno - 1]
    if head[: doc.col_offset].strip() or tail[doc.end_col_offset :].strip() not in ("", ";"):
        return None, "docstring shares a line with code"
    if node.body[1].lineno <= doc.end_lineno:
        return None, "docstring shares a line with code"
    indent = lines[node.lineno - 1][: node.col_offset]
    kept = lines[first : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    # Remove the def's own indentation; lines not starting with it are inside multi-line strings.
    code = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in kept)
    return code.rstrip() + "\n", ""


def load_pysource(
    path: Path | None = None,
    *,
    test_fraction: float = 0.1,
    max_functions: int | None = None,
    min_lines: int = 2,
    max_lines: int = 200,
    skip_dirs: list[str] | None = None,
) -> LoadResult:
    """Documented functions mined from Python sources (default: this interpreter's stdlib).

    Args:
        path: a folder (walked recursively) or one ``.py`` file.
        test_fraction: share of modules (files) put in ``test``, by a stable hash of the path.
        max_functions: stop after this many records (in sorted file order), for quick runs.
        min_lines: drop functions whose code (without docstring) has fewer lines.
        max_lines: drop functions whose code has more lines.
        skip_dirs: folder names not to descend into (default: ``SKIP_DIRS``).
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise SourceError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if max_functions is not None and (not isinstance(max_functions, int) or max_functions < 1):
        raise SourceError(f"max_functions must be an integer >= 1, got {max_functions!r}")
    root = default_root() if path is None else path
    if not root.exists():
        raise DataError(str(root), None, None, "no such file or folder")
    base = root.parent if root.is_file() else root
    skip = SKIP_DIRS if skip_dirs is None else frozenset(skip_dirs)
    result = LoadResult(records=[])
    bad_files: list[str] = []
    for file in python_files(root, skip):
        rel = file.relative_to(base).as_posix()
        try:
            text = importlib.util.decode_source(file.read_bytes())  # honours coding cookies
            tree = ast.parse(text, filename=str(file))
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:
            result.dropped["file failed to parse"] += 1
            bad_files.append(f"{rel} ({type(e).__name__})")
            continue
        split = module_split(rel, test_fraction)
        lines = text.splitlines()
        seen: dict[str, int] = {}
        for qual, node in _functions(tree):
            docstring = ast.get_docstring(node, clean=True)
            if docstring is None:
                continue  # undocumented functions are not rows of this corpus
            name_id = qual if qual not in seen else f"{qual}#{seen[qual]}"
            seen[qual] = seen.get(qual, 0) + 1
            nl = summary(docstring)
            if not nl:
                result.dropped["empty docstring summary"] += 1
                continue
            code, reason = _extract(lines, node)
            if code is None:
                result.dropped[reason] += 1
                continue
            n_lines = code.count("\n")
            if n_lines < min_lines or n_lines > max_lines:
                result.dropped[f"code lines outside [{min_lines}, {max_lines}]"] += 1
                continue
            extras = {"path": rel, "qualname": qual, "lineno": node.lineno, "docstring": docstring}
            result.records.append(Record(f"pysource/{rel}::{name_id}", split, nl, code, "python", extras))
            if max_functions is not None and len(result.records) >= max_functions:
                result.notes.append(f"stopped after max_functions={max_functions} records")
                _note_bad_files(result, bad_files)
                return result
    _note_bad_files(result, bad_files)
    return result


def _note_bad_files(result: LoadResult, bad_files: list[str]) -> None:
    if bad_files:
        shown = ", ".join(bad_files[:5]) + (" ..." if len(bad_files) > 5 else "")
        result.notes.append(f"{len(bad_files)} files failed to parse: {shown}")
