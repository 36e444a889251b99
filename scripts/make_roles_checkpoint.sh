#!/usr/bin/env bash
# Regenerate checkpoints/shapeworld/roles: the shipped SFT model (checkpoints/shapeworld/sft) taught the reflection
# roles, reading its images as its own VQ codes (`--image_view codes`; docs/reflection.md, docs/lab/notebook.md §5).
#   bash scripts/make_roles_checkpoint.sh [WORK_DIR]      (~75 min on 2 CPU cores, two torch threads)
# One leg of 2,700 steps at lr 5e-4 (the recipe's cosine schedule) with 10,000 reflection rows, half of whose moves
# show the wrong plan the moved image follows (`--plan-errors 0.5`), and the world's grounding rows, each at half the
# batch beside the generation rows. It is the starting point of the reflection experiments (a checker that reads
# its own images needs thousands of codes-view steps; results §5), not part of `make quickstart`.
set -euo pipefail
WORK=${1:-runs/roles}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
SFT_CKPT=${SFT_CKPT:-checkpoints/shapeworld/sft}
OUT=${OUT:-checkpoints/shapeworld/roles}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "world (the quickstart's, prompt-style chains) + 10,000 reflection rows, half the moves plan errors"
$JR world --out "$WORK/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --heldout-per-tag 0 --chains prompt --overwrite
$JR reflect-data --world "$WORK/world" --n 10000 --plan-errors 0.5 --quiet
stage "roles leg: codes view, reflection and grounding rows at half the batch each, lr 5e-4 over 2,700 steps"
$JR sft --config train/recipes/shapeworld_sft.yaml --world "$WORK/world" --init_preset "" --vq "" \
  --model_name_or_path "$SFT_CKPT" --image_view codes --reflect_ratio 0.5 --grounding_ratio 0.5 \
  --learning_rate 5e-4 --warmup_steps 10 --max_steps 2700 --max_train_seconds 6000 --save_steps 500 \
  --output_dir "$WORK/roles" --overwrite_output_dir true
stage "copy into $OUT (weights, configs, tokenizer, metrics and curves; no Trainer checkpoints)"
rm -rf "$OUT" && mkdir -p "$OUT"
find "$WORK/roles" -maxdepth 1 -type f ! -name 'bad_rows.jsonl' -exec cp {} "$OUT/" \;
du -sh "$OUT"
