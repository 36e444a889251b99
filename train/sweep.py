"""Seeds as a first-class tool: train one recipe once per seed, evaluate the start model and every run on one prompt
file with the ShapeWorld oracle, and write the spread over seeds (`janus-rig sweep`, docs/grpo.md).

    janus-rig sweep --config train/recipes/shapeworld_grpo.yaml --seeds 1,2,3 --eval W/heldout/metadata.jsonl \\
        --samples 4 --eval-seed 0 --out runs/sweep -- --world W --model_name_or_path checkpoints/shapeworld/sft

Each seed trains with the trainer's own parser on `--config RECIPE`, the flags after `--`, then `--seed S
--output_dir OUT/seed_S` (exactly `janus-rig grpo ... --seed S`), sequentially, in this process. Every model (the
start model first, then each run) samples the prompt file with the same evaluation seed and settings (GenEval layout,
`janus_rig.eval.geneval_run`). Outputs:

    OUT/start/                  the start model's evaluation (GenEval layout, summary.json, index.html)
    OUT/seed_S/                 the run of seed S (the trainer's output_dir: model, logs, *_summary.json)
    OUT/seed_S/geneval/         its evaluation
    OUT/sweep.json, sweep.md    per tag: start, each seed's score and gain, mean, min..max and s.d. over seeds (of
                                the scores and of the gains), steps per seed, the exact command; rewritten after
                                every finished run, so a sweep that stops keeps the runs it finished

Scores are % of the images the oracle judges right (overall = the mean over tags, GenEval's); "plans" are % of the
chains the oracle passes as plans (`score.chain_split`). A failing run stops the sweep (its error is the command's).
"""

from __future__ import annotations

import gc
import json
import shlex
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from janus_rig.eval.geneval_run import choose_oracle, read_geneval_metadata, run_geneval, write_geneval_outputs
from janus_rig.model.policy import JanusPolicy, read_guidance
from janus_rig.outputs import prepare_out_dir
from janus_rig.registry import Registry
from janus_rig.rollout.config import RolloutConfig
from train.common import help_field as _help
from train.grpo.config import parse_config as parse_grpo_config
from train.sft.config import parse_config as parse_sft_config

START = "start"
EVAL_DIR = "geneval"
SWEEP_JSON, SWEEP_MD = "sweep.json", "sweep.md"
OWN_FLAGS = ("seed", "output_dir")  # set per seed by the sweep: a flag for them is refused
UNIT = "% of images the oracle judges right (plans: % of chains it passes as plans)"


# --- trainers: what `--trainer` names -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepTrainer:
    parse: Callable[[list[str]], object]  # argv (`--config R` and flags) -> the trainer's config
    run: Callable[[object], dict]  # config -> its summary ({"steps": ..., "train_seconds": ...})


TRAINERS: Registry[Callable[[], SweepTrainer]] = Registry("sweep trainer")


@TRAINERS.register("grpo")
def _grpo() -> SweepTrainer:
    from train.grpo.trainer import run_grpo  # startup: keeps datasets + pandas (0.4 s) out of `janus-rig --help`

    return SweepTrainer(parse_grpo_config, run_grpo)


@TRAINERS.register("sft")
def _sft() -> SweepTrainer:  # the control: the same budget spent on more SFT
    from train.sft.trainer import run_sft  # startup: keeps datasets + pandas (0.4 s) out of `janus-rig --help`

    return SweepTrainer(parse_sft_config, run_sft)


# --- statistics and rendering: pure -------------------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    """{"mean", "sd" (sample s.d., n - 1; None under 2 values), "min", "max"}; all None for no values."""
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def gain_table(start: dict[str, float], runs: list[dict[str, float]], keys: list[str]) -> dict[str, dict]:
    """Per key (a tag, "overall"): the start, each run's score and gain (score - start), and the spread of both.

    >>> gain_table({"position": 50.0}, [{"position": 60.0}, {"position": 70.0}, {"position": 80.0}],
    ...            ["position"])["position"]["gain"]
    {'mean': 20.0, 'sd': 10.0, 'min': 10.0, 'max': 30.0}
    """
    table = {}
    for key in keys:
        scores = [run[key] for run in runs]
        gains = [score - start[key] for score in scores]
        table[key] = {"start": start[key], "scores": scores, "gains": gains, "score": spread(scores),
                      "gain": spread(gains)}
    return table


def _num(value, signed: bool = False) -> str:
    return "" if value is None else f"{value:+.1f}" if signed else f"{value:.1f}"


def _range(s: dict, signed: bool = False) -> str:
    return "" if s["min"] is None else f"{_num(s['min'], signed)}..{_num(s['max'], signed)}"


def render_table(table: dict[str, dict], seeds: list[int], steps: list | None = None) -> list[str]:
    """Markdown lines: one row per key; each seed's cell is "score (gain)"; s.d. is the same for scores and gains
    (the start is one number)."""
    head = ["tag", "start", *[f"seed {s}" for s in seeds], "mean", "min..max", "mean gain", "gain min..max", "s.d."]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for key, row in table.items():
        cells = [f"{_num(score)} ({_num(gain, True)})" for score, gain in zip(row["scores"], row["gains"])]
        lines.append("| " + " | ".join([key, _num(row["start"]), *cells, _num(row["score"]["mean"]),
                                        _range(row["score"]), _num(row["gain"]["mean"], True),
                                        _range(row["gain"], True), _num(row["score"]["sd"])]) + " |")
    if steps is not None:
        lines.append("| " + " | ".join(["steps", "", *["" if n is None else str(n) for n in steps]]
                                       + [""] * 5) + " |")
    return lines


def render_markdown(document: dict) -> str:
    """sweep.md from sweep.json's document."""
    seeds = [run["seed"] for run in document["runs"]]
    ev = document["eval"]
    lines = [f"# Seed sweep: {document['trainer']}, {len(seeds)} of {len(document['seeds'])} seeds", "",
             f"    {document['command']}", "",
             f"Start model `{document['start_model']}`; recipe `{document['recipe'] or '(flags only)'}`; seeds "
             f"{', '.join(map(str, document['seeds']))}.",
             f"Evaluation: {ev['prompts']} prompts of `{ev['metadata']}` ({', '.join(ev['tags'])}), {ev['samples']} "
             f"samples each, seed {ev['seed']}, CFG {ev['cfg']:g}, the same for every model; ShapeWorld oracle.",
             f"Scores: {UNIT}; overall = mean over tags; gain = score - start; s.d. = sample standard deviation "
             "over seeds.", "", "## Images right", "",
             *render_table(document["table"], seeds, [run["steps"] for run in document["runs"]])]
    if document.get("plans"):
        lines += ["", "## Plans right", "", *render_table(document["plans"], seeds)]
    if len(seeds) < len(document["seeds"]):
        lines += ["", f"Unfinished: seeds {', '.join(str(s) for s in document['seeds'] if s not in seeds)}."]
    lines += ["", "## Runs", ""]
    lines += [f"- seed {run['seed']}: {run['steps']} steps, {_num(run['train_seconds'])} s of training; "
              f"`{run['command']}`" for run in document["runs"]]
    return "\n".join(lines) + "\n"


# --- the sweep ----------------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """"1,2,3" -> [1, 2, 3]; ValueError for an empty list, a non-integer or a repeated seed."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(parts):
        raise ValueError(f"--seeds {text!r}: give comma-separated integers, e.g. 1,2,3")
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: not an integer list, e.g. 1,2,3") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} names a seed twice")
    return seeds


@dataclass
class SweepConfig:
    out: str = _help("sweep folder: OUT/start, OUT/seed_S, OUT/sweep.json, OUT/sweep.md")
    eval_metadata: str = _help("GenEval metadata file every model is evaluated on (e.g. WORLD/heldout/metadata.jsonl)")
    seeds: list[int] = _help("training seeds, one run each", default_factory=lambda: [1, 2, 3])
    trainer: str = _help("which trainer runs the recipe (TRAINERS: grpo, sft)", default="grpo")
    recipe: str | None = _help("the trainer's YAML recipe (--config)", default=None)
    trainer_argv: list[str] = _help("the trainer's flags, given after `--`", default_factory=list)
    eval_tags: list[str] | None = _help("only the prompt file's lines with these tags (default: all)", default=None)
    samples: int = _help("images per prompt", default=4)
    eval_seed: int = _help("sampling seed of every evaluation (the same for every model)", default=0)
    cfg: float | None = _help("classifier-free guidance weight of every evaluation (None: the start model's recorded "
                              "guidance)", default=None)
    max_chain_tokens: int = _help("chain tokens before <begin_of_image> is forced in the evaluation", default=600)
    eval_batch_size: int = _help("prompts per sampler call (part of the seeding)", default=8)
    overwrite: bool = _help("empty a non-empty OUT first", default=False)
    progress: bool = _help("progress bars", default=True)
    command: str = _help("the command line, recorded in the outputs", default="")

    def __post_init__(self):
        TRAINERS.get(self.trainer)  # KeyError listing the valid names
        if not self.seeds:
            raise ValueError("--seeds is empty: give at least one seed, e.g. 1,2,3")
        for name in ("samples", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        flags = {a[2:].split("=")[0] for a in self.trainer_argv if a.startswith("--")}
        for name in OWN_FLAGS:
            if name in flags:
                raise ValueError(f"--{name} after `--`: the sweep sets it per seed (--seeds, OUT/seed_S); drop it")
        if "config" in flags:
            raise ValueError("--config after `--`: give the recipe before it, as `janus-rig sweep --config R`")

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}

    def command_line(self) -> str:
        """The `janus-rig sweep` line that runs this config (for a sweep started from Python)."""
        argv = ["janus-rig", "sweep", "--trainer", self.trainer, *(["--config", self.recipe] if self.recipe else []),
                "--seeds", ",".join(map(str, self.seeds)), "--eval", str(self.eval_metadata),
                *(["--eval-tags", *self.eval_tags] if self.eval_tags else []), "--samples", str(self.samples),
                "--eval-seed", str(self.eval_seed), *(["--cfg", f"{self.cfg:g}"] if self.cfg is not None else []),
                "--max-chain-tokens",
                str(self.max_chain_tokens), "--eval-batch-size", str(self.eval_batch_size), "--out", str(self.out),
                *(["--overwrite"] if self.overwrite else []),
                *(["--", *self.trainer_argv] if self.trainer_argv else [])]
        return shlex.join(argv)


@dataclass
class Plan:
    """Everything checked before the first run."""

    configs: dict[int, object]  # seed -> the trainer's config
    argvs: dict[int, list[str]]  # seed -> the trainer's argv
    start_model: str
    entries: list  # geneval_run.Entry
    oracle: object  # geneval_run.Oracle
    rollout: object  # RolloutConfig of every evaluation
    tags: list[str] = field(default_factory=list)


def seed_argv(config: SweepConfig, seed: int) -> list[str]:
    head = ["--config", config.recipe] if config.recipe else []
    return [*head, *config.trainer_argv, "--seed", str(seed), "--output_dir", str(Path(config.out) / f"seed_{seed}")]


def plan_sweep(config: SweepConfig) -> Plan:
    """Parse every seed's config and read the prompt file without loading a model: a mistake stops the sweep
    before the first run."""
    trainer = TRAINERS.get(config.trainer)()
    argvs = {seed: seed_argv(config, seed) for seed in config.seeds}
    configs = {seed: trainer.parse(argv) for seed, argv in argvs.items()}
    start = getattr(configs[config.seeds[0]], "model_name_or_path", None)
    if not start:
        raise ValueError("a sweep measures gains over a start model: give the trainer --model_name_or_path DIR "
                         "(after `--`, or in the recipe); a random init_preset would differ per seed")
    entries = read_geneval_metadata(config.eval_metadata, tags=config.eval_tags)
    oracle = choose_oracle(entries, "on", config.eval_metadata)  # the table needs scores: ShapeWorld prompts
    if config.cfg is None:  # one guidance for every model: the one the start model records
        config.cfg = read_guidance(start)
    rollout = RolloutConfig(group_size=config.samples, cfg_weight=config.cfg, max_chain_tokens=config.max_chain_tokens)
    tags = list(dict.fromkeys(e.metadata["tag"] for e in entries))
    return Plan(configs, argvs, str(start), entries, oracle, rollout, tags)


def evaluate(model_dir: str | Path, plan: Plan, config: SweepConfig, out_dir: Path) -> dict:
    """Sample the prompt file with the policy in model_dir into out_dir (GenEval layout, oracle-scored, summary.json,
    gallery) -> {"scores": {tag: %, "overall": %}, "plans": {tag: %}}."""
    first = plan.configs[config.seeds[0]]  # every model loads as the runs do: the trainer's dtype and device
    device = "cuda" if torch.cuda.is_available() and not getattr(first, "use_cpu", False) else "cpu"
    policy = JanusPolicy.load(model_dir, dtype=getattr(first, "model_dtype", None), device=device)
    run = run_geneval(policy, plan.entries, out_dir, plan.rollout, seed=config.eval_seed,
                      batch_size=config.eval_batch_size, oracle=True, progress=config.progress)
    header = {"model": str(model_dir), "prompts": f"{len(plan.entries)} ({config.eval_metadata})",
              "samples": f"{config.samples} per prompt", "image": f"CFG {config.cfg:g}",
              "seed": f"{config.eval_seed} (batch b: seed + b), batch size {config.eval_batch_size}"}
    write_geneval_outputs(out_dir, run, model=str(model_dir), header=header, oracle=plan.oracle,
                          metadata_file=config.eval_metadata, command=f"{config.command} (evaluation)".strip())
    del policy
    _free_memory()
    return {"scores": {k: 100 * v for k, v in run.score.metrics().items()},
            "plans": {tag: 100 * s["chain_accuracy"] for tag, s in run.chain_split.items()}}


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_document(config: SweepConfig, plan: Plan, start: dict, runs: list[dict]) -> dict:
    """sweep.json: settings, the start model's and each finished run's scores, and the gain tables."""
    keys = [*plan.tags, "overall"]
    document = {
        "command": config.command or config.command_line(),
        "trainer": config.trainer, "recipe": config.recipe, "trainer_argv": config.trainer_argv,
        "start_model": plan.start_model, "seeds": config.seeds, "unit": UNIT,
        "eval": {"metadata": str(config.eval_metadata), "tags": plan.tags, "prompts": len(plan.entries),
                 "samples": config.samples, "seed": config.eval_seed, "cfg": config.cfg,
                 "max_chain_tokens": config.max_chain_tokens, "batch_size": config.eval_batch_size},
        "start": start, "runs": runs,
        "table": gain_table(start["scores"], [r["scores"] for r in runs], keys),
        "plans": gain_table(start["plans"], [r["plans"] for r in runs], [t for t in plan.tags if t in start["plans"]]),
        "complete": len(runs) == len(config.seeds),
    }
    return document


def write_outputs(config: SweepConfig, plan: Plan, start: dict, runs: list[dict]) -> dict:
    out = Path(config.out)
    document = build_document(config, plan, start, runs)
    (out / SWEEP_JSON).write_text(json.dumps(document, indent=2) + "\n")
    (out / SWEEP_MD).write_text(render_markdown(document), encoding="utf-8")
    return document


def run_sweep(config: SweepConfig, log: Callable[[str], None] = print) -> dict:
    """Plan; evaluate the start model; then per seed train and evaluate, rewriting sweep.json / sweep.md after each.
    -> sweep.json's document."""
    plan = plan_sweep(config)
    first = plan.configs[config.seeds[0]]
    out = prepare_out_dir(config.out, config.overwrite, inputs={
        "--eval": config.eval_metadata, "model_name_or_path": plan.start_model, "world": getattr(first, "world", None)})
    out.mkdir(parents=True, exist_ok=True)
    log(f"sweep: {config.trainer} x seeds {', '.join(map(str, config.seeds))}; evaluation: {len(plan.entries)} "
        f"prompts x {config.samples} samples, seed {config.eval_seed}")
    start = evaluate(plan.start_model, plan, config, out / START)
    log(f"[start] {plan.start_model}: " + _scores_line(start["scores"]))
    runs: list[dict] = []
    document = write_outputs(config, plan, start, runs)  # the start's scores are on disk before any training
    trainer = TRAINERS.get(config.trainer)()
    for i, seed in enumerate(config.seeds, start=1):
        run_dir = out / f"seed_{seed}"
        summary = trainer.run(plan.configs[seed])
        _free_memory()
        scores = evaluate(run_dir, plan, config, run_dir / EVAL_DIR)
        runs.append({"seed": seed, "dir": str(run_dir), "steps": summary.get("steps"),
                     "train_seconds": summary.get("train_seconds"),
                     "command": shlex.join(["janus-rig", config.trainer, *plan.argvs[seed]]), **scores})
        document = write_outputs(config, plan, start, runs)
        log(f"[{i}/{len(config.seeds)}] seed {seed}: {summary.get('steps')} steps; " + _scores_line(
            scores["scores"], start["scores"]))
    return document


def _scores_line(scores: dict, start: dict | None = None) -> str:
    return ", ".join(f"{k} {v:.1f}" + (f" ({v - start[k]:+.1f})" if start else "") for k, v in scores.items())
