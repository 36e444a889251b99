"""The ablation's table (`janus-rig ablate`, train/grpo/ablate.py), pure: rows -> Δ against the starting model,
the mean over seeds, markdown and CSV."""

from __future__ import annotations

import csv
import io

from janus_rig.eval.report import format_value

BASELINE = "baseline"
ERROR_FILE = "error.log"


def mean_row(runs: list[dict]) -> dict:
    """One setting's runs over seeds -> its row: each metric's mean over the runs that have metrics, with its
    min..max in "spread"; steps and seconds averaged; status "failed" when any run failed (errors joined)."""
    done = [r for r in runs if r.get("metrics")]
    metrics, spread = None, None
    if done:
        names = [k for k in done[0]["metrics"] if all(k in r["metrics"] for r in done)]
        metrics = {k: sum(r["metrics"][k] for r in done) / len(done) for k in names}
        spread = {k: [min(r["metrics"][k] for r in done), max(r["metrics"][k] for r in done)] for k in names}

    def average(key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(sum(values) / len(values), 2) if values else None

    errors = [f"seed {r['seed']}: {r['error']}" for r in runs if r.get("error")]
    status = "failed" if errors else "reused" if all(r["status"] == "reused" for r in runs) else "ok"
    return {"metrics": metrics, "spread": spread, "seeds": [r["seed"] for r in done], "steps": average("steps"),
            "train_s": average("train_s"), "wall_s": average("wall_s"), "status": status,
            "error": "; ".join(errors) or None}


COLUMNS = ("setting", "terms", "combine")  # then the tags, overall, delta, steps, train_s, wall_s, status


def build_table(rows: list[dict], tags: list[str]) -> dict:
    """Rows -> {"columns", "rows"} with Δ overall (and per tag) against the baseline row.

    A row: {"name", "label", "terms", "combine", "metrics": {tag: accuracy, "overall": ...} or None, "steps",
    "train_s", "wall_s", "status": "ok" | "reused" | "failed", "error"}. The row named `baseline` is the reference;
    without its metrics (it failed) Δ is None.
    """
    base = next((r.get("metrics") for r in rows if r["name"] == BASELINE), None)
    out = []
    for row in rows:
        metrics = row.get("metrics") or {}
        delta = {k: metrics[k] - base[k] for k in [*tags, "overall"] if base and k in metrics and k in base}
        out.append({**row, "metrics": metrics or None, "delta": delta or None})
    columns = [*COLUMNS, *tags, "overall", "delta_overall", "steps", "train_s", "wall_s", "status", "error"]
    return {"columns": columns, "tags": list(tags), "rows": out}


def _cells(row: dict, tags: list[str]) -> dict:
    metrics, delta = row["metrics"] or {}, row["delta"] or {}
    return {"setting": row["label"], "terms": " + ".join(row["terms"]),
            "combine": row["combine"] or "", **{t: metrics.get(t) for t in tags}, "overall": metrics.get("overall"),
            "delta_overall": delta.get("overall") if row["name"] != BASELINE else None, "steps": row.get("steps"),
            "train_s": row.get("train_s"), "wall_s": row.get("wall_s"), "status": row["status"],
            "error": row.get("error") or ""}


def render_markdown(table: dict, title: str, notes: list[str]) -> str:
    """The Table-3-shaped markdown: one line per setting; numbers as `janus-rig eval report` writes them."""
    tags = table["tags"]
    head = ["setting", "terms", "combine", *tags, "overall", "Δ overall", "steps", "train s", "wall s", "status"]
    lines = [f"# {title}", "", *notes, "", "| " + " | ".join(head) + " |",
             "|---|---|---|" + "---:|" * (len(tags) + 5) + "---|"]
    for row in table["rows"]:
        c = _cells(row, tags)
        delta = "" if c["delta_overall"] is None else f"{c['delta_overall']:+.4f}"
        seconds = ["" if c[k] is None else f"{c[k]:.1f}" for k in ("train_s", "wall_s")]
        spread = row.get("spread") or {}
        values = [format_value(c[k]) + (f" ({spread[k][0]:.4f}..{spread[k][1]:.4f})" if k in spread else "")
                  for k in [*tags, "overall"]] + [delta, format_value(c["steps"]), *seconds]
        lines.append("| " + " | ".join([c["setting"], c["terms"], c["combine"], *values, c["status"]]) + " |")
    failed = [r for r in table["rows"] if r.get("error")]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- **{r['label']}** (`{r['name']}/{ERROR_FILE}`): {' '.join(r['error'].split())}" for r in failed]
    return "\n".join(lines) + "\n"


def render_csv(table: dict) -> str:
    """One line per setting, every column at full precision (empty: no value)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table["columns"], lineterminator="\n")
    writer.writeheader()
    for row in table["rows"]:
        writer.writerow({k: "" if v is None else v for k, v in _cells(row, table["tags"]).items()})
    return buffer.getvalue()
