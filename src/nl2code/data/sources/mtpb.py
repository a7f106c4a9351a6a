"""MTPB, CodeGen's multi-turn programming benchmark (``mtpb.jsonl``, one problem a line).

A problem is ``{"id", "name", "description", "category", "prompts", "inputs", "outputs",
"max_gen_length"}``: ``prompts`` are turn templates with ``{placeholders}`` filled per test case
by ``prompt.format(**inputs[t])``; test case ``t`` pairs ``inputs[t]`` with ``outputs[t]`` (5 per
problem in the published file).

As in CodeGen's ``mtpb_sample.py``, which pairs them with ``zip(inputs, outputs)``, a problem whose
lists differ in length keeps ``min(len(inputs), len(outputs))`` test cases and the extra entries are
ignored (the published file has a problem with more outputs than inputs); the load notes, and a
``UserWarning``, name each such problem. A problem with no test case is an error.

There is no reference program: ``nl`` is the description and ``code`` is ``""``; everything an
evaluator needs is in ``extras`` (name, category, prompts, inputs, outputs, max_gen_length).
``max_gen_length`` may be absent; it then defaults to 256, as in CodeGen's sampling script.
Task ids are ``mtpb/<id>``; split "test".
"""

from __future__ import annotations

import string
import warnings
from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import get_field, get_str_list, iter_jsonl, type_name

N_CASES = 5  # test cases per problem in the published file
DEFAULT_MAX_GEN_LENGTH = 256


def placeholders(template: str) -> set[str]:
    """Names used by ``{name}`` fields of a format template (``{a.b}``/``{a[0]}`` count as ``a``).

    Raises:
        ValueError: unbalanced braces or a positional ``{}`` / ``{0}`` field.
    """
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        base = field.split(".", 1)[0].split("[", 1)[0]
        if not base.isidentifier():
            raise ValueError(f"positional or invalid field {{{field}}}")
        names.add(base)
    return names


def _check_problem(row: dict[str, Any], path: Path, line: int, notes: list[str]) -> dict[str, Any]:
    """Validate one problem and return its fields (``inputs``/``outputs`` cut to their paired length;
    a note for ``notes`` when they differ)."""
    pid = get_field(row, "id", (int, str), path, line)
    if isinstance(pid, str) and not pid.isdigit():
        raise DataError(str(path), line, "id", f"expected an integer id, got {pid!r}")
    out: dict[str, Any] = {"id": int(pid)}
    for key in ("name", "description", "category"):
        out[key] = get_field(row, key, str, path, line)
    prompts = get_str_list(row, "prompts", path, line)
    if not prompts:
        raise DataError(str(path), line, "prompts", "empty")
    inputs = get_field(row, "inputs", list, path, line)
    outputs = get_field(row, "outputs", list, path, line)
    for key, value in (("inputs", inputs), ("outputs", outputs)):
        if not value:
            raise DataError(str(path), line, key, "empty: no test case")
    n_cases = min(len(inputs), len(outputs))
    if len(inputs) != len(outputs):
        notes.append(
            f"mtpb/{out['id']} ({out['name']!r}, line {line}): {len(inputs)} inputs and {len(outputs)} outputs; "
            f"paired as CodeGen's sampler does (zip): {n_cases} test cases, the extra "
            f"{'outputs' if len(outputs) > n_cases else 'inputs'} ignored"
        )
        inputs, outputs = inputs[:n_cases], outputs[:n_cases]
    for t, case in enumerate(inputs):
        if not isinstance(case, dict):
            raise DataError(str(path), line, f"inputs[{t}]", f"expected object, got {type_name(case)}")
    for i, template in enumerate(prompts):
        try:
            needed = placeholders(template)
        except ValueError as e:
            raise DataError(str(path), line, f"prompts[{i}]", f"bad template: {e}") from None
        for t, case in enumerate(inputs):
            missing = sorted(needed - case.keys())
            if missing:
                raise DataError(str(path), line, f"prompts[{i}]", f"placeholder {{{missing[0]}}} not in inputs[{t}]")
            try:
                template.format(**case)
            except (KeyError, IndexError, AttributeError, ValueError, TypeError) as e:
                raise DataError(str(path), line, f"prompts[{i}]", f"cannot fill with inputs[{t}]: {e!r}") from None
    max_gen = DEFAULT_MAX_GEN_LENGTH
    if "max_gen_length" in row:
        max_gen = get_field(row, "max_gen_length", int, path, line)
        if max_gen < 1:
            raise DataError(str(path), line, "max_gen_length", f"must be >= 1, got {max_gen}")
    out.update(prompts=prompts, inputs=inputs, outputs=outputs, max_gen_length=max_gen)
    return out


def load_mtpb(path: Path) -> LoadResult:
    """MTPB jsonl (CodeGen multi-turn benchmark; 115 problems x 5 cases), split "test"; notes name the
    problems whose inputs and outputs differ in length."""
    result = LoadResult(records=[])
    seen: dict[int, int] = {}
    for line, row in iter_jsonl(path):
        p = _check_problem(row, path, line, result.notes)
        if p["id"] in seen:
            raise DataError(str(path), line, "id", f"{p['id']} already used on line {seen[p['id']]}")
        seen[p["id"]] = line
        extras = {k: v for k, v in p.items() if k != "description"}
        result.records.append(Record(f"mtpb/{p['id']}", "test", p["description"], "", "python", extras))
    for note in result.notes:
        warnings.warn(f"{path}: {note}", UserWarning, stacklevel=3)
    return result
