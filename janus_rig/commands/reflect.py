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

from janus_rig.commands._sampling import add_sampling_arguments, rollout_config
from janus_rig.outputs import add_overwrite_argument, prepare_out_dir

NAME = "reflect"
HELP = "generate, then check and edit with the model's own reflection for up to K rounds; traces and a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="policy directory (ours or a transformers Janus directory)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts", metavar="FILE", help="prompt file: one per line, or .jsonl with a \"prompt\" "
                        "per line (GenEval metadata lines give the oracle its truth)")
    parser.add_argument("--num", type=int, default=1, help="samples per prompt")
    parser.add_argument("--out", required=True, help="output directory (a used one is refused without --overwrite)")
    add_overwrite_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole loop")
    add_sampling_arguments(parser, chain=False, cfg_help="classifier-free guidance weight of the drawings and "
                           "edits (default: the model's, its generation_config.json guidance_scale)")
    add_loop_arguments(parser)
    parser.add_argument("--reward", default="intrinsic",
                        help="edit reward shown per edit: intrinsic (the model's own checker, RL-RIG) or a judge "
                        "(shapeworld, hf, http://host:port/v1)")
    parser.add_argument("--judge-model", default=None, help="hf: local judge model directory; http: the model id")
    parser.add_argument("--display-size", type=int, default=256, help="pixel size of overlays and gallery images")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: as saved)")


def _prompts_and_metadata(args) -> tuple[list[str], list[dict | None]]:
    from janus_rig.generate import read_prompts
    from data_prep.shapeworld.facts import shapeworld_metadata

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


def add_loop_arguments(parser, rounds: bool = True) -> None:
    """The loop's settings (shared by `reflect` and `eval geneval --reflect`): a recipe and the flags that override
    it. Unset flags leave the setting to the recipe, then to the model's record (roles.json "loop"), then to
    LoopSettings' defaults (janus_rig/reflect/settings.py). Settings that lost their ablations (final, rating,
    paste_back, role_top_k) are set in a recipe or the record, not by flags."""
    from janus_rig.reflect.actors import ACTORS
    from janus_rig.reflect.loop import EDIT_REGIONS

    parser.add_argument("--config", default=None, metavar="RECIPE",
                        help="YAML recipe of loop settings (e.g. train/recipes/shapeworld_reflect.yaml); flags "
                        "override it, it overrides the model's recorded loop")
    if rounds:
        parser.add_argument("--rounds", type=int, default=None, help="K: edits per image at most (default 2)")
    parser.add_argument("--actor", choices=list(ACTORS), default=None,
                        help="who writes the edits: the model, or a fixed re-planning (fresh-plan) or redrawing "
                        "(keep-plan) actor (janus_rig/reflect/actors.py)")
    parser.add_argument("--edit-region", choices=EDIT_REGIONS, default=None,
                        help="boxes: redraw only the patches under the edit boxes (region-locked, the context kept); "
                        "full: redraw the whole image from the revised chain")
    parser.add_argument("--verdict-bias", type=float, default=None,
                        help="the checker's threshold: added to the logit of `no` in each verdict (> 0: flags more)")
    parser.add_argument("--role-temperature", type=float, default=None,
                        help="checker and actor sampling temperature (1e-3: near greedy)")
    parser.add_argument("--max-reflection-tokens", type=int, default=None, help="tokens a reflection may take")
    parser.add_argument("--max-edit-tokens", type=int, default=None, help="tokens an edit may take")


LOOP_FLAGS = ("rounds", "actor", "edit_region", "verdict_bias", "role_temperature", "max_reflection_tokens",
              "max_edit_tokens")


def loop_settings(args: argparse.Namespace, record: dict | None = None, record_source: str = "the model",
                  rounds: int | None = None):
    """The loop's LoopSettings and each one's source: defaults < `record` < --config < flags (`rounds`, when given,
    is K from another flag, e.g. --reflect). ValueError naming the bad setting and where it came from."""
    from janus_rig.reflect.settings import resolve_settings

    flags = {name: getattr(args, name, None) for name in LOOP_FLAGS}
    if rounds is not None:
        flags["rounds"] = rounds
    return resolve_settings(record=record, recipe=args.config, flags=flags, record_source=record_source)


def describe(settings, sources: dict[str, str]) -> str:
    """One line for headers and summaries: each setting = value, with where it came from unless a default."""
    return ", ".join(f"{k} {v}" + ("" if sources[k] == "default" else f" ({sources[k]})")
                     for k, v in settings.to_dict().items())


def run(args: argparse.Namespace) -> int:
    import torch

    from janus_rig.model.policy import JanusPolicy
    from janus_rig.reflect.actors import actor_for
    from janus_rig.reflect.loop import reflect
    from janus_rig.reflect.prompts import ensure_role_tokens
    from janus_rig.reflect.report import write_reflect_gallery, write_reflect_outputs
    from janus_rig.reflect.reward import INTRINSIC, edit_rewards, oracle_report
    from janus_rig.reflect.text import TextConfig

    started = time.perf_counter()
    prompts, metadata = _prompts_and_metadata(args)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    loop_settings(args)  # flags and recipe checked before the model loads
    rollout = rollout_config(args, args.num)
    prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model, "--prompts": args.prompts})
    judge = None
    if args.reward != INTRINSIC:
        from reward_models.judges import make_judge

        judge = make_judge(args.reward, model=args.judge_model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    policy = JanusPolicy.load(args.model, dtype=args.dtype, device=device)
    settings, sources = loop_settings(args, policy.loop_settings, f"{args.model}'s loop record")
    config = settings.loop_config()
    added = ensure_role_tokens(policy)
    result = reflect(policy, prompts, config, rollout, seed=args.seed, actor=actor_for(settings.actor, rollout))
    row_meta = [metadata[i] for i in result.initial.prompt_index.tolist()]
    rewards = edit_rewards(result, args.reward, judge=judge, metadata=row_meta)
    traces = write_reflect_outputs(args.out, result, result.initial.prompt_index.tolist(), args.num, rewards,
                                   row_meta, args.display_size)
    known = [m is not None for m in row_meta]
    oracle = oracle_report(result, row_meta) if any(known) else {}
    total = time.perf_counter() - started
    summary = {"model": args.model, "prompts": len(prompts), "rows": result.counts["rows"],
               "loop": settings.to_dict(), "loop_sources": sources, "reward": args.reward,
               "counts": result.counts,
               "oracle": oracle,
               "seconds": round(total, 2), "role_tokens_added": added}
    (Path(args.out) / "reflect_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    c = result.counts
    header = {
        "model": args.model,
        "rows": f"{c['rows']} ({len(prompts)} prompts x {args.num})",
        "loop": describe(settings, sources),
        "edit reward": args.reward,
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
