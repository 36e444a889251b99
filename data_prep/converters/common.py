"""What every converter shares: the bad-row report, reading rows from json / jsonl / parquet, field paths, JSON lines.

    report = RowReport()
    source = RowSource("lahr.parquet", report)   # .json (a list, or an object of objects), .jsonl or .parquet
    source.fields()                              # {"caption", "got", "image", ...}: checked before any row is read
    for row in source:                           # SourceRow(file="lahr.parquet", index=17, key=None, data={...})
        get_field(row.data, "meta.caption")      # a dotted path into nested objects, or MISSING

Bad rows never stop a conversion and are never dropped silently: each is reported by id with a reason and a detail,
counted, and written to a bad-rows file as {id, source, reason, detail} (the same schema `janus-rig sft` writes).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)

BAD_ROWS_FILE = "bad_rows.jsonl"
INPUT_SUFFIXES = (".json", ".jsonl", ".parquet")
PARQUET_BATCH_ROWS = 1024
LOGGED_BAD_ROWS = 10  # the first few bad rows also go to the log; all of them go to the file
MISSING = object()  # get_field's answer for a path that is not there


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


class RowError(ValueError):
    """A row that cannot be converted; `reason` is a short key (missing_field, box_inverted, ...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    def __reduce__(self):  # picklable across worker processes despite the 2-argument __init__
        return (type(self), (self.reason, self.detail))


# --- reading -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceRow:
    file: str  # the input file's name
    index: int  # 0-based position of the row in the file (jsonl: line number - 1)
    key: str | None  # the object key when the file is a JSON object of objects
    data: dict


class RowSource:
    """The rows of one input file. jsonl lines that are not a JSON object are reported (`not_json`) and skipped."""

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
            import pyarrow.parquet as pq

            return set(pq.ParquetFile(self.path).schema_arrow.names)
        entries = self._jsonl(report=False) if self.path.suffix == ".jsonl" else self._entries()
        for _, _, row in entries:
            if isinstance(row, dict):
                return set(row)
        return set()

    def __iter__(self) -> Iterator[SourceRow]:
        for index, key, row in self._entries():
            if isinstance(row, dict):
                yield SourceRow(self.name, index, key, row)
            else:
                self.report.reject(key or default_id(self.name, index), self.name, "not_json",
                                   f"row {index} is a {type(row).__name__}, not an object")

    def _entries(self) -> Iterator[tuple[int, str | None, Any]]:
        if self.path.suffix == ".parquet":
            return self._parquet()
        if self.path.suffix == ".jsonl":
            return self._jsonl()
        return ((i, key, row) for i, (key, row) in enumerate(self._load_json()))

    def _parquet(self):
        import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                yield index, None, row
                index += 1

    def _jsonl(self, report: bool = True):
        with open(self.path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield line_no - 1, None, json.loads(line)
                except ValueError as err:
                    if report:
                        self.report.reject(default_id(self.name, line_no - 1), self.name, "not_json",
                                           f"line {line_no}: {err}")

    def _load_json(self):
        if self._json is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"input {self.path} is not valid JSON: {err}") from None
            if isinstance(data, list):
                self._json = [(None, row) for row in data]
            elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                self._json = [(str(k), row) for k, row in data.items()]  # {id: row, ...}
            else:
                raise ValueError(f"input {self.path}: expected a JSON list of objects or an object of objects "
                                 f"(id -> row), got a {type(data).__name__} of other things")
        yield from self._json


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
