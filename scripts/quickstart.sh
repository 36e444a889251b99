#!/usr/bin/env bash
# `make quickstart`: the ShapeWorld pipeline end to end on 2 CPU cores:
#   world -> VQ -> SFT -> GRPO -> evaluation (oracle bench + SG-IoU) -> report (RUN/report.html, RUN/report.json).
#
# The VQ and the SFT model start from the checkpoints in checkpoints/shapeworld/, which the project's own commands
# produced (scripts/make_checkpoints.sh regenerates them; docs/results.md has their commands and times), so that GRPO,
# evaluation and the report fit the 20-minute budget. FROM_SCRATCH=1 trains both here instead (their 8-minute
# recipes: the VQ recipe, then the SFT recipe; ~17 minutes more, and a weaker SFT model than the shipped one).
set -euo pipefail
RUN=${1:-runs/quickstart}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
CKPT=${CKPT:-checkpoints/shapeworld}
FROM_SCRATCH=${FROM_SCRATCH:-0}
SECONDS=0
mkdir -p "$RUN"
stage() { printf '\n== [%s, %dm%02ds in] %s\n' "$(date +%H:%M:%S)" $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

stage "1/6 world: 20,000 train / 1,000 val records at 32 px + the bench (64 prompts per tag)"
$JR world --out "$RUN/world" --train 20000 --val 1000 --bench-per-tag 64 --size 32

if [ "$FROM_SCRATCH" = 1 ]; then
  stage "2/6 vq train: the tiny VQ on the world's images (recipe: train/recipes/shapeworld_vq.yaml)"
  $JR vq train --config train/recipes/shapeworld_vq.yaml --world "$RUN/world" --out "$RUN/vq"
  stage "3/6 sft: prompt -> reasoning chain -> image tokens (recipe: train/recipes/shapeworld_sft.yaml)"
  $JR sft --config train/recipes/shapeworld_sft.yaml --world "$RUN/world" --vq "$RUN/vq" --output_dir "$RUN/sft"
else
  for part in vq sft; do
    [ -f "$CKPT/$part/model.safetensors" ] || { echo "missing $CKPT/$part (run with FROM_SCRATCH=1)" >&2; exit 2; }
  done
  stage "2/6 vq: the shipped checkpoint ($CKPT/vq; FROM_SCRATCH=1 trains it)"
  rm -rf "$RUN/vq" && cp -r "$CKPT/vq" "$RUN/vq"
  stage "3/6 sft: the shipped checkpoint ($CKPT/sft; FROM_SCRATCH=1 trains it)"
  rm -rf "$RUN/sft" && cp -r "$CKPT/sft" "$RUN/sft"
fi

stage "4/6 grpo: GoT-R1's dual-stage rewards from the shapeworld judge (recipe: train/recipes/shapeworld_grpo.yaml)"
$JR grpo --config train/recipes/shapeworld_grpo.yaml --world "$RUN/world" --model_name_or_path "$RUN/sft" \
  --output_dir "$RUN/grpo"

stage "5/6 eval: the oracle-scored bench (448 prompts) and SG-IoU (128 val records) for SFT and GRPO"
for model in sft grpo; do
  rm -rf "$RUN/eval/$model"
  $JR eval geneval --model "$RUN/$model" --metadata "$RUN/world/bench/metadata.jsonl" --samples 1 --cfg 3 \
    --batch-size 32 --seed 1 --out "$RUN/eval/$model/geneval" --quiet
  $JR eval sg-iou --model "$RUN/$model" --records "$RUN/world/val.jsonl" --limit 128 --judge shapeworld --cfg 3 \
    --batch-size 32 --seed 1 --out "$RUN/eval/$model/sg-iou"
done

stage "6/6 report: $RUN/report.html ($RUN/report.json)"
last_strip=$(ls "$RUN/grpo/gallery/"*.png 2>/dev/null | tail -n 1 || true)
$JR eval report "$RUN/eval/sft" "$RUN/eval/grpo" --out "$RUN" --title "janus-rig quickstart: ShapeWorld SFT -> GRPO" \
  --figure "$RUN/grpo/reward_curve.png=GRPO: reward and bench accuracy per step" \
  --figure "$RUN/sft/loss_curve.png=SFT: text and image NLL per step" \
  ${last_strip:+--figure "$last_strip=GRPO samples at the last gallery step (chain boxes drawn, reward below)"}
stage "done in $((SECONDS / 60))m$((SECONDS % 60))s: open $RUN/report.html (galleries: $RUN/eval/*/geneval/index.html)"
