"""Data source loaders: every public NL->code data set the project reads, behind one call.

``load_source(name, path, **options)`` returns a :class:`LoadResult` of :class:`Record` s plus the
rows it dropped (with reasons) and notes. ``SOURCES`` maps each name to its loader function,
``loader(path, *, option=...)``; a loader's keyword-only parameters are its options, and the first
line of its docstring is its one-line description (shown by ``nl2code data stats --help``).

Malformed input raises :class:`DataError` (file, line/row, field); a bad name, option or missing
PATH raises :class:`SourceError`.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import SourceError, type_name
from nl2code.data.sources.codefusion import (
    load_codefusion_bash,
    load_codefusion_cf,
    load_codefusion_python,
    load_snippets,
)
from nl2code.data.sources.conala import load_conala
from nl2code.data.sources.humaneval import load_humaneval
from nl2code.data.sources.jsonl import load_jsonl
from nl2code.data.sources.mbpp import load_mbpp
from nl2code.data.sources.mtpb import load_mtpb
from nl2code.data.sources.nl2bash import load_nl2bash
from nl2code.data.sources.pysource import load_pysource
from nl2code.data.sources.xlcost import detokenize_xlcost, load_xlcost

__all__ = [
    "SOURCES", "DataError", "LoadResult", "Record", "SourceError", "detokenize_xlcost", "describe",
    "load_source", "path_optional", "source_options",
]  # fmt: skip


# A mixture reads other sources through load_source, so it lives beside the registry.
def load_mixture(path: Path | None = None, *, parts: list = []) -> LoadResult:  # noqa: B006 (read-only default)
    """Several sources as one data set: option parts = [{source, path, options}] (no PATH).

    Records keep their own task ids (each source prefixes them with its name), splits and
    languages; a task id found in two parts is an error. Dropped rows and notes are prefixed
    with the part's source name.
    """
    if path is not None:
        raise SourceError("source 'mixture' takes no PATH: give each part's path in its 'parts' entry")
    if not parts:
        raise SourceError("source 'mixture' needs the option 'parts': a list of {source, path, options}")
    result = LoadResult(records=[])
    seen: dict[str, int] = {}
    for i, part in enumerate(parts):
        where = f"mixture option parts[{i}]"
        if not isinstance(part, dict):
            raise SourceError(f"{where}: expected a mapping {{source, path, options}}, got {type_name(part)}")
        unknown = sorted(set(part) - {"source", "path", "options"})
        if unknown:
            raise SourceError(f"{where}: unknown key {unknown[0]!r} (allowed: source, path, options)")
        name, part_path, options = part.get("source"), part.get("path"), part.get("options") or {}
        if not isinstance(name, str) or name == "mixture":
            raise SourceError(f"{where}.source: expected the name of a (non-mixture) source, got {name!r}")
        if part_path is not None and not isinstance(part_path, str):
            raise SourceError(f"{where}.path: expected a string, got {type_name(part_path)}")
        if not isinstance(options, dict):
            raise SourceError(f"{where}.options: expected a mapping, got {type_name(options)}")
        try:
            loaded = load_source(name, part_path, **options)
        except SourceError as e:
            raise SourceError(f"{where}: {e}") from None
        for rec in loaded.records:
            if rec.task_id in seen:
                raise SourceError(f"{where}: task id {rec.task_id!r} also comes from parts[{seen[rec.task_id]}]")
            seen[rec.task_id] = i
        result.records += loaded.records
        result.dropped += Counter({f"{name}: {reason}": n for reason, n in loaded.dropped.items()})
        result.notes += [f"{name}: {note}" for note in loaded.notes]
        langs = ", ".join(f"{k} {v}" for k, v in Counter(r.language for r in loaded.records).items())
        result.notes.append(f"{name}: {len(loaded.records)} records ({langs})")
    return result


SOURCES: dict[str, Callable[..., LoadResult]] = {
    "codefusion-bash": load_codefusion_bash,
    "codefusion-python": load_codefusion_python,
    "codefusion-cf": load_codefusion_cf,
    "snippets": load_snippets,
    "conala": load_conala,
    "nl2bash": load_nl2bash,
    "mbpp": load_mbpp,
    "humaneval": load_humaneval,
    "mtpb": load_mtpb,
    "xlcost": load_xlcost,
    "pysource": load_pysource,
    "jsonl": load_jsonl,
    "mixture": load_mixture,
}


def _loader(name: str) -> Callable[..., LoadResult]:
    try:
        return SOURCES[name]
    except KeyError:
        raise SourceError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


def describe(name: str) -> str:
    """One-line description of a source (first docstring line of its loader)."""
    return (inspect.getdoc(_loader(name)) or "").splitlines()[0]


def source_options(name: str) -> dict[str, Any]:
    """The options a source accepts, with their defaults."""
    params = inspect.signature(_loader(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def path_optional(name: str) -> bool:
    """Whether the source has a default PATH (HumanEval from its package, pysource = stdlib)."""
    first = next(iter(inspect.signature(_loader(name)).parameters.values()))
    return first.default is None


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def load_source(name: str, path: str | Path | None = None, **options: Any) -> LoadResult:
    """Load the data source ``name`` from ``path``.

    Args:
        name: a key of ``SOURCES``.
        path: the file or folder; optional where ``path_optional(name)``.
        **options: the source's keyword options (see ``source_options(name)``).

    Raises:
        SourceError: unknown source or option, or a missing PATH.
        DataError: malformed or missing input data.
    """
    loader = _loader(name)
    allowed = source_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(allowed) or "none"
        raise SourceError(f"source {name!r} has no option {unknown[0]!r} (options: {known})")
    for key, value in options.items():
        default = allowed[key]
        # Options come from YAML on the command line too, so check them against the default's type.
        if default is not None and value is not None and not _same_kind(value, default):
            raise SourceError(f"option {key!r} of {name!r} expects {type(default).__name__}, got {value!r}")
    if path is None and not path_optional(name):
        raise SourceError(f"source {name!r} needs a PATH")
    return loader(None if path is None else Path(path), **options)
