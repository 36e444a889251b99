#!/usr/bin/env bash
# The ShapeWorld pipeline end to end, as far as it exists today (see README "Status"); every stage is real.
set -euo pipefail
RUN=${1:-runs/quickstart}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
mkdir -p "$RUN"
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "world: 20,000 train / 1,000 val records + the bench"
$JR world --out "$RUN/world" --train 20000 --val 1000 --bench-per-tag 64
stage "init: random-init tiny policy with the ShapeWorld tokenizer"
$JR init --preset tiny --out "$RUN/init"
stage "done: $RUN"
