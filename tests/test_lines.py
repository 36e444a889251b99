"""janus_rig.lines: every bad line named as FILE:LINE in one error, the rest counted; limits; missing / empty files."""

from __future__ import annotations

import pytest

from janus_rig.lines import MAX_REPORTED_LINES, json_object, read_lines


def parse(text, number, ordinal):
    row = json_object(text)
    if "x" not in row:
        raise ValueError("no x")
    return (row["x"], number, ordinal)


def test_items_carry_line_numbers_and_ordinals_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"x": 1}\n\n{"x": 2}\n  \n{"x": 3}\n')
    assert read_lines(path, parse, what="rows") == [(1, 1, 0), (2, 3, 1), (3, 5, 2)]
    assert read_lines(path, parse, what="rows", limit=2) == [(1, 1, 0), (2, 3, 1)]


def test_every_bad_line_is_named_then_counted(tmp_path):
    path = tmp_path / "rows.jsonl"
    bad = ['{"y": 1}', "[1]", "{oops"] * 3  # 9 bad lines
    path.write_text("\n".join(['{"x": 0}', *bad]) + "\n")
    with pytest.raises(ValueError) as err:
        read_lines(path, parse, what="rows")
    message = str(err.value)
    assert f"{path}:2: no x; {path}:3: not a JSON object; {path}:4: not JSON (" in message
    assert message.count(str(path)) == MAX_REPORTED_LINES and message.endswith(f"and {9 - MAX_REPORTED_LINES} more bad lines")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="rows file .* does not exist"):
        read_lines(tmp_path / "none.jsonl", parse, what="rows")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_lines(empty, lambda t, n, o: t, what="prompts", skip=lambda t: not t.strip() or t.startswith("#"))
