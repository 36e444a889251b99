#!/usr/bin/env bash
# The ShapeWorld pipeline end to end, as far as it exists today (see README "Status"); every stage is real.
# ShapeWorld runs at 32 px: the VQ meets its fidelity target there within budget (docs/vq.md); 64 px stays available.
set -euo pipefail
RUN=${1:-runs/quickstart}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
mkdir -p "$RUN"
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "1/5 world: 20,000 train / 1,000 val records at 32 px + the bench"
$JR world --out "$RUN/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32
stage "2/5 vq train: the tiny preset's VQ on the world's images (~9 min)"
$JR vq train --world "$RUN/world" --out "$RUN/vq"
stage "3/5 sft: prompt -> reasoning chain -> image (time budget in the recipe)"
$JR sft --config train/recipes/shapeworld_sft.yaml --world "$RUN/world" --vq "$RUN/vq" --output_dir "$RUN/sft"
stage "4/5 generate: 32 bench prompts, images + overlays + chains + gallery"
head -n 32 "$RUN/world/bench/metadata.jsonl" > "$RUN/prompts.jsonl"
$JR generate --model "$RUN/sft" --prompts "$RUN/prompts.jsonl" --num 2 --cfg 3 --seed 0 --out "$RUN/generate"
stage "5/5 done: open $RUN/generate/index.html (gallery) and $RUN/sft/loss_curve.png"
