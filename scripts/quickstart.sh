#!/usr/bin/env bash
# `make quickstart`: the ShapeWorld pipeline end to end on 2 CPU cores:
#   world -> VQ -> SFT -> GRPO -> Reflection-GRPO (the whole loop, rewarded by the image it ends with) -> evaluation
#   on the world's held-out prompts (every tag, and position + complex after 0/1/2 rounds of each model's own
#   reflection loop) -> report (RUN/report.html, RUN/report.json).
#
# The VQ and the SFT model start from the checkpoints in checkpoints/shapeworld/, which the project's own commands
# produced (scripts/make_checkpoints.sh regenerates them; checkpoints/shapeworld/README.md has their legs), so that
# GRPO, Reflection-GRPO, evaluation and the report fit the 20-minute budget. FROM_SCRATCH=1 trains both here
# instead (their 8-minute recipes; ~17 minutes more, and a much weaker SFT model than the shipped one).
set -euo pipefail
RUN=${1:-runs/quickstart}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
CKPT=${CKPT:-checkpoints/shapeworld}
FROM_SCRATCH=${FROM_SCRATCH:-0}
# Both trainers run their recipes' step budgets (GRPO 120 steps, ~7 min on 2 quiet cores; Reflection-GRPO 40, ~6 min):
# results depend on the steps, not on the machine's load. Fewer steps for a smoke run: GRPO_STEPS=2 REFLECT_STEPS=2.
GRPO_STEPS=${GRPO_STEPS:-120}
REFLECT_STEPS=${REFLECT_STEPS:-40}
SECONDS=0
mkdir -p "$RUN"
# A rerun into the same RUN starts every stage afresh: each command that would refuse a used folder is told to empty
# it first (--overwrite; the trainers' --overwrite_output_dir), so no stage mixes its files with an earlier run's.
stage() { printf '\n== [%s, %dm%02ds in] %s\n' "$(date +%H:%M:%S)" $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

stage "1/6 world: 20,000 train / 1,000 val records at 32 px, prompt-style chains, and a held-out split (410 prompts)"
# The world the shipped SFT model's last legs trained on (seed 0): no training record holds a held-out prompt.
$JR world --out "$RUN/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --chains prompt --overwrite
HELDOUT="$RUN/world/heldout/metadata.jsonl"

if [ "$FROM_SCRATCH" = 1 ]; then
  stage "2/6 vq + sft from scratch: the VQ recipe, then the SFT recipe with reflection rows"
  rm -rf "$RUN/vq" "$RUN/sft"  # (they may be copies of the shipped checkpoints, which --overwrite would not empty)
  $JR vq train --config train/recipes/shapeworld_vq.yaml --world "$RUN/world" --out "$RUN/vq"
  $JR reflect-data --world "$RUN/world" --n 4000 --quiet
  $JR sft --config train/recipes/shapeworld_sft.yaml --world "$RUN/world" --vq "$RUN/vq" --output_dir "$RUN/sft" \
    --reflect_ratio 0.5 --grounding_ratio 0.25 --loop_recipe train/recipes/shapeworld_reflect.yaml
else
  for part in vq sft; do
    [ -f "$CKPT/$part/model.safetensors" ] || { echo "missing $CKPT/$part (run with FROM_SCRATCH=1)" >&2; exit 2; }
  done
  stage "2/6 vq + sft: the shipped checkpoints ($CKPT/vq, $CKPT/sft; FROM_SCRATCH=1 trains them)"
  rm -rf "$RUN/vq" "$RUN/sft" && cp -r "$CKPT/vq" "$RUN/vq" && cp -r "$CKPT/sft" "$RUN/sft"
fi

stage "3/6 grpo: GoT-R1's dual-stage rewards from the shapeworld judge, $GRPO_STEPS steps (train/recipes/shapeworld_grpo.yaml)"
$JR grpo --config train/recipes/shapeworld_grpo.yaml --world "$RUN/world" --model_name_or_path "$RUN/sft" \
  --output_dir "$RUN/grpo" --max_steps "$GRPO_STEPS" --overwrite_output_dir true

stage "4/6 reflect-grpo: episodes of the model's loop rewarded by the image each ends with, $REFLECT_STEPS steps (shapeworld_reflect_loop.yaml)"
# Each episode plans, draws, checks and re-plans as the released loop does; the oracle scores the image it ends with,
# and the plan and the checker's verdicts learn from it. (Rewarding the checker's accuracy alone,
# shapeworld_reflect_checker.yaml, teaches it to pass every drawing: docs/lab/notebook.md §4.)
$JR reflect-grpo --config train/recipes/shapeworld_reflect_loop.yaml --world "$RUN/world" \
  --model_name_or_path "$RUN/grpo" --output_dir "$RUN/reflect" --max_steps "$REFLECT_STEPS" --overwrite_output_dir true

stage "5/6 eval on the held-out prompts: every tag (one sample each); position + complex after 0/1/2 loop rounds"
# No --cfg and no loop flags: each model's recorded guidance and reflection loop (its roles.json) are used.
for model in sft grpo reflect; do
  $JR eval geneval --model "$RUN/$model" --metadata "$HELDOUT" --samples 1 --batch-size 32 --seed 1 \
    --out "$RUN/eval/$model/heldout" --overwrite --quiet
  $JR eval geneval --model "$RUN/$model" --metadata "$HELDOUT" --tags position complex --samples 1 --batch-size 32 \
    --seed 1 --reflect 2 --out "$RUN/eval/$model/loop" --overwrite --quiet
done

stage "6/6 report: $RUN/report.html ($RUN/report.json)"
mapfile -t gains < <($PY scripts/stage_gains.py "$RUN")
printf '   %s\n' "${gains[@]}"
notes=()
for line in "${gains[@]}"; do notes+=(--note "$line"); done
$PY scripts/quickstart_figure.py "$RUN" --out "$RUN/quickstart.png"
figures=()
for spec in "$RUN/quickstart.png=Each stage on the held-out prompts, its loop after 0/1/2 rounds, and the final model's edits" \
            "$RUN/grpo/reward_curve.png=GRPO: reward per step" \
            "$RUN/eval/reflect/loop/edit_strip.png=The final model's loop: before | the actor's edit boxes | after (green: right by the oracle)" \
            "$RUN/eval/grpo/loop/edit_strip.png=The GRPO model's loop: before | edit boxes | after"; do
  if [ -f "${spec%%=*}" ]; then figures+=(--figure "$spec"); fi
done
last_strip=$(ls "$RUN/grpo/gallery/"*.png 2>/dev/null | tail -n 1 || true)
if [ -n "$last_strip" ]; then
  figures+=(--figure "$last_strip=GRPO samples at the last gallery step (chain boxes drawn, reward below)")
fi
$JR eval report "$RUN/eval/sft" "$RUN/eval/grpo" "$RUN/eval/reflect" --out "$RUN" --overwrite \
  --title "janus-rig quickstart: ShapeWorld SFT -> GRPO -> Reflection-GRPO, held-out prompts" \
  "${notes[@]}" "${figures[@]}"
stage "done in $((SECONDS / 60))m$((SECONDS % 60))s: open $RUN/report.html (galleries: $RUN/eval/*/*/index.html)"
