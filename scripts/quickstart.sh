#!/usr/bin/env bash
# `make quickstart`: the ShapeWorld pipeline end to end on 2 CPU cores:
#   world -> VQ -> SFT -> GRPO -> Reflection-GRPO (actor, then editor) -> evaluation (oracle bench, SG-IoU, the
#   bench's spatial prompts after 0/1/2 reflection rounds) -> report (RUN/report.html, RUN/report.json).
#
# The VQ and the SFT model start from the checkpoints in checkpoints/shapeworld/, which the project's own commands
# produced (scripts/make_checkpoints.sh regenerates them; docs/lab/notebook.md has their commands and times), so that GRPO,
# reflection, evaluation and the report fit the 20-minute budget. FROM_SCRATCH=1 trains both here instead (their
# 8-minute recipes: the VQ recipe, then the SFT recipe with reflection rows; ~17 minutes more, and a much weaker SFT
# model than the shipped one, which trained for ~2 hours).
set -euo pipefail
RUN=${1:-runs/quickstart}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
CKPT=${CKPT:-checkpoints/shapeworld}
FROM_SCRATCH=${FROM_SCRATCH:-0}
# GRPO runs the recipe's step budget (120 steps, ~7.5 min on 2 quiet cores: its result depends on the steps, not on
# the machine's load); the Reflection-GRPO stages keep a time budget (seconds), trimmed from their recipes' 200 so that
# the whole run stays inside 20 minutes on 2 cores.
GRPO_STEPS=${GRPO_STEPS:-120}
REFLECT_SECONDS=${REFLECT_SECONDS:-150}
SECONDS=0
mkdir -p "$RUN"
# A rerun into the same RUN starts every stage afresh: each command that would refuse a used folder is told to empty
# it first (--overwrite; the trainers' --overwrite_output_dir), so no stage mixes its files with an earlier run's.
stage() { printf '\n== [%s, %dm%02ds in] %s\n' "$(date +%H:%M:%S)" $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

stage "1/8 world: 20,000 train / 1,000 val records at 32 px + the bench (64 prompts per tag), prompt-style chains"
# --heldout-per-tag 0: the records the shipped SFT model was trained on (a held-out split changes which prompts train
# holds); the shipped models predate the split.
$JR world --out "$RUN/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32 --chains prompt --heldout-per-tag 0 \
  --overwrite

if [ "$FROM_SCRATCH" = 1 ]; then
  stage "2/8 vq train: the tiny VQ on the world's images (recipe: train/recipes/shapeworld_vq.yaml)"
  rm -rf "$RUN/vq" "$RUN/sft"  # (they may be copies of the shipped checkpoints, which --overwrite would not empty)
  $JR vq train --config train/recipes/shapeworld_vq.yaml --world "$RUN/world" --out "$RUN/vq"
  stage "3/8 sft: prompt -> reasoning chain -> image tokens, + reflection rows (recipe: shapeworld_sft.yaml)"
  $JR reflect-data --world "$RUN/world" --n 4000 --quiet
  $JR sft --config train/recipes/shapeworld_sft.yaml --world "$RUN/world" --vq "$RUN/vq" --output_dir "$RUN/sft" \
    --reflect_ratio 0.5 --grounding_ratio 0.25
else
  for part in vq sft; do
    [ -f "$CKPT/$part/model.safetensors" ] || { echo "missing $CKPT/$part (run with FROM_SCRATCH=1)" >&2; exit 2; }
  done
  stage "2/8 vq: the shipped checkpoint ($CKPT/vq; FROM_SCRATCH=1 trains it)"
  rm -rf "$RUN/vq" && cp -r "$CKPT/vq" "$RUN/vq"
  stage "3/8 sft: the shipped checkpoint ($CKPT/sft; FROM_SCRATCH=1 trains it)"
  rm -rf "$RUN/sft" && cp -r "$CKPT/sft" "$RUN/sft"
fi

stage "4/8 grpo: GoT-R1's dual-stage rewards from the shapeworld judge (recipe: train/recipes/shapeworld_grpo.yaml)"
$JR grpo --config train/recipes/shapeworld_grpo.yaml --world "$RUN/world" --model_name_or_path "$RUN/sft" \
  --output_dir "$RUN/grpo" --max_steps "$GRPO_STEPS" --overwrite_output_dir true

[ -f "$RUN/world/reflect.jsonl" ] || {
  stage "5/8 reflect-data: perturbed scenes with the checker's and the actor's targets (the editor phase's edits)"
  $JR reflect-data --world "$RUN/world" --n 4000 --quiet
}
stage "6/8 reflect-grpo: phase actor (reflections + edits, intrinsic reward), then phase editor (region-locked redraws)"
$JR reflect-grpo --config train/recipes/shapeworld_reflect_actor.yaml --world "$RUN/world" \
  --model_name_or_path "$RUN/grpo" --output_dir "$RUN/reflect_actor" --max_train_seconds "$REFLECT_SECONDS" \
  --overwrite_output_dir true
$JR reflect-grpo --config train/recipes/shapeworld_reflect_editor.yaml --world "$RUN/world" \
  --model_name_or_path "$RUN/reflect_actor" --output_dir "$RUN/reflect" --max_train_seconds "$REFLECT_SECONDS" \
  --overwrite_output_dir true

stage "7/8 eval: bench (448 prompts) + SG-IoU (128 val records) per model; spatial prompts after 0/1/2 reflection rounds"
for model in sft grpo reflect; do
  rm -rf "$RUN/eval/$model"
  $JR eval geneval --model "$RUN/$model" --metadata "$RUN/world/bench/metadata.jsonl" --samples 1 --cfg 3 \
    --batch-size 32 --seed 1 --out "$RUN/eval/$model/geneval" --quiet
  $JR eval sg-iou --model "$RUN/$model" --records "$RUN/world/val.jsonl" --limit 128 --judge shapeworld --cfg 3 \
    --batch-size 32 --seed 1 --out "$RUN/eval/$model/sg-iou"
  if [ "$model" != sft ]; then
    $JR eval geneval --model "$RUN/$model" --metadata "$RUN/world/bench/metadata.jsonl" --tags position complex \
      --samples 1 --cfg 3 --batch-size 32 --seed 1 --reflect 2 --out "$RUN/eval/$model/reflect2" --quiet
  fi
done

stage "8/8 report: $RUN/report.html ($RUN/report.json)"
last_strip=$(ls "$RUN/grpo/gallery/"*.png 2>/dev/null | tail -n 1 || true)
reflect_strip=$(ls "$RUN/reflect_actor/gallery/"*.png 2>/dev/null | tail -n 1 || true)
$JR eval report "$RUN/eval/sft" "$RUN/eval/grpo" "$RUN/eval/reflect" --out "$RUN" --overwrite \
  --title "janus-rig quickstart: ShapeWorld SFT -> GRPO -> Reflection-GRPO" \
  --figure "$RUN/grpo/reward_curve.png=GRPO: reward and bench accuracy per step" \
  --figure "$RUN/sft/loss_curve.png=SFT: text and image NLL per step" \
  ${last_strip:+--figure "$last_strip=GRPO samples at the last gallery step (chain boxes drawn, reward below)"} \
  ${reflect_strip:+--figure "$reflect_strip=Reflection-GRPO (actor): a reflection round per sample"}
stage "done in $((SECONDS / 60))m$((SECONDS % 60))s: open $RUN/report.html (galleries: $RUN/eval/*/geneval/index.html)"
