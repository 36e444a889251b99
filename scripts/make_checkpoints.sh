#!/usr/bin/env bash
# Regenerate the shipped ShapeWorld checkpoints (checkpoints/shapeworld/{vq,sft}) with the project's own commands:
# one lineage that plans in prompt-style chains, draws, and holds the reflection roles (checker and actor).
# `make quickstart` starts from them; docs/lab/notebook.md has what they score and how long each stage took.
#   bash scripts/make_checkpoints.sh [WORK_DIR]        (~5 h on 2 CPU cores, two torch threads)
# The world has the held-out split (`janus-rig world` default): no training row holds a held-out prompt, so the
# models can be scored on WORLD/heldout/metadata.jsonl. The SFT model is trained in six legs, each a step budget:
#   1. the chain recipe (varied chains) to 1,000 steps;
#   2. a continuation at lr 5e-4 over 1,300 steps (image tokens then follow the chain's boxes: docs/lab/notebook.md);
#   3. the roles leg: prompt-style chains (`world --chains prompt`: the plans the varied chains could not teach), with
#      reflection rows (checker and actor on perturbed renders, half the moves plan errors) and grounding rows at
#      half the batch each, images shown as the model's own VQ codes (`--image_view codes`), lr 5e-4 over 2,700 steps;
#   4. the own-drawings leg: checker rows on leg 3's own drawings of right plans (the drawn-wrong ones carry the
#      actor's redraw), lr 3e-4 over 600 steps;
#   5-6. generation-heavy legs on the same rows (reflection rows at a fifth of the train records, grounding at a
#      tenth), lr 3e-4 over 800 then 1,200 steps: legs 3-4 left the drawings 10-13 points below the plain generation
#      model's on held-out position and complex prompts, leg 6 brings them back (docs/lab/notebook.md §7); the saved
#      model records the reflection loop it is released with (train/recipes/shapeworld_reflect.yaml, roles.json
#      "loop"), so `janus-rig reflect` runs it with no flags.
# A rerun picks up where it stopped: finished stages are skipped and a leg with checkpoints resumes from the newest
# complete one. Thread scheduling makes a rerun close to, not bit-identical with, the shipped files.
set -euo pipefail
WORK=${1:-runs/checkpoints}
PY=${PY:-.venv/bin/python}
JR="$PY -m janus_rig.cli"
OUT=${OUT:-checkpoints/shapeworld}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
stage() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
WORLD="--train 20000 --val 1000 --bench-per-tag 64 --size 32"  # the quickstart's world; seed 0, held-out split on
SFT="$JR sft --config train/recipes/shapeworld_sft.yaml --max_train_seconds 0"
CONT='--init_preset "" --vq "" --warmup_steps 10'  # a leg that continues a trained model

world() {  # world DIR [world flags]: skipped when DIR/world.json exists
  local dir=$1; shift
  if [ -f "$dir/world.json" ]; then echo "   $dir: written before, kept"; else $JR world --out "$dir" $WORLD "$@" --overwrite; fi
}
leg() {  # leg DIR [sft flags]: skipped when finished, resumed from its newest checkpoint when it has one
  local dir=$1; shift
  if [ -f "$dir/sft_summary.json" ]; then echo "   $dir: trained before, kept"; return; fi
  if compgen -G "$dir/checkpoint-*" > /dev/null; then
    eval "$SFT --output_dir $dir --resume_from_checkpoint true $*"
  else
    eval "$SFT --output_dir $dir --overwrite_output_dir true $*"
  fi
}

stage "worlds: varied chains (legs 1-2), prompt-style chains + 10,000 reflection rows (leg 3)"
world "$WORK/world"
world "$WORK/world_prompt" --chains prompt
[ -f "$WORK/world_prompt/reflect.jsonl" ] || $JR reflect-data --world "$WORK/world_prompt" --n 10000 --plan-errors 0.5 --quiet
stage "vq train (train/recipes/shapeworld_vq.yaml)"
[ -f "$WORK/vq/metrics.json" ] || $JR vq train --config train/recipes/shapeworld_vq.yaml --world "$WORK/world" --out "$WORK/vq" --overwrite
stage "sft 1/6: the chain recipe, 1,000 steps"
leg "$WORK/sft1" --world "$WORK/world" --vq "$WORK/vq" --max_steps 1000 --save_steps 250
stage "sft 2/6: continued at lr 5e-4, cosine over 1,300 steps"
leg "$WORK/sft2" --world "$WORK/world" $CONT --model_name_or_path "$WORK/sft1" --learning_rate 5e-4 --max_steps 1300 --save_steps 250
stage "sft 3/6: prompt-style chains + reflection and grounding rows (codes view), lr 5e-4 over 2,700 steps"
leg "$WORK/sft3" --world "$WORK/world_prompt" $CONT --model_name_or_path "$WORK/sft2" --image_view codes \
  --reflect_ratio 0.5 --grounding_ratio 0.5 --learning_rate 5e-4 --max_steps 2700 --save_steps 300
stage "sft 4/6: 6,000 reflection rows, half of them leg 3's own drawings of right plans; lr 3e-4 over 600 steps"
world "$WORK/world_own" --chains prompt
[ -f "$WORK/world_own/reflect.jsonl" ] || $JR reflect-data --world "$WORK/world_own" --n 6000 --plan-errors 0.5 \
  --own "$WORK/sft3" --own-share 0.5 --own-keep 0.5 --own-right-plans --device cpu --seed 7 --quiet
leg "$WORK/sft4" --world "$WORK/world_own" $CONT --model_name_or_path "$WORK/sft3" --image_view codes \
  --reflect_ratio 0.5 --grounding_ratio 0.5 --learning_rate 3e-4 --max_steps 600 --save_steps 200
stage "sft 5/6: generation-heavy (reflection rows at 0.2, grounding at 0.1), lr 3e-4 over 800 steps"
leg "$WORK/sft5" --world "$WORK/world_own" $CONT --model_name_or_path "$WORK/sft4" --image_view codes \
  --reflect_ratio 0.2 --grounding_ratio 0.1 --learning_rate 3e-4 --max_steps 800 --save_steps 200
stage "sft 6/6: the same mix, lr 3e-4 over 1,200 more steps"
leg "$WORK/sft" --world "$WORK/world_own" $CONT --model_name_or_path "$WORK/sft5" --image_view codes \
  --reflect_ratio 0.2 --grounding_ratio 0.1 --learning_rate 3e-4 --max_steps 1200 --save_steps 200 \
  --loop_recipe train/recipes/shapeworld_reflect.yaml
stage "copy into $OUT (weights, configs, tokenizer, metrics and curves; no Trainer checkpoints)"
rm -rf "$OUT/vq" "$OUT/sft" && mkdir -p "$OUT/vq" "$OUT/sft"
cp "$WORK/vq/config.json" "$WORK/vq/model.safetensors" "$WORK/vq/metrics.json" "$OUT/vq/"
find "$WORK/sft" -maxdepth 1 -type f ! -name bad_rows.jsonl ! -name training_args.bin -exec cp {} "$OUT/sft/" \;
for leg in sft1 sft2 sft3 sft4 sft5; do cp "$WORK/$leg/train_log.jsonl" "$OUT/sft/train_log_$leg.jsonl"; done
du -sh "$OUT"/*
