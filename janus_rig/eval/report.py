"""`janus-rig eval report`: one table over any set of evaluated runs, as markdown, HTML and JSON, with a thumbnail
strip per run, so an ablation or an SFT -> GRPO -> reflection comparison is one command.

    janus-rig eval report runs/sft runs/grpo runs/grpo-reflect --out runs/report

A run directory holds evaluation folders: its own summary.json and those of its direct subfolders are read
(RUN/summary.json, RUN/geneval/summary.json, RUN/sg-iou/summary.json, ...; janus_rig/eval/summary.py). One row per
run; the columns are the union of `<kind>/<metric>` over every summary, plus `<kind>/samples` and the reflection
rounds. A kind evaluated twice in one run gets its folder in the column name (`judge@pairs/mean`).

    out/report.md, out/report.html, out/report.json      the table ("columns", "rows"), in three forms
    out/thumbnails/<row>/<k>.png                          copies of up to 8 thumbnails per run
    out/figures/<k>-<name>                                copies of extra figures (`figures`: curves, galleries)

Thumbnails are copied, not linked, so the report folder can be moved, archived or served on its own; a
thumbnail that is missing on disk is left out and listed under "missing".
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import re
import shutil
from itertools import chain, zip_longest
from pathlib import Path
from urllib.parse import quote

from janus_rig.eval.summary import KINDS, MAX_THUMBNAILS, SUMMARY_FILE, read_summary

REPORT_MD, REPORT_HTML, REPORT_JSON = "report.md", "report.html", "report.json"
THUMBNAILS_DIR = "thumbnails"
FIGURES_DIR = "figures"
REFLECT_COLUMN = "reflect_rounds"
THUMBNAIL_PX = 96


def find_summaries(run_dir: str | Path) -> list[tuple[Path, dict]]:
    """(folder, summary) for RUN/summary.json and RUN/*/summary.json, in name order; ValueError when there is none
    (or a summary is malformed: read_summary names the file and field)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run directory {run} does not exist")
    files = [run / SUMMARY_FILE] if (run / SUMMARY_FILE).is_file() else []
    files += sorted(p for p in run.glob(f"*/{SUMMARY_FILE}") if p.is_file())
    if not files:
        raise ValueError(f"run directory {run} has no {SUMMARY_FILE}, neither in it nor in its direct subfolders "
                         "(evaluate it first: janus-rig eval geneval / sg-iou / judge --out RUN/<eval>)")
    return [(path.parent, read_summary(path)) for path in files]


def _kind_key(kind: str, folder: Path, run: Path, seen: set[str]) -> str:
    key = kind
    if key in seen:  # the same kind twice in one run: name the folder
        key = f"{kind}@{folder.relative_to(run).as_posix() or '.'}"
    seen.add(key)
    return key


def build_table(run_dirs: list[str | Path]) -> dict:
    """{"columns": [...], "rows": [...]} over the runs (no files written); thumbnails as paths on disk."""
    if not run_dirs:
        raise ValueError("no run directories given")
    if len({Path(r).resolve() for r in run_dirs}) != len(run_dirs):
        raise ValueError("a run directory is given twice")
    rows, columns = [], {}
    for run_dir in run_dirs:
        run, seen, values, evals, strips = Path(run_dir), set(), {}, [], []
        for folder, summary in find_summaries(run):
            key = _kind_key(summary["kind"], folder, run, seen)
            values[f"{key}/samples"] = summary["samples"]
            values.update({f"{key}/{name}": value for name, value in summary["metrics"].items()})
            evals.append({"kind": summary["kind"], "dir": folder.as_posix(), "model": summary["model"],
                          "samples": summary["samples"], "reflect_rounds": summary["reflect_rounds"],
                          "created": summary.get("created"), "command": summary.get("command")})
            strips.append([folder / t for t in summary["thumbnails"] if isinstance(t, str)])
        values[REFLECT_COLUMN] = max(e["reflect_rounds"] for e in evals)
        for name in values:
            kind = name.split("/")[0].split("@")[0]
            columns.setdefault(name, (0, -1) if name == REFLECT_COLUMN else (KINDS.index(kind), len(columns)))
        thumbnails = [t for t in chain.from_iterable(zip_longest(*strips)) if t is not None][:MAX_THUMBNAILS]
        rows.append({"run": str(run_dir), "models": list(dict.fromkeys(e["model"] for e in evals)), "evals": evals,
                     "values": values, "thumbnails": thumbnails})
    ordered = sorted(columns, key=lambda name: columns[name])
    return {"columns": ordered, "rows": rows}


def format_value(value) -> str:
    """'0.4123', '64' (whole numbers: counts, a perfect 1), '' for a column this run lacks."""
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return str(int(value))


def _copy_thumbnails(table: dict, out: Path) -> list[str]:
    """Copy each row's thumbnails to out/thumbnails/<row>/<k><suffix>; row["thumbnails"] becomes those relative
    paths. -> the source paths that were missing."""
    missing = []
    target_root = out / THUMBNAILS_DIR
    if target_root.exists():
        shutil.rmtree(target_root)  # a stale strip from an earlier report must not linger
    for index, row in enumerate(table["rows"]):
        copied = []
        for k, source in enumerate(row["thumbnails"]):
            if not Path(source).is_file():
                missing.append(str(source))
                continue
            target = target_root / f"{index:03d}" / f"{k}{Path(source).suffix.lower() or '.png'}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied.append(target.relative_to(out).as_posix())
        row["thumbnails"] = copied
    return missing


def _md_cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def parse_figure(spec: str) -> tuple[Path, str]:
    """'PATH' or 'PATH=CAPTION' -> (path, caption); the caption defaults to the file name."""
    path, _, caption = spec.partition("=")
    return Path(path), caption or Path(path).name


def _copy_figures(figures: list[tuple[Path, str]], out: Path) -> list[dict]:
    """Copy each figure into out/figures/ (write_report has checked that they exist)."""
    copied = []
    for k, (path, caption) in enumerate(figures):
        target = out / FIGURES_DIR / f"{k:02d}-{Path(path).name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append({"path": target.relative_to(out).as_posix(), "caption": caption, "source": str(path)})
    return copied


def render_markdown(table: dict, created: str, missing: list[str], figures: list[dict] = (),
                    title: str = "janus-rig evaluation report", notes: list[str] = ()) -> str:
    columns = table["columns"]
    lines = [f"# {title}", "", f"{len(table['rows'])} runs, {created}.", "", *chain.from_iterable((n, "") for n in notes),
             "| run | model | " + " | ".join(_md_cell(c) for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for row in table["rows"]:
        cells = [format_value(row["values"].get(c)) for c in columns]
        lines.append(f"| {_md_cell(row['run'])} | {_md_cell(', '.join(row['models']))} | " + " | ".join(cells) + " |")
    lines += ["", "## Thumbnails", ""]
    for row in table["rows"]:
        strip = " ".join(f"![{_md_cell(row['run'])} {k}]({quote(path)})" for k, path in enumerate(row["thumbnails"]))
        lines += [f"**{_md_cell(row['run'])}**", "", strip or "(no thumbnails)", ""]
    if figures:
        lines += ["## Figures", ""]
        for figure in figures:
            lines += [f"**{_md_cell(figure['caption'])}**", "", f"![{_md_cell(figure['caption'])}]({quote(figure['path'])})", ""]
    if missing:
        lines += ["## Missing thumbnails", "", *(f"- {m}" for m in missing), ""]
    return "\n".join(lines)


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
table { border-collapse: collapse; margin-bottom: 1.5em; background: #fff; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f1f1f1; font-weight: 600; }
th .kind { display: block; color: #888; font-weight: 400; font-size: .85em; }
.strip { display: flex; gap: 4px; margin: 4px 0 1.2em; }
.strip img { image-rendering: pixelated; background: #eee; }
h2 { font-size: 1.05em; margin: 1em 0 .2em; }
.missing { color: #8a4200; }
figure { margin: .5em 0 1.5em; } figure img { max-width: 100%; border: 1px solid #ddd; background: #fff; }
"""


def render_html(table: dict, created: str, missing: list[str], figures: list[dict] = (),
                title: str = "janus-rig evaluation report", notes: list[str] = ()) -> str:
    esc = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    heads = []
    for column in table["columns"]:
        kind, _, metric = column.rpartition("/")
        kind_label = f'<span class="kind">{esc(kind)}</span>' if kind else ""
        heads.append(f"<th>{kind_label}{esc(metric)}</th>")
    body = []
    for row in table["rows"]:
        cells = "".join(f'<td class="num">{esc(format_value(row["values"].get(c)))}</td>' for c in table["columns"])
        body.append(f"<tr><td>{esc(row['run'])}</td><td>{esc(', '.join(row['models']))}</td>{cells}</tr>")
    strips = []
    for row in table["rows"]:
        size = f'width="{THUMBNAIL_PX}" height="{THUMBNAIL_PX}"'
        images = "".join(f'<img src="{esc(quote(p))}" {size} alt="{esc(row["run"])}">' for p in row["thumbnails"])
        strips.append(f"<h2>{esc(row['run'])}</h2><div class=\"strip\">{images or '(no thumbnails)'}</div>")
    absent = "".join(f"<li>{esc(m)}</li>" for m in missing)
    shown = "".join(f'<figure><img src="{esc(quote(f["path"]))}" alt="{esc(f["caption"])}">'
                    f'<figcaption>{esc(f["caption"])}</figcaption></figure>' for f in figures)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body><h1>{esc(title)}</h1>"
        f"<p>{len(table['rows'])} runs, {esc(created)}.</p>\n"
        + "".join(f"<p>{esc(note)}</p>\n" for note in notes)
        +
        f"<table><thead><tr><th>run</th><th>model</th>{''.join(heads)}</tr></thead>\n"
        f"<tbody>{''.join(body)}</tbody></table>\n"
        + "\n".join(strips)
        + (f"<h2>Figures</h2>{shown}" if figures else "")
        + (f'<h2>Missing thumbnails</h2><ul class="missing">{absent}</ul>' if missing else "")
        + "\n</body></html>\n"
    )


def write_report(run_dirs: list[str | Path], out_dir: str | Path, figures: list[tuple[Path, str]] = (),
                 title: str = "janus-rig evaluation report", notes: list[str] = ()) -> dict[str, Path]:
    """Read every run's summaries, copy thumbnails (and `figures`, (path, caption) pairs such as loss curves), write
    report.md / .html / .json with `notes` (lines of text) under the title; -> {"md", "html", "json"} paths."""
    table = build_table(run_dirs)  # every error (a run without summaries, a malformed one) before anything is written
    absent = [str(path) for path, _ in figures if not Path(path).is_file()]
    if absent:
        raise FileNotFoundError(f"figure(s) not found: {', '.join(absent)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missing = _copy_thumbnails(table, out)
    copied = _copy_figures(list(figures), out)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    paths = {"md": out / REPORT_MD, "html": out / REPORT_HTML, "json": out / REPORT_JSON}
    paths["md"].write_text(render_markdown(table, created, missing, copied, title, notes), encoding="utf-8")
    paths["html"].write_text(render_html(table, created, missing, copied, title, notes), encoding="utf-8")
    paths["json"].write_text(json.dumps({"created": created, "title": title, "notes": list(notes), **table, "figures": copied,
                                         "missing_thumbnails": missing}, indent=2) + "\n")
    return paths
