#!/usr/bin/env bash
# The GRPO model that keeps its roles, and Reflection-GRPO on it (docs/lab/notebook.md §5, session 16: "GR3e5" and
# "GR3e5_RGB"). GRPO with the ShapeWorld recipe from checkpoints/shapeworld/roles_own at a third of its learning
# rate (3e-5: at the recipe's 1e-4 GRPO breaks the roles), all 120 steps (the time budget lifted so that a slower
# machine runs the same steps); then 74 Reflection-GRPO steps on its checker with a fixed re-planning actor whose
# episodes end as the loop with `--final best --rating plan` does: the oracle's score of the checker's pick minus
# the first image's.
#   bash scripts/make_grpo_roles_checkpoints.sh [WORK_DIR]   (~11 min on 2 CPU cores, two torch threads; it
# reproduced the measured models bit for bit)
# The models land in WORK_DIR/grpo_roles and WORK_DIR/grpo_roles_rg (not shipped: run this to get them). Then, e.g.:
#   janus-rig reflect --model WORK_DIR/grpo_roles_rg --prompts P --rounds 2 --num 4 --cfg 3 --role-temperature 0.001 \
#     --edit-region full --actor fresh-plan --verdict-bias 2 --final best --rating plan --out R
set -euo pipefail
WORK=${1:-runs/grpo_roles}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
ROLES_OWN=${ROLES_OWN:-checkpoints/shapeworld/roles_own}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stage "world (the quickstart's, prompt-style chains)"
[ -f "$WORK/world/train.jsonl" ] || \
  $JR world --out "$WORK/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --heldout-per-tag 0 --chains prompt
stage "GRPO from the roles model, lr 3e-5, 120 steps"
$JR grpo --config train/recipes/shapeworld_grpo.yaml --world "$WORK/world" --model_name_or_path "$ROLES_OWN" \
  --learning_rate 3e-5 --max_train_seconds 3600 --eval_every 0 --output_dir "$WORK/grpo_roles" \
  --overwrite_output_dir true
stage "Reflection-GRPO on its checker: episodes end with the checker's pick (final best, plan rating), 74 steps"
$JR reflect-grpo --config train/recipes/shapeworld_reflect_actor.yaml --world "$WORK/world" \
  --model_name_or_path "$WORK/grpo_roles" --reward judge --judge shapeworld --edit_region full --actor fresh-plan \
  --learning_rate 1e-5 --max_steps 74 --max_train_seconds 3600 --eval_every 0 --checker_tokens verdicts \
  --final best --rating plan --output_dir "$WORK/grpo_roles_rg" --overwrite_output_dir true
du -sh "$WORK/grpo_roles" "$WORK/grpo_roles_rg"
