#!/usr/bin/env bash
# Regenerate the shipped ShapeWorld checkpoints (checkpoints/shapeworld/{vq,sft}) with the project's own commands.
# `make quickstart` starts from them; docs/results.md has what they score and how long each stage took.
#   bash scripts/make_checkpoints.sh [WORK_DIR]        (~45 min on 2 CPU cores: VQ ~8 min, SFT ~35 min)
# Time budgets (the VQ's) and thread scheduling make a rerun close to, not bit-identical with, the shipped files.
set -euo pipefail
WORK=${1:-runs/checkpoints}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
OUT=${OUT:-checkpoints/shapeworld}
SFT_STEPS=${SFT_STEPS:-1200}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "world (the quickstart's: same seed and sizes)"
$JR world --out "$WORK/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32
stage "vq train (train/recipes/shapeworld_vq.yaml)"
$JR vq train --config train/recipes/shapeworld_vq.yaml --world "$WORK/world" --out "$WORK/vq"
stage "sft: the chain recipe run to $SFT_STEPS steps without a time budget (one torch thread, as measured)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $JR sft --config train/recipes/shapeworld_sft.yaml --world "$WORK/world" \
  --vq "$WORK/vq" --output_dir "$WORK/sft" --max_steps "$SFT_STEPS" --max_train_seconds 0 --save_steps 400
stage "copy into $OUT (weights, configs, tokenizer, metrics and curves; no Trainer checkpoints)"
rm -rf "$OUT/vq" "$OUT/sft" && mkdir -p "$OUT/vq" "$OUT/sft"
cp "$WORK/vq/config.json" "$WORK/vq/model.safetensors" "$WORK/vq/metrics.json" "$OUT/vq/"
find "$WORK/sft" -maxdepth 1 -type f ! -name 'bad_rows.jsonl' -exec cp {} "$OUT/sft/" \;
du -sh "$OUT"/*
