#!/usr/bin/env bash
# Regenerate the shipped ShapeWorld checkpoints (checkpoints/shapeworld/{vq,sft}) with the project's own commands.
# `make quickstart` starts from them; docs/results.md has what they score and how long each stage took.
#   bash scripts/make_checkpoints.sh [WORK_DIR]        (~2 h 55 min on 2 CPU cores, one torch thread per stage)
# The SFT model is trained in four legs, as the shipped one was: the chain recipe to 1,000 steps, a continuation
# at a lower learning rate (image tokens then follow the chain's boxes: docs/results.md), a third leg that mixes
# in the reflection roles (checker, actor) and grounding rows, then a fourth on the same scenes with the prompt-style
# chains (`world --chains prompt`: the plans the varied chains could not teach; docs/results.md 3.8). Time budgets
# (the VQ's, the last three legs') and thread scheduling make a rerun close to, not bit-identical with, the shipped files.
set -euo pipefail
WORK=${1:-runs/checkpoints}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
OUT=${OUT:-checkpoints/shapeworld}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
SFT="$JR sft --config train/recipes/shapeworld_sft.yaml --overwrite_output_dir true"  # a rerun redoes WORK afresh

stage "world (the quickstart's: same seed and sizes, no held-out split: the shipped models predate it) + reflection rows"
$JR world --out "$WORK/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --heldout-per-tag 0 --overwrite
$JR reflect-data --world "$WORK/world" --n 4000 --quiet
stage "vq train (train/recipes/shapeworld_vq.yaml)"
$JR vq train --config train/recipes/shapeworld_vq.yaml --world "$WORK/world" --out "$WORK/vq" --overwrite
stage "sft 1/4: the chain recipe run to 1,000 steps without a time budget (~32 min)"
$SFT --world "$WORK/world" --vq "$WORK/vq" --output_dir "$WORK/sft1" --max_steps 1000 --max_train_seconds 0 --save_steps 500
stage "sft 2/4: continued at lr 5e-4, cosine over 1,500 steps, stopped after 45 min (1,308 steps when shipped)"
$SFT --world "$WORK/world" --init_preset "" --vq "" --model_name_or_path "$WORK/sft1" --output_dir "$WORK/sft2" --learning_rate 5e-4 \
  --max_steps 1500 --max_train_seconds 2700 --save_steps 500
stage "sft 3/4: + reflection (0.5) and grounding (0.25) rows at lr 3e-4, cosine over 600 steps, stopped after 40 min"
$SFT --world "$WORK/world" --init_preset "" --vq "" --model_name_or_path "$WORK/sft2" --output_dir "$WORK/sft3" --learning_rate 3e-4 \
  --warmup_steps 10 --reflect_ratio 0.5 --grounding_ratio 0.25 --max_steps 600 --max_train_seconds 2400 --save_steps 200
stage "sft 4/4: the same scenes with prompt-style chains, from leg 3, lr 3e-4, cosine over 1,200 steps (~38 min)"
$JR world --out "$WORK/world_prompt" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --heldout-per-tag 0 --chains prompt --overwrite
$SFT --world "$WORK/world_prompt" --init_preset "" --vq "" --model_name_or_path "$WORK/sft3" --output_dir "$WORK/sft" \
  --learning_rate 3e-4 --warmup_steps 10 --max_steps 1200 --max_train_seconds 2400 --save_steps 400
stage "copy into $OUT (weights, configs, tokenizer, metrics and curves; no Trainer checkpoints)"
rm -rf "$OUT/vq" "$OUT/sft" && mkdir -p "$OUT/vq" "$OUT/sft"
cp "$WORK/vq/config.json" "$WORK/vq/model.safetensors" "$WORK/vq/metrics.json" "$OUT/vq/"
find "$WORK/sft" -maxdepth 1 -type f ! -name 'bad_rows.jsonl' -exec cp {} "$OUT/sft/" \;
for leg in sft1 sft2 sft3; do cp "$WORK/$leg/train_log.jsonl" "$OUT/sft/train_log_$leg.jsonl"; done
du -sh "$OUT"/*
