"""`janus-rig reflect`: generate, then let the model check its own image and edit it, up to K rounds; a gallery.

    janus-rig reflect --model runs/quickstart/sft --prompt "a red circle left of a blue square" --rounds 2 --out R
    janus-rig reflect --model M --prompts W/bench/metadata.jsonl --num 2 --reward shapeworld --out R

Per row and round the gallery shows the image, what the checker says it sees (its boxes drawn), its reflection
(verdicts, decision), the actor's edit boxes on the image and the edited image; layout in `janus_rig.reflect.report`.
Where a prompt's GenEval metadata is known (a metadata .jsonl line, or a ShapeWorld caption), the oracle's verdicts
are recorded next to the checker's and reflect_summary.json reports the checker's accuracy against them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "reflect"
HELP = "generate, then check and edit with the model's own reflection for up to K rounds; traces and a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="policy directory (ours or a transformers Janus directory)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts", metavar="FILE", help="prompt file: one per line, or .jsonl with a \"prompt\" "
                        "per line (GenEval metadata lines give the oracle its truth)")
    parser.add_argument("--rounds", type=int, default=2, help="K: edits per image at most")
    parser.add_argument("--num", type=int, default=1, help="samples per prompt")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole loop")
    parser.add_argument("--cfg", type=float, default=5.0, help="classifier-free guidance weight (generation and edits)")
    parser.add_argument("--temperature", type=float, default=1.0, help="chain sampling temperature")
    parser.add_argument("--image-temperature", type=float, default=1.0, help="image-token sampling temperature")
    parser.add_argument("--max-chain-tokens", type=int, default=600,
                        help="chain tokens before <begin_of_image> is forced")
    add_role_sampling_arguments(parser)
    add_edit_arguments(parser)
    parser.add_argument("--reward", default="intrinsic",
                        help="edit reward shown per edit: intrinsic (the model's own checker, RL-RIG) or a judge "
                        "(shapeworld, hf, http://host:port/v1)")
    parser.add_argument("--judge-model", default=None, help="hf: local judge model directory; http: the model id")
    parser.add_argument("--display-size", type=int, default=256, help="pixel size of overlays and gallery images")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")


def _prompts_and_metadata(args) -> tuple[list[str], list[dict | None]]:
    from janus_rig.generate import read_prompts
    from janus_rig.reflect.facts import shapeworld_metadata

    if args.prompt is not None:
        if not args.prompt.strip():
            raise ValueError("--prompt is empty")
        prompts, given = [args.prompt], [None]
    else:
        prompts = read_prompts(args.prompts)
        given = [None] * len(prompts)
        if Path(args.prompts).suffix.lower() == ".jsonl":  # read_prompts validated every line
            lines = [json.loads(x) for x in Path(args.prompts).read_text(encoding="utf-8").splitlines() if x.strip()]
            given = [r if "include" in r else None for r in lines]
    return prompts, [m if m is not None else shapeworld_metadata(p) for p, m in zip(prompts, given)]


def add_role_sampling_arguments(parser) -> None:
    """How the checker and the actor sample (shared by `reflect` and `eval geneval --reflect`)."""
    parser.add_argument("--role-temperature", type=float, default=1.0, help="checker and actor sampling temperature")
    parser.add_argument("--role-top-k", type=int, default=None,
                        help="checker and actor sample from their k likeliest tokens (1: greedy; default: off)")
    parser.add_argument("--verdict-bias", type=float, default=0.0,
                        help="the checker's threshold: added to the logit of `no` in each verdict (> 0: flags more "
                        "images; ReflectConfig.verdict_bias)")


def add_edit_arguments(parser) -> None:
    """Role lengths and how edits are drawn (shared by `reflect` and `eval geneval --reflect`)."""
    parser.add_argument("--max-reflection-tokens", type=int, default=256, help="tokens a reflection may take")
    parser.add_argument("--max-edit-tokens", type=int, default=256, help="tokens an edit may take")
    parser.add_argument("--no-paste-back", dest="paste_back", action="store_false",
                        help="show the edited tokens' own decoding, not the pixels outside the edit boxes pasted "
                        "back from the image before the edit (ReflectConfig.paste_back)")
    parser.add_argument("--edit-region", choices=("boxes", "full"), default="boxes",
                        help="boxes: redraw only the patches under the edit boxes (region-locked); full: redraw the "
                        "whole image from the revised chain (ReflectConfig.edit_region)")
    parser.add_argument("--actor", choices=("model", "keep-plan", "fresh-plan"), default="model",
                        help="who writes the edits: the model, or for an ablation a fixed actor that redraws the whole "
                        "image from the same plan (keep-plan) or from a new chain the model samples for the prompt "
                        "(fresh-plan); janus_rig/reflect/ablation.py")
    parser.add_argument("--final", choices=("last", "best"), default="last",
                        help="which image a row ends with: the last, or the one the checker rates likeliest right "
                        "(its unbiased P(yes) over its verdicts; ReflectConfig.final)")
    parser.add_argument("--rating", choices=("verdicts", "grounded", "plan"), default="verdicts",
                        help="with --final best, how an image is scored: the checker's P(yes) over its verdicts, or "
                        "with its relation verdicts answered on the boxes it says it sees (grounded) or on the boxes "
                        "of the chain the image was drawn from (plan) (ReflectConfig.rating)")


def loop_config(args: argparse.Namespace, rounds: int):
    """The loop's ReflectConfig from the role sampling and edit arguments (ValueError naming the bad setting)."""
    from janus_rig.reflect.loop import ReflectConfig

    return ReflectConfig(rounds=rounds, checker=role_text_config(args, args.max_reflection_tokens),
                         actor=role_text_config(args, args.max_edit_tokens), paste_back=args.paste_back,
                         edit_region=args.edit_region, verdict_bias=args.verdict_bias, final=args.final,
                         rating=args.rating)


def role_text_config(args: argparse.Namespace, max_new_tokens: int):
    """A role's TextConfig from the role sampling arguments (ValueError naming the bad setting)."""
    from janus_rig.reflect.text import TextConfig

    return TextConfig(max_new_tokens=max_new_tokens, temperature=args.role_temperature, top_k=args.role_top_k)


def run(args: argparse.Namespace) -> int:
    import torch

    from janus_rig.model.policy import JanusPolicy
    from janus_rig.reflect.ablation import actor_for
    from janus_rig.reflect.loop import reflect
    from janus_rig.reflect.prompts import ensure_role_tokens
    from janus_rig.reflect.report import write_reflect_gallery, write_reflect_outputs
    from janus_rig.reflect.reward import INTRINSIC, edit_rewards, oracle_report
    from janus_rig.reflect.text import TextConfig
    from janus_rig.rollout.config import RolloutConfig

    started = time.perf_counter()
    prompts, metadata = _prompts_and_metadata(args)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    config = loop_config(args, args.rounds)
    rollout = RolloutConfig(group_size=args.num, max_chain_tokens=args.max_chain_tokens, cfg_weight=args.cfg,
                            text_temperature=args.temperature, image_temperature=args.image_temperature)
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--prompts": args.prompts})
    judge = None
    if args.reward != INTRINSIC:
        from reward_models.judges import make_judge

        judge = make_judge(args.reward, model=args.judge_model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    policy = JanusPolicy.load(args.model, dtype=args.dtype, device=device)
    added = ensure_role_tokens(policy)
    result = reflect(policy, prompts, config, rollout, seed=args.seed, actor=actor_for(args.actor, rollout))
    row_meta = [metadata[i] for i in result.initial.prompt_index.tolist()]
    rewards = edit_rewards(result, args.reward, judge=judge, metadata=row_meta)
    traces = write_reflect_outputs(args.out, result, result.initial.prompt_index.tolist(), args.num, rewards,
                                   row_meta, args.display_size)
    known = [m is not None for m in row_meta]
    oracle = oracle_report(result, row_meta) if any(known) else {}
    total = time.perf_counter() - started
    summary = {"model": args.model, "prompts": len(prompts), "rows": result.counts["rows"], "rounds": args.rounds,
               "actor": args.actor, "final": args.final, "rating": args.rating, "reward": args.reward,
               "counts": result.counts,
               "oracle": oracle,
               "seconds": round(total, 2), "role_tokens_added": added}
    (Path(args.out) / "reflect_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    c = result.counts
    header = {
        "model": args.model,
        "rows": f"{c['rows']} ({len(prompts)} prompts x {args.num})",
        "rounds": f"up to {args.rounds} edits per image; actor: {args.actor}; edit reward: {args.reward}",
        "outcome": f"{c['keep']} keep, {c['edits']} edits, {c['malformed_reflection']} unreadable reflections, "
                   f"{c['malformed_edit']} unusable edits, {c['out_of_rounds']} out of rounds",
        "oracle": ", ".join(f"{k} {v:.3g}" for k, v in oracle.items()) if oracle else "no metadata for these prompts",
        "device": f"{device}, {next(policy.base.parameters()).dtype}",
        "total time": f"{total:.1f} s",
    }
    page = write_reflect_gallery(args.out, traces, header, args.display_size)
    if judge is not None:
        judge.close()
    print(f"reflected on {c['rows']} images in {total:.1f} s: {c['keep']} kept, {c['edits']} edits, "
          f"{c['malformed_reflection']} unreadable reflections, {c['malformed_edit']} unusable edits; open {page}")
    return 0
