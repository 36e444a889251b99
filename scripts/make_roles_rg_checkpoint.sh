#!/usr/bin/env bash
# Reflection-GRPO on the checker of checkpoints/shapeworld/roles_own (docs/lab/notebook.md §5, "RG3"): 74 steps in which
# a fixed re-planning actor (`--actor fresh-plan`) writes every edit and the whole image is redrawn, so the oracle's
# after-minus-before reward (`--reward judge --judge shapeworld`) pays the checker for flags that a re-plan turns
# into a right image and charges it for the others; lr 1e-5 (constant), the actor recipe otherwise. Only the
# reflections' verdicts and decisions are optimised (`--checker_tokens verdicts`): what the checker says it sees
# stays as SFT taught it, for `--rating grounded`. CHECKER_TOKENS=all gives the earlier run RG2.
#   bash scripts/make_roles_rg_checkpoint.sh [WORK_DIR]      (~5 min on 2 CPU cores, two torch threads; it reproduced
# the measured models bit for bit)
# The model lands in WORK_DIR/roles_rg (not shipped: run this to get it). Then, e.g.:
#   janus-rig reflect --model WORK_DIR/roles_rg --prompts P --rounds 2 --num 4 --cfg 3 --role-temperature 0.001 \
#     --edit-region full --actor fresh-plan --verdict-bias 2 --final best --rating grounded --out R
set -euo pipefail
WORK=${1:-runs/roles_rg}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
ROLES_OWN=${ROLES_OWN:-checkpoints/shapeworld/roles_own}
CHECKER_TOKENS=${CHECKER_TOKENS:-verdicts}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "world (the quickstart's, prompt-style chains; its position and complex prompts are the episodes)"
[ -f "$WORK/world/train.jsonl" ] || \
  $JR world --out "$WORK/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --heldout-per-tag 0 --chains prompt
stage "Reflection-GRPO, checker only (fixed re-planning actor), 74 steps of 4 prompts x G 4"
$JR reflect-grpo --config train/recipes/shapeworld_reflect_actor.yaml --world "$WORK/world" \
  --model_name_or_path "$ROLES_OWN" --reward judge --judge shapeworld --edit_region full --actor fresh-plan \
  --learning_rate 1e-5 --max_steps 74 --max_train_seconds 3600 --eval_every 0 \
  --checker_tokens "$CHECKER_TOKENS" --output_dir "$WORK/roles_rg" --overwrite_output_dir true
du -sh "$WORK/roles_rg"
