"""`janus-rig eval t2i-compbench`: K samples per prompt in the folder layout T2I-CompBench's scorers read.

    janus-rig eval t2i-compbench --model runs/quickstart/grpo --category color --samples 10 --out runs/eval/t2i
    janus-rig eval t2i-compbench --model DIR --prompts my_prompts.txt --samples 4 --out out/t2i

One prompt source writes OUT/samples/...; several (--category color shape, --prompts a.txt b.txt) write one
complete folder per source, OUT/<name>/samples/..., because each category is scored by its own scorer over
everything in its samples/. Nothing is scored here: the official scorers need BLIP, UniDet and CLIP; the command
prints how to run them. Layout: `janus_rig.eval.t2i_compbench_layout`; docs/eval.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from janus_rig.commands.eval_geneval import add_sampling_arguments, header, load_policy, rollout_config
from janus_rig.outputs import prepare_out_dir

NAME = "eval t2i-compbench"
HELP = "generate K images per T2I-CompBench prompt into <out>/samples/{prompt}_{index:06d}.png (+ chains, gallery)"
BENCHMARKS_ENV = "JANUS_RIG_BENCHMARKS"


def default_benchmarks() -> Path:
    """$JANUS_RIG_BENCHMARKS/t2i_compbench, else ../shared/benchmarks/t2i_compbench beside the repository."""
    root = os.environ.get(BENCHMARKS_ENV)
    if root:
        return Path(root) / "t2i_compbench"
    return Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "t2i_compbench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from janus_rig.eval.t2i_compbench_layout import CATEGORIES, SPLITS

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", nargs="+", metavar="FILE",
                        help="prompt files, one prompt per line (T2I-CompBench's {category}_{split}.txt format)")
    source.add_argument("--category", nargs="+", metavar="NAME", choices=list(CATEGORIES),
                        help=f"T2I-CompBench categories ({', '.join(CATEGORIES)}): their --split prompt files")
    parser.add_argument("--split", choices=SPLITS, default="val", help="prompt split for --category (val: 300 each)")
    parser.add_argument("--benchmarks", default=None, metavar="DIR",
                        help="folder of the {category}_{split}.txt files (default: "
                        f"${BENCHMARKS_ENV}/t2i_compbench or ../shared/benchmarks/t2i_compbench beside the repository)")
    add_sampling_arguments(parser, samples=10)


def sources(args: argparse.Namespace) -> list[tuple[str, Path, str | None]]:
    """(name, prompt file, category or None) per prompt source."""
    from janus_rig.eval.t2i_compbench_layout import category_file, category_of

    if args.category:
        bench = Path(args.benchmarks) if args.benchmarks else default_benchmarks()
        found = [(name, category_file(bench, name, args.split), name) for name in dict.fromkeys(args.category)]
        missing = [str(path) for _, path, _ in found if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"no prompt file {', '.join(missing)}; pass --benchmarks DIR or --prompts FILE")
        return found
    paths = [Path(p) for p in args.prompts]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"--prompts files need distinct names (each gets OUT/<name>/): {', '.join(stems)}")
    return [(p.stem, p, category_of(p)) for p in paths]


def run(args: argparse.Namespace) -> int:
    from janus_rig.eval.summary import write_summary
    from janus_rig.eval.t2i_compbench_layout import (
        CATEGORIES,
        read_prompt_file,
        score_commands,
        write_t2i_compbench,
    )
    from janus_rig.gallery import write_gallery

    started = time.perf_counter()
    # Everything cheap is checked before the model loads.
    found = sources(args)
    config = rollout_config(args)
    jobs = []
    for name, path, category in found:
        out = Path(args.out) if len(found) == 1 else Path(args.out) / name
        jobs.append((out, path, category, read_prompt_file(path, args.limit)))
    for out, path, _, _ in jobs:
        prepare_out_dir(out, args.overwrite, inputs={"--model": args.model, "prompt file": path})
    policy, device = load_policy(args)
    for out, path, category, prompts in jobs:
        began = time.perf_counter()
        traces = write_t2i_compbench(policy, prompts, out, config, seed=args.seed, batch_size=args.batch_size,
                                     display_size=args.display_size, progress=not args.quiet)
        changed = sum(p != t for p, t in {(t["prompt"], t["file_prompt"]) for t in traces})
        commands = score_commands(out, category)
        scorer = CATEGORIES[category].scorer if category else "the category's scorer"
        rows = header(args, policy, device, config, f"{len(prompts)} ({path})", time.perf_counter() - began)
        rows["category"] = category or "unknown (prompt file not named {category}_{split}.txt)"
        page = write_gallery(out, traces, rows, title=f"janus-rig eval t2i-compbench: {category or path.stem}")
        extra = {"category": category, "prompt_file": str(path), "prompts": len(prompts),
                 "samples_per_prompt": args.samples, "scored": False, "scorer": scorer, "score_with": commands,
                 "renamed_prompts": changed}
        write_summary(out, kind="t2i-compbench", model=args.model, metrics={}, samples=len(traces),
                      thumbnails=[t["image"] for t in traces if t["sample"] == 0], extra=extra,
                      command=args.command_line)
        print(f"wrote {len(traces)} samples to {out}/samples ({len(prompts)} prompts x {args.samples}); open {page}")
        if changed:
            print(f"  {changed} prompt(s) changed for their file names (_ / \\ or control characters -> space); "
                  f"chains.jsonl keeps each prompt and its file-name form")
        if category == "complex" and (args.samples != 10 or args.limit is not None):
            print("  note: 3_in_1.py takes 10 samples for every line of complex_val.txt, in order "
                  "(use --samples 10 and no --limit)")
        print(f"  not scored here: T2I-CompBench scores it with {scorer}, which needs its models; "
              "from the folder holding its checkout run:")
        for line in commands:
            print(f"    {line}")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0
