"""NL2Bash: line-aligned ``all.nl`` (one description a line) and ``all.cm`` (one command a line).

Task ids are ``nl2bash/<i>`` with ``i`` the 0-based line index, which equals the ``ID`` of the same
pair in CodeFusion's Bash benchmark (that benchmark is all 12,607 pairs in file order).
"""

from __future__ import annotations

from pathlib import Path

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import read_text


def _lines(path: Path) -> list[str]:
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # final newline
    return [line.removesuffix("\r") for line in lines]


def load_nl2bash(path: Path) -> LoadResult:
    """NL2Bash all.nl / all.cm (PATH = their folder or either file): 12,607 pairs, split "all".

    Pairs with an empty description or command are dropped and counted.
    """
    if not path.exists():
        raise DataError(str(path), None, None, "no such file or folder")
    folder = path if path.is_dir() else path.parent
    nl_path, cm_path = folder / "all.nl", folder / "all.cm"
    nls, cms = _lines(nl_path), _lines(cm_path)
    if len(nls) != len(cms):
        raise DataError(
            f"{nl_path} / {cm_path}", None, None, f"line counts differ ({len(nls)} vs {len(cms)})"
        )
    result = LoadResult(records=[])
    for i, (nl, cm) in enumerate(zip(nls, cms, strict=True)):
        if not nl.strip():
            result.dropped["empty description"] += 1
        elif not cm.strip():
            result.dropped["empty command"] += 1
        else:
            result.records.append(Record(f"nl2bash/{i}", "all", nl, cm, "bash", {"line": i + 1}))
    return result
