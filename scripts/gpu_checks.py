"""The GPU measurements the Rollout and GRPO issues ask for, in one short run (a lent GPU has ~15 minutes):

    python scripts/gpu_checks.py --out OUT                # Janus-Pro-1B preset, random init, bf16, cuda
    python scripts/gpu_checks.py --preset tiny --device cpu --dtype float32 --prompts-per-step 2 --out OUT  # smoke

1. decode: 8 prompts x G 4 = 32 rows, a given chain, N image tokens with CFG 5 (both halves in one batch of 64).
   Our sampler (eager, preallocated caches) and transformers' `generate(generation_mode="image")` on the same
   rows, with its default cache and with `cache_implementation="static"` (which transformers compiles on cuda);
   per image step in ms against the floor: the bytes one step must read (the language model's layers and the
   generation head + aligner, in the run's dtype) / the HBM bandwidth measured by a device-to-device copy.
2. grpo: two steps of `train/recipes/janus_pro_1b_grpo.yaml` (G 16, LoRA r 32, gradient checkpointing, fp32
   master weights + bf16 autocast) on ShapeWorld prompts with the exact judge (the recipe's http judge is not
   there), chains capped at 64 tokens: per step rollout and update seconds (the second step: warm) and peak memory.

Everything goes to OUT/gpu_checks.json (and stdout); a part that fails records its error and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from janus_rig.model.mixed import left_pad  # noqa: E402
from janus_rig.rollout.bench import BENCH_PROMPTS  # noqa: E402
from janus_rig.rollout.config import RolloutConfig  # noqa: E402
from janus_rig.rollout.sampler import sample  # noqa: E402

CHAIN = "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> left of a blue square."
RECIPE = Path(__file__).resolve().parents[1] / "train" / "recipes" / "janus_pro_1b_grpo.yaml"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, repeats: int) -> list[float]:
    fn()  # warm-up (and compilation, where there is any)
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def bandwidth(device: str) -> float:
    """Bytes per second of a device-to-device copy (read + write), the usable memory bandwidth."""
    n = (1 << 30 if device.startswith("cuda") else 1 << 26) // 4
    x = torch.empty(n, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    times = _timed(lambda: [y.copy_(x) for _ in range(10)], device, 3)
    return 2 * x.numel() * 4 * 10 / statistics.median(times)


def step_bytes(policy) -> int:
    """What one image decode step must read at least: every weight it multiplies by (not the embedding tables,
    of which it reads one row per token)."""
    model = policy.base.model
    parts = [model.language_model.layers, model.language_model.norm, model.generation_head, model.generation_aligner]
    return sum(p.numel() * p.element_size() for part in parts for p in part.parameters())


def _transformers_image(policy, prompts, group: int, cfg: float, **generate_kwargs):
    t = policy.tokens
    seqs = [policy.encode_prompt(p) + policy.encode_text(" " + CHAIN) + [t.boi] for p in prompts for _ in range(group)]
    ids, attention = left_pad(seqs, t.pad)
    return policy.base.generate(ids.to(policy.device), attention_mask=attention.to(policy.device),
                                generation_mode="image", do_sample=True, guidance_scale=cfg, **generate_kwargs)


def decode(policy, device: str, repeats: int) -> dict:
    prompts, group, cfg = list(BENCH_PROMPTS), 4, 5.0
    N = policy.num_image_tokens
    bw, weights = bandwidth(device), step_bytes(policy)
    floor_ms = weights / bw * 1e3
    out = {"rows": len(prompts) * group, "cfg_weight": cfg, "image_tokens": N, "dtype": str(policy.base.dtype),
           "bandwidth_gb_s": bw / 1e9, "step_bytes": weights, "floor_ms_per_step": floor_ms}
    config = RolloutConfig(group_size=group, cfg_weight=cfg)
    paths = {
        "ours_eager": lambda: sample(policy, prompts, config, chains=[CHAIN] * len(prompts), seed=0),
        "transformers_dynamic_cache": lambda: _transformers_image(policy, prompts, group, cfg),
        "transformers_static_cache": lambda: _transformers_image(policy, prompts, group, cfg,
                                                                  cache_implementation="static"),
    }
    for name, fn in paths.items():
        try:
            with torch.no_grad():
                times = _timed(fn, device, repeats)
            total = statistics.median(times)
            out[name] = {"seconds": total, "ms_per_step": total / N * 1e3, "x_floor": total / N * 1e3 / floor_ms}
        except Exception as err:  # noqa: BLE001 - record and go on: the other paths still measure
            out[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=3)}
        print(name, json.dumps(out[name]), flush=True)
    return out


def grpo(preset: str, device: str, out: Path, prompts_per_step: int, bf16: bool) -> dict:
    from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
    from data_prep.shapeworld.world import write_world
    from janus_rig.model.init import init_policy
    from train.grpo.config import parse_config
    from train.grpo.trainer import run_grpo

    world, init, run = out / "world", out / "init", out / "grpo"
    write_world(world, train=64, val=2, bench_per_tag=1, size=32, progress=False)
    init_policy(preset, init, tokenizer=shapeworld_tokenizer(), dtype="float32", seed=0)
    argv = ["--config", str(RECIPE), "--world", str(world), "--model_name_or_path", str(init), "--output_dir", str(run),
            "--judge", "shapeworld", "--judge_options", "{}", "--max_steps", "2", "--max_completion_length", "64",
            "--per_device_train_batch_size", str(prompts_per_step), "--activation_checkpointing", "true",
            "--save_strategy", "no", "--gallery_every", "0", "--bf16", str(bf16).lower(),
            "--use_cpu", str(device == "cpu").lower(), "--overwrite_output_dir", "true",  # a rerun redoes OUT/grpo
            "--attn_implementation", "sdpa"]  # the recipe's flash_attention_2 needs flash-attn, not on a lent GPU
    config = parse_config(argv)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    summary = run_grpo(config)
    steps = [json.loads(line) for line in open(run / "train_log.jsonl") if '"reward"' in line]
    result = {"preset": preset, "prompts_per_step": prompts_per_step, "num_generations": config.num_generations,
              "samples_per_step": prompts_per_step * config.num_generations, "lora_r": config.lora_r,
              "activation_checkpointing": True, "bf16_autocast": bf16, "max_completion_length": 64,
              "summary": summary,
              "per_step": [{k: s.get(k) for k in ("step", "time/rollout_s", "time/decode_s", "time/reward_s",
                                                  "time/update_s", "chain_length")} for s in steps]}
    if device.startswith("cuda"):
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="janus-pro-1b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", help="the decode part's weights")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts-per-step", type=int, default=8, help="GRPO prompts per step (the recipe's 8)")
    parser.add_argument("--parts", default="decode,grpo")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "preset": args.preset}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if "decode" in parts:
        try:
            from data_prep.shapeworld.tokenizer import shapeworld_tokenizer
            from janus_rig.model.init import init_policy

            policy = init_policy(args.preset, tokenizer=shapeworld_tokenizer(), dtype=args.dtype, seed=0)
            policy.model.to(args.device)
            report["decode"] = decode(policy, args.device, args.repeats)
            del policy
        except Exception as err:  # noqa: BLE001
            report["decode"] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if "grpo" in parts:
        try:
            report["grpo"] = grpo(args.preset, args.device, out, args.prompts_per_step, args.device != "cpu")
        except Exception as err:  # noqa: BLE001
            report["grpo"] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    (out / "gpu_checks.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if all("error" not in report.get(p, {}) for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
