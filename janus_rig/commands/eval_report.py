"""`janus-rig eval report RUN_DIR... --out DIR`: one markdown + HTML table over evaluated runs.

See janus_rig/eval/report.py for what is read and written.

    janus-rig eval report runs/quickstart/sft runs/quickstart/grpo --out runs/quickstart/report
"""

from __future__ import annotations

import argparse

NAME = "eval report"
HELP = "tabulate evaluated runs (their summary.json files) as report.md / report.html / report.json with thumbnails"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories: each holds summary.json itself or in direct subfolders "
                        "(RUN/geneval, RUN/sg-iou, ...)")
    parser.add_argument("--out", required=True,
                        help="report directory (report.md, report.html, report.json, thumbnails/)")
    parser.add_argument("--figure", action="append", default=[], metavar="PATH[=CAPTION]",
                        help="an extra picture to show below the table (a loss or reward curve, a gallery strip); "
                        "copied into OUT/figures/; repeatable")
    parser.add_argument("--title", default="janus-rig evaluation report", help="the report's heading")


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.report import parse_figure, write_report

    paths = write_report(args.runs, args.out, [parse_figure(spec) for spec in args.figure], args.title)
    print(f"report over {len(args.runs)} runs: {paths['md']}, {paths['html']} (table: {paths['json']})")
    return 0
