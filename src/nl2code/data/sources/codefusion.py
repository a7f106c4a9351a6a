"""CodeFusion's benchmarks (Bash, Python, Excel CF rules) and its pre-training snippet files.

Benchmark file: ``{"train": [...], "test": [...]}``, rows ``{"ID", "NL Utterance", "Code"}``; CF rows
also carry ``Data`` (table rows, first row = header) and ``Labels`` (per-row 0/1), either as JSON
lists or as Python-literal strings (parsed with ``ast.literal_eval``, never ``eval``).

``nl`` and ``code`` are kept exactly as in the file (the Bash rows end with ``"\\n"``). A null
``NL Utterance`` (only in the Python file) is filled, kept as ``""`` or dropped, see
``load_codefusion_python``; such rows get ``extras["nl_source"]`` ("conala-intent" or "missing").
Task ids are ``codefusion-<lang>/<ID>``; the Python benchmark repeats Stack Overflow question ids,
so a repeated ID becomes ``<ID>-k`` (k-th occurrence in file order). The raw ID is ``extras["id"]``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Literal

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import SourceError, get_field, read_json, read_text, unique_ids

FILES = {"bash": "BashBenchmarks.json", "python": "PythonBenchmarks.json", "cf": "CFRuleBenchmarks.json"}
SPLITS = ("train", "test")
NullNL = Literal["fill", "keep", "drop"]


def _resolve_benchmark(path: Path, language: str) -> Path:
    """Accept the JSON file itself, the ``benchmarks`` folder, or the CodeFusion data root."""
    if path.is_dir():
        for candidate in (path / FILES[language], path / "benchmarks" / FILES[language]):
            if candidate.is_file():
                return candidate
        raise DataError(str(path), None, None, f"no {FILES[language]} in this folder or its benchmarks/")
    return path


def _literal(value: Any, path: Path, where: str, name: str) -> Any:
    """CF ``Data``/``Labels`` may be a Python literal in a string (single quotes, None): parse safely."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise DataError(str(path), where, name, f"not a Python literal ({type(e).__name__})") from None


def _cf_extras(row: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    table = _literal(get_field(row, "Data", (list, str), path, where), path, where, "Data")
    labels = _literal(get_field(row, "Labels", (list, str), path, where), path, where, "Labels")
    if not isinstance(table, list) or not all(isinstance(r, list | tuple) for r in table):
        raise DataError(str(path), where, "Data", "expected a list of rows (lists)")
    if not isinstance(labels, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in labels
    ):
        raise DataError(str(path), where, "Labels", "expected a list of numbers")
    return {"table": [list(r) for r in table], "labels": labels}


def _find_conala(bench: Path, conala_path: str | Path | None) -> Path | None:
    """Folder holding ``conala-{train,test}.json``: the option, else a ``conala`` folder near the file.

    The default search covers the shared-data layout ``<data>/codefusion/benchmarks/X.json`` with
    ``<data>/conala/``: it looks in the file's folder, its parent and its grandparent.
    """
    if conala_path is not None:
        p = Path(conala_path)
        folder = p.parent if p.is_file() else p
        if not (folder / "conala-train.json").is_file() and not (folder / "conala-test.json").is_file():
            raise DataError(str(p), None, None, "no conala-train.json or conala-test.json here")
        return folder
    for up in (bench.parent, bench.parent.parent, bench.parent.parent.parent):
        folder = up / "conala"
        if (folder / "conala-train.json").is_file() or (folder / "conala-test.json").is_file():
            return folder
    return None


def _conala_intents(folder: Path, split: str) -> list[tuple[Any, str, str]] | None:
    """CoNaLa rows of one split as ``(question_id, snippet, intent)``, or None if the file is absent."""
    from nl2code.data.sources.conala import read_conala_rows

    f = folder / f"conala-{split}.json"
    if not f.is_file():
        return None
    return [(r["question_id"], r["snippet"], r["intent"]) for r in read_conala_rows(f)]


def _fill_nl(rows: list[dict[str, Any]], intents: list[tuple[Any, str, str]]) -> dict[int, str]:
    """Map row index -> CoNaLa intent for rows whose NL is null.

    CodeFusion-Python is CoNaLa curated in the same order, so the row at the same index is used when
    its question id and snippet agree; otherwise a unique (question id, snippet) match is used.
    """
    by_key: dict[tuple[Any, str], set[str]] = {}
    for qid, snippet, intent in intents:
        by_key.setdefault((qid, snippet), set()).add(intent)
    filled = {}
    for i, row in enumerate(rows):
        if row["NL Utterance"] is not None:
            continue
        if i < len(intents) and intents[i][:2] == (row["ID"], row["Code"]):
            filled[i] = intents[i][2]
        elif len(by_key.get((row["ID"], row["Code"]), ())) == 1:
            filled[i] = next(iter(by_key[(row["ID"], row["Code"])]))
    return filled


def load_benchmark(
    path: Path,
    language: str,
    *,
    null_nl: NullNL = "fill",
    conala_path: str | Path | None = None,
) -> LoadResult:
    """Load one CodeFusion benchmark file; see the module docstring and ``load_codefusion_python``."""
    if null_nl not in ("fill", "keep", "drop"):
        raise SourceError(f"null_nl must be 'fill', 'keep' or 'drop', got {null_nl!r}")
    name = f"codefusion-{language}"
    path = _resolve_benchmark(path, language)
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise DataError(str(path), None, None, "expected an object with 'train' and 'test' lists")
    result = LoadResult(records=[])
    conala = _find_conala(path, conala_path) if language == "python" and null_nl == "fill" else None

    rows_by_split: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        rows = get_field(doc, split, list, path, None)
        for i, row in enumerate(rows):
            where = f"{split} row {i}"
            if not isinstance(row, dict):
                raise DataError(str(path), where, None, "expected an object")
            get_field(row, "ID", (int, str), path, where)
            get_field(row, "NL Utterance", str, path, where, nullable=True)
            get_field(row, "Code", str, path, where)
        rows_by_split[split] = rows
    all_ids = [row["ID"] for split in SPLITS for row in rows_by_split[split]]
    task_ids = iter(unique_ids(name, all_ids))

    for split in SPLITS:
        rows = rows_by_split[split]
        n_null = sum(row["NL Utterance"] is None for row in rows)
        filled: dict[int, str] = {}
        if n_null and null_nl == "fill":
            intents = _conala_intents(conala, split) if conala is not None else None
            if intents is None:
                result.notes.append(
                    f"{split}: {n_null} rows have null NL Utterance; no CoNaLa file found to fill them "
                    "from (option conala_path), kept as empty NL"
                )
            else:
                filled = _fill_nl(rows, intents)
                msg = f"{split}: {n_null} rows have null NL Utterance; {len(filled)} filled from CoNaLa"
                if len(filled) < n_null:
                    msg += f", {n_null - len(filled)} unmatched kept as empty NL"
                result.notes.append(msg)
        elif n_null:
            verb = "dropped" if null_nl == "drop" else "kept as empty NL"
            result.notes.append(f"{split}: {n_null} rows have null NL Utterance; {verb}")
        for i, row in enumerate(rows):
            task_id = next(task_ids)
            where = f"{split} row {i}"
            extras: dict[str, Any] = {"id": row["ID"]}
            nl = row["NL Utterance"]
            if nl is None:
                if null_nl == "drop":
                    result.dropped[f"{split}: null NL Utterance"] += 1
                    continue
                nl = filled.get(i, "")
                extras["nl_source"] = "conala-intent" if i in filled else "missing"
            if language == "cf":
                extras.update(_cf_extras(row, path, where))
            result.records.append(Record(task_id, split, nl, row["Code"], language, extras))
    if language == "cf":
        _note_cf_quirks(result)
    return result


def _note_cf_quirks(result: LoadResult) -> None:
    """Record the known CF-benchmark quirks (placeholder test labels, header-only tables)."""
    for split in SPLITS:
        recs = result.split(split)
        header_only = sum(len(r.extras["table"]) <= 1 for r in recs)
        # Labels normally has len(Data) entries (the header row included); [0] is a placeholder.
        placeholder = sum(r.extras["labels"] == [0] and len(r.extras["table"]) != 1 for r in recs)
        other = sum(
            len(r.extras["labels"]) != len(r.extras["table"]) and r.extras["labels"] != [0] for r in recs
        )
        if header_only:
            result.notes.append(f"{split}: {header_only} tables are header-only")
        if placeholder:
            result.notes.append(f"{split}: {placeholder} rows have the placeholder Labels [0]")
        if other:
            result.notes.append(f"{split}: {other} rows have len(Labels) != len(Data)")


def load_codefusion_bash(path: Path) -> LoadResult:
    """CodeFusion Bash benchmark (BashBenchmarks.json): NL2Bash pairs, train 10,085 / test 2,522."""
    return load_benchmark(path, "bash", null_nl="keep")


def load_codefusion_python(
    path: Path, *, null_nl: NullNL = "fill", conala_path: str | Path | None = None
) -> LoadResult:
    """CodeFusion Python benchmark (PythonBenchmarks.json): CoNaLa curated, train 2,379 / test 500.

    Args:
        path: the JSON file (or its folder).
        null_nl: rows whose ``NL Utterance`` is null: ``"fill"`` from CoNaLa's ``intent`` (default),
            ``"keep"`` with nl ``""``, or ``"drop"`` (counted in ``dropped``).
        conala_path: folder (or one file) with ``conala-{train,test}.json``; by default a ``conala``
            folder beside the file, its parent or grandparent (``<data>/conala``).
    """
    return load_benchmark(path, "python", null_nl=null_nl, conala_path=conala_path)


def load_codefusion_cf(path: Path) -> LoadResult:
    """CodeFusion Excel conditional-formatting rules (CFRuleBenchmarks.json): train 712 / test 178."""
    return load_benchmark(path, "cf", null_nl="keep")


_SNIPPET_LANGS = (("conditionalformatting", "cf"), ("bash", "bash"), ("python", "python"), ("cf", "cf"))


def load_snippets(path: Path, *, language: str | None = None, dedupe: bool = False) -> LoadResult:
    """CodeFusion pre-training snippets: one code snippet a line, split "all".

    Args:
        path: e.g. ``BashSnippets.txt``.
        language: ``"bash"``, ``"python"`` or ``"cf"``; by default inferred from the file name
            (Bash / ConditionalFormatting / Python).
        dedupe: drop repeated lines after the first (counted in ``dropped``).

    Blank lines are dropped and counted. Task ids are ``snippets-<lang>/<line number>``.
    """
    if language is None:
        lowered = path.name.lower()
        language = next((lang for key, lang in _SNIPPET_LANGS if key in lowered), None)
        if language is None:
            raise SourceError(f"cannot infer the language from {path.name!r}; pass the option language=")
    if language not in ("bash", "python", "cf"):
        raise SourceError(f"language must be 'bash', 'python' or 'cf', got {language!r}")
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    result = LoadResult(records=[])
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            result.dropped["empty line"] += 1
            continue
        if dedupe:
            if line in seen:
                result.dropped["duplicate line"] += 1
                continue
            seen.add(line)
        result.records.append(Record(f"snippets-{language}/{lineno}", "all", "", line, language))
    return result
