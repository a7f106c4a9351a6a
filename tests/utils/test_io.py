"""Atomic writes and JSON Lines."""

from __future__ import annotations

import os

import pytest

from nl2code.utils.io import atomic_path, atomic_write, read_jsonl, write_json, write_jsonl


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "f.txt"
    atomic_write(path, "one\n")
    atomic_write(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    assert os.listdir(path.parent) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["f.txt"]


def test_jsonl_and_json_round_trip(tmp_path):
    rows = [{"a": 1, "s": "é"}, {"b": [1, 2]}]
    write_jsonl(tmp_path / "r.jsonl", rows)
    assert read_jsonl(tmp_path / "r.jsonl") == rows
    assert "é" in (tmp_path / "r.jsonl").read_text(encoding="utf-8")  # non-ASCII kept
    write_json(tmp_path / "o.json", {"p": tmp_path})
    assert str(tmp_path) in (tmp_path / "o.json").read_text()
