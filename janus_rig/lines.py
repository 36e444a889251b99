"""Reading a line-oriented input file (prompts, metadata, records) the one way the project does it: every bad line
is collected and named as FILE:LINE: problem in a single error, never skipped silently and never a traceback.

    rows = read_lines("prompts.jsonl", lambda text, number, ordinal: json_object(text)["prompt"], what="prompts")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")
MAX_REPORTED_LINES = 5  # bad lines named in the error; the rest are counted


def json_object(text: str) -> dict:
    """One JSONL line as a dict; ValueError('not JSON (...)' / 'not a JSON object') otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def read_lines(path: str | Path, parse: Callable[[str, int, int], T], *, what: str,
               skip: Callable[[str], bool] = lambda text: not text.strip(), limit: int | None = None) -> list[T]:
    """parse(text, line number, ordinal of the kept line) -> item, or ValueError(problem) for a bad line.

    Lines for which `skip(text)` holds are ignored (default: blank ones); reading stops after `limit` items.
    FileNotFoundError when the file is missing; one ValueError naming every bad line (the first
    MAX_REPORTED_LINES, the rest counted), or saying the file holds no `what`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    items, bad, ordinal = [], [], 0
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if skip(text):
            continue
        try:
            items.append(parse(text, number, ordinal))
        except ValueError as err:
            bad.append(f"{path}:{number}: {err}")
        ordinal += 1
        if limit is not None and len(items) >= limit:
            break
    if bad:
        more = f"; and {len(bad) - MAX_REPORTED_LINES} more bad lines" if len(bad) > MAX_REPORTED_LINES else ""
        raise ValueError("; ".join(bad[:MAX_REPORTED_LINES]) + more)
    if not items:
        raise ValueError(f"{path} holds no {what}")
    return items
