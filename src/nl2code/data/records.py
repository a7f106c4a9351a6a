"""The one record type every data source yields, and the error bad input raises."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class DataError(ValueError):
    """Malformed input. The message is one line naming the file, the line/row and the field."""

    def __init__(self, path: str, where: str | int | None, field_name: str | None, problem: str):
        loc = str(path)
        if where is not None:
            loc += f":{where}" if isinstance(where, int) else f" ({where})"
        if field_name:
            loc += f" field '{field_name}'"
        super().__init__(f"{loc}: {problem}")
        self.path, self.where, self.field_name, self.problem = path, where, field_name, problem


@dataclass
class Record:
    """One NL->code example.

    Attributes:
        task_id: stable id within the source (e.g. ``"codefusion-bash/train/17"``).
        split: ``"train"``, ``"test"``, ``"validation"``, ``"prompt"`` or ``"all"``.
        nl: the natural-language description ("" for code-only sources such as snippets).
        code: the target program text, exactly as in the file.
        language: ``"python"``, ``"bash"`` or ``"cf"``.
        extras: per-source fields (tests, tables, labels, prompts ...).
    """

    task_id: str
    split: str
    nl: str
    code: str
    language: str
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadResult:
    """What a source loader returns: the records, plus every row it did not keep and why."""

    records: list[Record]
    dropped: Counter = field(default_factory=Counter)  # reason -> count; never drop silently
    notes: list[str] = field(default_factory=list)  # e.g. "23 test rows had null NL; filled from intent"

    def split_counts(self) -> dict[str, int]:
        counts = Counter(r.split for r in self.records)
        return dict(sorted(counts.items()))

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]
