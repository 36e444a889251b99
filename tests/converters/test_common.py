"""Reading rows: a row the JSON reader cannot read is one bad row, never a failed file (issue 28)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep.converters.common import TOO_DEEP, RowReport, RowSource, _load_entries, exit_status

DEEP = "[" * 50_000 + "]" * 50_000  # far past the ~1000 levels Python's JSON reader recurses to
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


def read(path):
    report = RowReport()
    rows = [(row.index, row.key, row.data) for row in RowSource(path, report)]
    return rows, [(b.id, b.reason, b.detail) for b in report.bad]


def test_jsonl_bad_lines_are_bad_rows_and_the_rest_is_read(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join([
        b'{"n": 0}',
        b'{"n": 1, "text": "caf\xe9"}',  # latin-1, not UTF-8
        b'{"n": 2, "deep": ' + DEEP.encode() + b"}",
        b"[" + DEEP_OBJECT.encode() + b"]",
        b"{not json",
        b"",
        b'{"n": 6, "text": "caf\xc3\xa9"}',
    ]) + b"\n")
    rows, bad = read(path)
    assert rows == [(0, None, {"n": 0}), (6, None, {"n": 6, "text": "café"})]
    assert [(row_id, reason) for row_id, reason, _ in bad] == [
        ("rows-000001", "not_utf8"), ("rows-000002", "nested_too_deep"), ("rows-000003", "nested_too_deep"),
        ("rows-000004", "not_json"),
    ]
    assert bad[0][2].startswith("line 2: 'utf-8' codec can't decode") and bad[1][2].startswith("line 3 is nested")


@pytest.mark.parametrize("layout", ["list", "object"])
def test_json_entry_nested_too_deeply_is_a_bad_row(tmp_path, layout):
    entries = [('{"n": 0, "s": "a ] } [ \\" {"}', "k0"), ('{"n": 1, "deep": ' + DEEP + "}", "k1"), ('{"n": 2}', "k2")]
    if layout == "list":
        text = "[\n" + ",\n".join(e for e, _ in entries) + "\n]"
    else:
        text = "{" + ", ".join(f'"{k}": {e}' for e, k in entries) + "}"
    path = tmp_path / "rows.json"
    path.write_text(text)
    rows, bad = read(path)
    keys = (None, None) if layout == "list" else ("k0", "k2")
    assert rows == [(0, keys[0], {"n": 0, "s": 'a ] } [ " {'}), (2, keys[1], {"n": 2})]
    assert [(row_id, reason) for row_id, reason, _ in bad] == [
        ("rows-000001" if layout == "list" else "k1", "nested_too_deep")]


@pytest.mark.parametrize("text, message", [
    ("[{}, {}", "Expecting ',' delimiter|expected ','"),
    ('[{"a": 1} {"b": 2}]', "expected ','"),
    ("[{}] x", "extra data"),
    ('{"a": {}, "b": 3}', "expected a JSON list of objects or an object of objects"),
    ("[" + DEEP[:-1], "unterminated"),
    ("3", "expected a JSON list of objects"),
])
def test_a_json_file_that_is_not_json_still_fails_as_a_whole(tmp_path, text, message):
    path = tmp_path / "rows.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read(path)


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_documents, st.sampled_from([None, 0, 2]), st.sampled_from(["", " ", "\n\t "]))
def test_load_entries_equals_json_loads(document, indent, pad):
    """Entry by entry reading gives json.loads' answer on every JSON document (repeated keys included)."""
    text = pad + json.dumps(document, indent=indent) + pad
    assert _load_entries(text) == json.loads(text)
    repeated = '{"a": {"x": 1}, "b": {}, "a": {"y": 2}}'
    assert _load_entries(repeated) == json.loads(repeated)


def test_load_entries_marks_only_the_deep_entry():
    assert _load_entries("[1, " + DEEP + ', {"a": [2]}]') == [1, TOO_DEEP, {"a": [2]}]


def test_exit_status_says_whether_rows_were_bad():
    assert (exit_status(kept=5, bad=0), exit_status(kept=5, bad=2), exit_status(kept=0, bad=2)) == (0, 3, 1)
