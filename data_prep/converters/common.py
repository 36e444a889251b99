"""What every converter shares: the bad-row report, reading rows from json / jsonl / parquet, field paths, JSON lines.

    report = RowReport()
    source = RowSource("lahr.parquet", report)   # .json (a list, or an object of objects), .jsonl or .parquet
    source.fields()                              # {"caption", "got", "image", ...}: checked before any row is read
    for row in source:                           # SourceRow(file="lahr.parquet", index=17, key=None, data={...})
        get_field(row.data, "meta.caption")      # a dotted path into nested objects, or MISSING

Bad rows never stop a conversion and are never dropped silently: each is reported by id with a reason and a detail,
counted, and written to a bad-rows file as {id, source, reason, detail} (the same schema `janus-rig sft` writes).
That holds for rows the JSON reader cannot read too: a jsonl line that is not UTF-8 (`not_utf8`) or not JSON
(`not_json`), and a row nested deeper than Python's JSON reader goes (`nested_too_deep`, in .json files as well).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow.parquet as pq

from janus_rig.chain import CHAIN_TOKENS, OBJ_END, OBJ_START

log = logging.getLogger(__name__)

BAD_ROWS_FILE = "bad_rows.jsonl"
INPUT_SUFFIXES = (".json", ".jsonl", ".parquet")
PARQUET_BATCH_ROWS = 1024
LOGGED_BAD_ROWS = 10  # the first few bad rows also go to the log; all of them go to the file
EXIT_SOME_BAD = 3  # a command's exit status when it kept rows but left bad ones out (2: an input error, nothing run)
MISSING = object()  # get_field's answer for a path that is not there
# Qwen2-VL writes grounded names with its own tokens around the same box span; GoT chains are read with them as spans.
QWEN_ALIASES = {"<|object_ref_start|>": OBJ_START, "<|object_ref_end|>": OBJ_END}
SPAN_TOKENS = (*CHAIN_TOKENS, *QWEN_ALIASES)
TOO_DEEP = object()  # a .json entry nested deeper than the JSON reader goes (reported as a bad row)
TOO_DEEP_DETAIL = "is nested too deeply for the JSON reader (about a thousand levels at most)"
_JSON_WS = re.compile(r"[ \t\n\r]*")
# What matters for skipping a JSON value unread: strings (which may hold brackets) and brackets.
_JSON_SKIP = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


# --- bad rows ----------------------------------------------------------------------------------------------------
@dataclass
class BadRow:
    id: str
    source: str  # the input file's name
    reason: str
    detail: str


@dataclass
class RowReport:
    bad: list[BadRow] = field(default_factory=list)
    kept: Counter = field(default_factory=Counter)  # output name -> rows kept

    def reject(self, row_id: str, source: str, reason: str, detail: str) -> None:
        self.bad.append(BadRow(row_id, source, reason, detail))

    def counts(self) -> dict[str, int]:
        return dict(Counter(b.reason for b in self.bad))

    def write(self, path: str | Path) -> None:
        write_jsonl(path, (asdict(row) for row in self.bad))

    def summary(self) -> dict:
        return {"kept": dict(self.kept), "bad": len(self.bad), "bad_by_reason": self.counts()}

    def log(self, path: str | Path, limit: int = LOGGED_BAD_ROWS) -> None:
        """Warn about the first `limit` bad rows and the count by reason; `path` is where all of them are."""
        for row in self.bad[:limit]:
            log.warning("bad row %s in %s: %s: %s", row.id, row.source, row.reason, row.detail)
        if self.bad:
            log.warning("%d bad rows left out %s; all listed in %s", len(self.bad), self.counts(), path)


def exit_status(kept: int, bad: int) -> int:
    """A convert command's exit status: 0 when every row was converted, 1 when none was, EXIT_SOME_BAD when some
    rows were bad (the good ones are written), so that a script sees a partial conversion."""
    if kept == 0:
        return 1
    return EXIT_SOME_BAD if bad else 0


class RowError(ValueError):
    """A row that cannot be converted; `reason` is a short key (missing_field, box_inverted, ...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    def __reduce__(self):  # picklable across worker processes despite the 2-argument __init__
        return (type(self), (self.reason, self.detail))


def check_prompt(prompt: str, name: str) -> None:
    """RowError when a prompt holds a span token: prompts reach the tokenizer as they are, where these are the
    chain's control tokens, so a prompt carrying them would write part of the chain for the model."""
    for token in SPAN_TOKENS:
        if token in prompt:
            raise RowError("chain_token_in_prompt", f"{name} holds the chain token {token}: a prompt must not "
                                                    "carry the chain's control tokens")


# --- reading -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceRow:
    file: str  # the input file's name
    index: int  # 0-based position of the row in the file (jsonl: line number - 1)
    key: str | None  # the object key when the file is a JSON object of objects
    data: dict


class RowSource:
    """The rows of one input file. Rows that are not a readable JSON object are reported and skipped: `not_json`,
    `not_utf8` (a jsonl line), `nested_too_deep`. A .json file that is not JSON as a whole fails (ValueError)."""

    def __init__(self, path: str | Path, report: RowReport):
        self.path, self.report = Path(path), report
        if not self.path.is_file():
            raise FileNotFoundError(f"input {self.path} not found")
        if self.path.suffix not in INPUT_SUFFIXES:
            raise ValueError(f"input {self.path}: unsupported file type {self.path.suffix!r}; "
                             f"use one of {', '.join(INPUT_SUFFIXES)}")
        self._json: list[tuple[str | None, Any]] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def fields(self) -> set[str]:
        """Top-level field names: the parquet schema, or the keys of the first JSON row."""
        if self.path.suffix == ".parquet":
            return set(pq.ParquetFile(self.path).schema_arrow.names)
        entries = self._jsonl(report=False) if self.path.suffix == ".jsonl" else self._entries()
        for _, _, row in entries:
            if isinstance(row, dict):
                return set(row)
        return set()

    def __iter__(self) -> Iterator[SourceRow]:
        for index, key, row in self._entries():
            row_id = key or default_id(self.name, index)
            if row is TOO_DEEP:
                self.report.reject(row_id, self.name, "nested_too_deep", f"row {index} {TOO_DEEP_DETAIL}")
            elif isinstance(row, dict):
                yield SourceRow(self.name, index, key, row)
            else:
                self.report.reject(row_id, self.name, "not_json",
                                   f"row {index} is a {type(row).__name__}, not an object")

    def _entries(self) -> Iterator[tuple[int, str | None, Any]]:
        if self.path.suffix == ".parquet":
            return self._parquet()
        if self.path.suffix == ".jsonl":
            return self._jsonl()
        return ((i, key, row) for i, (key, row) in enumerate(self._load_json()))

    def _parquet(self):
        index = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                yield index, None, row
                index += 1

    def _jsonl(self, report: bool = True):
        """Each line decoded on its own (bytes in), so that one bad line is one bad row, never a failed file."""
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                row_id = default_id(self.name, line_no - 1)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    if report:
                        self.report.reject(row_id, self.name, "not_utf8", f"line {line_no}: {err}")
                    continue
                if not line.strip():
                    continue
                try:
                    yield line_no - 1, None, json.loads(line)
                except ValueError as err:
                    if report:
                        self.report.reject(row_id, self.name, "not_json", f"line {line_no}: {err}")
                except RecursionError:  # Python's JSON reader recurses once per level of nesting
                    if report:
                        self.report.reject(row_id, self.name, "nested_too_deep", f"line {line_no} {TOO_DEEP_DETAIL}")

    def _load_json(self):
        if self._json is None:
            try:
                data = _load_entries(self.path.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"input {self.path} is not valid JSON: {err}") from None
            if isinstance(data, list):
                self._json = [(None, row) for row in data]
            elif isinstance(data, dict) and all(isinstance(v, dict) or v is TOO_DEEP for v in data.values()):
                self._json = [(str(k), row) for k, row in data.items()]  # {id: row, ...}
            else:
                raise ValueError(f"input {self.path}: expected a JSON list of objects or an object of objects "
                                 f"(id -> row), got a {type(data).__name__} of other things")
        yield from self._json


def _load_entries(text: str) -> Any:
    """json.loads, except that each entry of a top-level list or object is read on its own, and one nested too
    deeply for Python's JSON reader becomes TOO_DEEP (a bad row) instead of failing the whole file."""
    decoder = json.JSONDecoder()
    pos = _JSON_WS.match(text).end()
    if not text.startswith(("[", "{"), pos):
        return json.loads(text)
    closer = "]" if text[pos] == "[" else "}"
    entries: dict | list = {} if closer == "}" else []
    pos = _JSON_WS.match(text, pos + 1).end()
    if text.startswith(closer, pos):
        pos += 1
    else:
        while True:
            if closer == "}":
                key, pos = decoder.raw_decode(text, pos)
                if not isinstance(key, str):
                    raise json.JSONDecodeError("expected a string as object key", text, pos)
                pos = _JSON_WS.match(text, pos).end()
                if not text.startswith(":", pos):
                    raise json.JSONDecodeError("expected ':'", text, pos)
                pos = _JSON_WS.match(text, pos + 1).end()
            try:
                value, pos = decoder.raw_decode(text, pos)
            except RecursionError:
                value, pos = TOO_DEEP, _skip_json_value(text, pos)
            if closer == "}":
                entries[key] = value  # a repeated key keeps its last value, as json.loads does
            else:
                entries.append(value)
            pos = _JSON_WS.match(text, pos).end()
            if text.startswith(closer, pos):
                pos += 1
                break
            if not text.startswith(",", pos):
                raise json.JSONDecodeError(f"expected ',' or '{closer}'", text, pos)
            pos = _JSON_WS.match(text, pos + 1).end()
    if _JSON_WS.match(text, pos).end() != len(text):
        raise json.JSONDecodeError("extra data", text, pos)
    return entries


def _skip_json_value(text: str, pos: int) -> int:
    """The end of the array / object starting at `pos`, found by counting brackets outside strings (linear)."""
    depth = 0
    for match in _JSON_SKIP.finditer(text, pos):
        token = match.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
        if depth == 0:
            return match.end()
    raise json.JSONDecodeError("unterminated array or object", text, pos)


def default_id(file_name: str, index: int) -> str:
    """The id of a row that has none: the file's stem and the row's position, e.g. "lahr-000017"."""
    return f"{Path(file_name).stem}-{index:06d}"


def get_field(data: dict, path: str) -> Any:
    """data["a"]["b"] for path "a.b"; MISSING when any step is absent (or not an object)."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def check_fields_present(source: RowSource, mapping: dict[str, str], what: str = "field") -> None:
    """Fail before any row is read when a mapped field's top-level name is not in the input at all."""
    present = source.fields()
    if not present:
        return  # an empty input has nothing to check; it converts to nothing
    for target, path in mapping.items():
        if path.split(".")[0] not in present:
            raise ValueError(
                f"input {source.path}: {what} {path!r} (mapped to {target}) is not in its rows; fields present: "
                f"{', '.join(sorted(present))}. Map it with --fields {target}=<field>"
            )


# --- writing -----------------------------------------------------------------------------------------------------
def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON lines; returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
