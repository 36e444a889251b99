#!/usr/bin/env bash
# Regenerate checkpoints/shapeworld/roles_own: the shipped roles model (checkpoints/shapeworld/roles) trained 600
# more steps with checker rows on the shipped SFT model's own drawings of right plans (docs/lab/notebook.md §5).
#   bash scripts/make_roles_own_checkpoint.sh [WORK_DIR]      (~30 min on 2 CPU cores, two torch threads)
# 6,000 reflection rows: half perturbed renders (half the moves plan errors), half the SFT model's own drawings of
# plans the oracle calls right (`--own-right-plans`), at most half of those keeps (`--own-keep 0.5`); the drawn-wrong
# ones carry the actor's target (the same plan, redraw boxes). Not part of `make quickstart`.
set -euo pipefail
WORK=${1:-runs/roles_own}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
SFT_CKPT=${SFT_CKPT:-checkpoints/shapeworld/sft}
ROLES_CKPT=${ROLES_CKPT:-checkpoints/shapeworld/roles}
OUT=${OUT:-checkpoints/shapeworld/roles_own}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "world (the quickstart's, prompt-style chains) + 6,000 reflection rows, half of them own drawings (~11 min)"
$JR world --out "$WORK/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --heldout-per-tag 0 --chains prompt --overwrite
$JR reflect-data --world "$WORK/world" --n 6000 --plan-errors 0.5 --own "$SFT_CKPT" --own-share 0.5 --own-keep 0.5 \
  --own-right-plans --device cpu --seed 7 --quiet
stage "own-rows leg from the roles model: codes view, lr 3e-4 over 600 steps"
$JR sft --config train/recipes/shapeworld_sft.yaml --world "$WORK/world" --init_preset "" --vq "" \
  --model_name_or_path "$ROLES_CKPT" --image_view codes --reflect_ratio 0.5 --grounding_ratio 0.5 \
  --learning_rate 3e-4 --warmup_steps 10 --max_steps 600 --max_train_seconds 1500 --save_steps 1000 \
  --output_dir "$WORK/roles_own" --overwrite_output_dir true
stage "copy into $OUT (weights, configs, tokenizer, metrics and curves; no Trainer checkpoints)"
rm -rf "$OUT" && mkdir -p "$OUT"
find "$WORK/roles_own" -maxdepth 1 -type f ! -name 'bad_rows.jsonl' -exec cp {} "$OUT/" \;
du -sh "$OUT"
