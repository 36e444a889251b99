"""The one summary file every evaluation folder carries, so `janus-rig eval report` can tabulate any set of runs.

    <out>/summary.json = {
      "kind": "geneval" | "t2i-compbench" | "sg-iou" | "judge" | "judge-versus",
      "model": "runs/quickstart/grpo", "created": "2026-11-23T14:40:00+00:00", "command": "janus-rig eval ...",
      "samples": 64,                                   # images generated / scored
      "metrics": {"overall": 0.41, "position": 0.25},  # flat name -> number
      "per_tag": {"position": {"accuracy": 0.25, "correct": 8, "total": 32}},   # optional
      "thumbnails": ["00000/samples/0000.png", ...],   # up to 8 image paths relative to <out>
      "reflect_rounds": 0                              # rounds of reflection used while generating
    }
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from pathlib import Path

SUMMARY_FILE = "summary.json"
KINDS = ("geneval", "t2i-compbench", "sg-iou", "judge", "judge-versus")
MAX_THUMBNAILS = 8


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_summary(out_dir: str | Path, *, kind: str, model: str, metrics: dict, samples: int,
                  per_tag: dict | None = None, thumbnails: list | None = None, reflect_rounds: int = 0,
                  command: str | None = None, extra: dict | None = None) -> Path:
    """Write `<out_dir>/summary.json`; ValueError on an unknown kind or a metric that is not a finite number."""
    if kind not in KINDS:
        raise ValueError(f"summary kind {kind!r} is not one of {', '.join(KINDS)}")
    bad = [name for name, value in metrics.items() if not _number(value)]
    if bad:
        raise ValueError(f"summary metrics must be finite numbers; not so: {', '.join(sorted(bad))}")
    summary = {
        "kind": kind,
        "model": str(model),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(["janus-rig", *sys.argv[1:]]),
        "samples": int(samples),
        "metrics": {name: float(value) for name, value in metrics.items()},
        "per_tag": per_tag or {},
        "thumbnails": [str(path) for path in (thumbnails or [])[:MAX_THUMBNAILS]],
        "reflect_rounds": int(reflect_rounds),
        **(extra or {}),
    }
    path = Path(out_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def read_summary(path: str | Path) -> dict:
    """Read a summary file (or the summary.json inside a folder); ValueError naming the file and field when malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON ({err})") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    if summary.get("kind") not in KINDS:
        raise ValueError(f"{path}: field 'kind' must be one of {', '.join(KINDS)}, got {summary.get('kind')!r}")
    for field, kind in (("model", str), ("metrics", dict), ("samples", int)):
        if not isinstance(summary.get(field), kind):
            raise ValueError(f"{path}: field {field!r} missing or not a {kind.__name__}")
    bad = [name for name, value in summary["metrics"].items() if not _number(value)]
    if bad:
        raise ValueError(f"{path}: field 'metrics' holds non-numbers: {', '.join(sorted(bad))}")
    summary.setdefault("per_tag", {})
    summary.setdefault("thumbnails", [])
    summary.setdefault("reflect_rounds", 0)
    return summary
