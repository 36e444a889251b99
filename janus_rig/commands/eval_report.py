"""`janus-rig eval report RUN_DIR... --out DIR`: one markdown + HTML table over evaluated runs.

See janus_rig/eval/report.py for what is read and written.

    janus-rig eval report runs/quickstart/sft runs/quickstart/grpo --out runs/quickstart/report
"""

from __future__ import annotations

import argparse

from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

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
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a line of text under the heading (how the runs were made, steps taken); repeatable")
    add_overwrite_argument(parser, text="replace an earlier report in --out: its report.*, thumbnails/ and figures/ "
                           "are deleted first, the rest of --out stays (without it an earlier report is refused)")


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.report import (FIGURES_DIR, REPORT_HTML, REPORT_JSON, REPORT_MD, THUMBNAILS_DIR,
                                       build_table, parse_figure, write_report)

    build_table(args.runs)  # a run without summaries is named before an earlier report goes
    # --out may be a run's own folder (the quickstart writes RUN/report.html): only the report's entries count
    prepare_out_dir(args.out, args.overwrite, only=(REPORT_MD, REPORT_HTML, REPORT_JSON, THUMBNAILS_DIR, FIGURES_DIR))
    paths = write_report(args.runs, args.out, [parse_figure(spec) for spec in args.figure], args.title,
                         args.note)
    print(f"report over {len(args.runs)} runs: {paths['md']}, {paths['html']} (table: {paths['json']})")
    return 0
