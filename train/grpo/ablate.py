"""Reward ablations (GoT-R1 Table 3): one GRPO run per reward setting, each evaluated on the bench, one table.

    janus-rig ablate --config train/recipes/shapeworld_grpo.yaml --terms all,R_PR,R_RI,R_PI --budget-s 120 \\
        --out runs/ablate

Settings (`--terms`, comma-separated; every name is checked against the reward-term registry):

    all           every reward term of the recipe, combined the recipe's way (or --combine's)
    R_PI          only this term ("R_PI only" in Table 3); R_PR = R_sem + R_spa, the prompt -> reasoning pair
    R_sem+R_PI    only these terms
    -R_RI         every recipe term but this one ("w/o R_RI"); -R_PR drops R_sem and R_spa
    SETTING@sum   that setting with another combination (product or sum) than the default

Table 3's rows are `all,R_PR,R_RI,R_PI` (the default). Product versus sum: unless `combine_row` is off, `all` under
the other combination (`all@sum` when the default is product) is added. The starting model is evaluated once, as
the `baseline` row that Δ is measured against.

Each setting trains with `run_grpo` on the recipe + the flags given + its own `reward_terms`, `reward_combine`,
`output_dir = OUT/<setting>` (and `max_train_seconds` from `budget_s`), sequentially, in this process; in-training
bench evaluation is off (`eval_every 0`, a flag may turn it back on). Then `run_geneval` samples the bench (GenEval
layout, ShapeWorld oracle) into `OUT/<setting>/geneval/` with the recipe's sampling settings and the same seed for
every row. Outputs:

    OUT/ablation.md, OUT/ablation.csv, OUT/ablation.json   rows = settings; per-tag accuracy, overall, Δ overall
                                                            vs the baseline, steps, train and wall seconds, status
    OUT/report/                                             `janus-rig eval report` over the evaluated folders
    OUT/<setting>/ablation_run.json                         what the folder was trained / evaluated with (resume)

With `seeds` (`--seeds 1,2`) every setting trains once per seed (`OUT/<setting>/seed_<s>/`, the recipe's `seed`
set to s) and its row is the mean over its seeds, with each figure's min..max; the evaluation is the same for every
run (`eval_seed`), so the spread is the training's.

A run that fails (training or evaluation) is a row with its error (traceback in OUT/<setting>/error.log); the other
runs go on. Resuming: a setting whose folder holds a finished run and an evaluation with the same settings is
reused; a finished run whose evaluation is missing or differs is only re-evaluated; an unfinished or failed one is
trained again. A folder trained with other settings stops the ablation before anything runs (`force` redoes it).
"""

from __future__ import annotations

import datetime as _dt
import gc
import hashlib
import json
import shlex
import shutil
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from janus_rig.eval.geneval_run import choose_oracle, read_geneval_metadata, run_geneval, write_geneval_outputs
from janus_rig.eval.report import format_value, write_report
from janus_rig.eval.summary import read_summary
from janus_rig.model.policy import JanusPolicy
from reward_models.combine import COMBINERS, PAIR, PAIR_NAME
from reward_models.terms import REWARD_TERMS
from train.common import help_field as _help
from train.grpo.ablate_table import BASELINE, ERROR_FILE, build_table, mean_row, render_csv, render_markdown
from train.grpo.config import parse_config

ALL = "all"
DEFAULT_SETTINGS = "all,R_PR,R_RI,R_PI"  # GoT-R1 Table 3's rows
EVAL_DIR = "geneval"
RUN_FILE = "ablation_run.json"
TABLE_MD, TABLE_CSV, TABLE_JSON = "ablation.md", "ablation.csv", "ablation.json"
REPORT_DIR = "report"
GRPO_SUMMARY = "grpo_summary.json"  # train.grpo.trainer.SUMMARY_FILE: the mark of a finished run
OWN_FLAGS = ("output_dir",)  # set per setting: a flag for them is refused
SYNTAX = ("a setting is 'all', a term ('R_PI': only it), terms joined by '+' ('R_sem+R_PI'), '-' and a term "
          "('-R_RI': all but it), each optionally followed by '@product' or '@sum'")


# --- settings: pure ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    spec: str  # as written in --terms, e.g. "-R_RI@sum"
    name: str  # its folder under OUT and its row id, e.g. "without_R_RI_sum"
    label: str  # the table's row, e.g. "w/o R_RI"
    terms: tuple[str, ...]  # the reward terms it trains with, in the recipe's order
    combine: str


def _expand(name: str, spec: str) -> list[str]:
    """R_PR -> [R_sem, R_spa]; a registered term -> [it]; ValueError naming the setting otherwise."""
    if name == PAIR_NAME:
        return list(PAIR)
    if name in REWARD_TERMS:
        return [name]
    raise ValueError(f"--terms {spec!r}: unknown reward term {name!r}; valid: {PAIR_NAME} (= {' + '.join(PAIR)}), "
                     f"{', '.join(REWARD_TERMS.names())}; {SYNTAX}")


def _ordered(terms: set[str], recipe_terms: list[str]) -> tuple[str, ...]:
    """The recipe's order first, then any other term by name."""
    return tuple([t for t in recipe_terms if t in terms] + sorted(terms - set(recipe_terms)))


def parse_setting(spec: str, recipe_terms: list[str], combine: str) -> Setting:
    """One --terms entry -> Setting. `recipe_terms` is what `all` means; `combine` applies unless '@mode' says."""
    text, _, mode = (part.strip() for part in spec.strip().partition("@"))
    if not text:
        raise ValueError(f"--terms: empty setting {spec!r}; {SYNTAX}")
    if mode and mode not in COMBINERS:
        raise ValueError(f"--terms {spec!r}: unknown combine {mode!r}; valid: {', '.join(COMBINERS.names())}")
    mode = mode or combine
    if text == ALL:
        terms, name, label = set(recipe_terms), ALL, ALL
    elif text.startswith("-"):
        text = "-" + text[1:].strip()
        dropped = _expand(text[1:], spec)
        absent = [t for t in dropped if t not in recipe_terms]
        if absent:
            raise ValueError(f"--terms {spec!r}: {', '.join(absent)} is not among the recipe's reward terms "
                             f"({', '.join(recipe_terms)}), so there is nothing to drop")
        terms, name, label = set(recipe_terms) - set(dropped), f"without_{text[1:]}", f"w/o {text[1:]}"
        if not terms:
            raise ValueError(f"--terms {spec!r} leaves no reward term (the recipe has only {', '.join(recipe_terms)})")
    else:
        parts = [part.strip() for part in text.split("+")]
        if len(set(parts)) != len(parts):
            raise ValueError(f"--terms {spec!r} names a term twice")
        terms = {t for part in parts for t in _expand(part, spec)}
        name, label = f"only_{'+'.join(parts)}", f"{'+'.join(parts)} only"
    if mode != combine:
        name, label = f"{name}_{mode}", f"{label} ({mode})"
    return Setting(spec.strip(), name, label, _ordered(terms, recipe_terms), mode)


def factor_names(terms) -> list[str]:
    """The combined factors of a term set: R_sem/R_spa become one, R_PR, as combine.factors does (one factor's
    total is the same under product and sum)."""
    return [t for t in terms if t not in PAIR] + ([PAIR_NAME] if set(PAIR) & set(terms) else [])


def other_combine(combine: str) -> str:
    return "sum" if combine == "product" else "product"


def parse_settings(text: str, recipe_terms: list[str], combine: str, combine_row: bool = True) -> list[Setting]:
    """--terms -> Settings, in order; with combine_row, `all` under the other combination is added after `all`
    (when `all` is listed and that row is not). ValueError for a bad name, or two settings with the same reward."""
    specs = text.split(",")
    if not text.strip() or any(not s.strip() for s in specs):
        raise ValueError(f"--terms {text!r}: an empty setting (two commas in a row?); {SYNTAX}")
    settings = [parse_setting(s, list(recipe_terms), combine) for s in specs]
    every = _ordered(set(recipe_terms), list(recipe_terms))
    at = next((i for i, s in enumerate(settings) if s.terms == every and s.combine == combine), None)
    if combine_row and at is not None and len(factor_names(every)) > 1:  # one factor: product == sum
        row = parse_setting(f"{ALL}@{other_combine(combine)}", list(recipe_terms), combine)
        if not any((s.terms, s.combine) == (row.terms, row.combine) for s in settings):
            settings.insert(at + 1, row)
    seen: dict[tuple, Setting] = {}
    for s in settings:
        key = (frozenset(s.terms), s.combine if len(factor_names(s.terms)) > 1 else "")
        if key in seen:
            raise ValueError(f"--terms: settings {seen[key].spec!r} and {s.spec!r} train the same reward "
                             f"({' + '.join(s.terms)}, {s.combine}): list it once")
        seen[key] = s
    return settings


def restrict_options(setting: Setting, weights: dict, term_options: dict) -> tuple[dict, dict]:
    """The recipe's reward weights and term options that apply to the setting's terms (RewardConfig refuses the
    others)."""
    allowed = set(setting.terms) | set(factor_names(setting.terms))
    return ({k: v for k, v in weights.items() if k in allowed},
            {k: v for k, v in term_options.items() if k in setting.terms})


# --- resume: what each folder still needs ---------------------------------------------------------------------------
def folder_plan(folder: Path, run_key: dict, eval_key: dict, force: bool) -> str:
    """"train" (train, then evaluate), "eval" (evaluate only) or "reuse" (read back). The baseline trains nothing:
    "eval" or "reuse". ValueError when the folder is not one of ours, or holds a finished run trained with other
    settings (and not `force`)."""
    baseline = run_key.get("kind") == BASELINE
    fresh = "eval" if baseline else "train"
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return fresh
    if not (folder / RUN_FILE).is_file():
        raise ValueError(f"{folder} exists but is not an ablation run folder (no {RUN_FILE}); move it away or pick "
                         "another --out")
    record = json.loads((folder / RUN_FILE).read_text())
    finished = baseline or (folder / GRPO_SUMMARY).is_file()
    if force or not finished:
        return fresh  # an unfinished or failed run is trained again
    if record.get("run_key") != run_key:
        if baseline:
            return fresh
        old = record.get("run_key") or {}
        differ = []
        if old.get("recipe_sha256") != run_key.get("recipe_sha256"):
            differ.append("the recipe file's content")
        if old.get("argv") != run_key.get("argv"):
            was, now = old.get("argv") or [], run_key.get("argv") or []
            differ.append(f"the flags (then: {' '.join(a for a in was if a not in now) or '-'}; "
                          f"now: {' '.join(a for a in now if a not in was) or '-'})")
        raise ValueError(f"{folder} holds a run trained with other settings ({'; '.join(differ) or 'its record'} "
                         "differ); rerun with --force to redo it, or pick another --out")
    evaluated = (folder / EVAL_DIR / "summary.json").is_file() and record.get("eval_key") == eval_key
    return "reuse" if evaluated else "eval"


def _sha256(path: str | Path | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write_record(folder: Path, **values) -> None:
    path = folder / RUN_FILE
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.update(values)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


# --- orchestration -------------------------------------------------------------------------------------------------
@dataclass
class AblationConfig:
    out: str = _help("output directory: one folder per setting, ablation.md/.csv/.json, report/")
    grpo_argv: list[str] = _help("`--config RECIPE` and `janus-rig grpo` flags, applied to every run",
                                 default_factory=list)
    terms: str = _help(f"comma-separated settings; {SYNTAX}; R_PR = R_sem + R_spa", default=DEFAULT_SETTINGS)
    combine: str | None = _help("combination of the settings without '@mode' (default: the recipe's "
                                "reward_combine)", default=None)
    combine_row: bool = _help("add `all` under the other combination (product vs sum)", default=True)
    budget_s: float | None = _help("training seconds per run (max_train_seconds; default: the recipe's)",
                                   default=None)
    eval_metadata: str | None = _help("GenEval metadata of the bench (default: WORLD/bench/metadata.jsonl)",
                                      default=None)
    eval_tags: list[str] = _help("bench tags evaluated (overall = their mean accuracy)",
                                 default_factory=lambda: ["position", "complex"])
    eval_samples: int = _help("images per bench prompt", default=4)
    eval_per_tag: int = _help("bench prompts per tag, the first ones (0: all)", default=0)
    eval_seed: int = _help("sampling seed of every evaluation (the same for every row)", default=0)
    eval_batch_size: int = _help("bench prompts per sampler call", default=8)
    seeds: list[int] = _help("training seeds: every setting trains once per seed and its row is their mean with "
                             "min..max (none: one run with the recipe's seed)", default_factory=list)
    force: bool = _help("redo every setting, even a finished one", default=False)
    progress: bool = _help("progress bars", default=True)

    def __post_init__(self):
        for name in ("eval_samples", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_per_tag < 0:
            raise ValueError(f"eval-per-tag must be >= 0 (0: every bench prompt), got {self.eval_per_tag}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ValueError(f"budget-s must be > 0 seconds, got {self.budget_s}")
        if self.combine is not None and self.combine not in COMBINERS:
            raise ValueError(f"unknown combine {self.combine!r}; valid: {', '.join(COMBINERS.names())}")
        flags = {a[2:].replace("-", "_") for a in self.grpo_argv if a.startswith("--")}
        for name in OWN_FLAGS:
            if name in flags:
                raise ValueError(f"--{name}: the ablation sets it per setting (OUT/<setting>); drop the flag")
        if self.seeds and "seed" in flags:
            raise ValueError("give either --seeds or --seed, not both")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds names a seed twice: {self.seeds}")
        if self.budget_s is not None and "max_train_seconds" in flags:
            raise ValueError("give either --budget-s or --max_train_seconds, not both")
        tags = [self.eval_tags] if isinstance(self.eval_tags, str) else self.eval_tags
        self.eval_tags = [t.strip() for tag in tags for t in tag.split(",") if t.strip()]
        if not self.eval_tags:
            raise ValueError("eval-tags is empty: name the bench tags to evaluate, e.g. position,complex")

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass
class Plan:
    """Everything checked before the first run: the base config, every setting's config, the bench."""

    base: object  # GRPOConfig of the recipe + flags
    settings: list[Setting]
    configs: dict[str, object]  # run name (`run_name`: the setting's, or "<setting>/seed_<s>") -> its GRPOConfig
    argvs: dict[str, list[str]]  # run name -> its `janus-rig grpo` argv
    entries: list  # geneval_run.Entry
    metadata_file: Path
    oracle: object  # geneval_run.Oracle
    rollout: object  # RolloutConfig of the evaluation
    eval_key: dict
    steps: dict[str, str] = field(default_factory=dict)  # run name (its folder under OUT) -> train | eval | reuse
    seeds: list[int | None] = field(default_factory=lambda: [None])  # None: the recipe's seed, one run

    def runs(self, setting: Setting) -> list[tuple[str, int | None]]:
        """(run name, seed) of each of the setting's runs."""
        return [(run_name(setting, seed), seed) for seed in self.seeds]


def run_name(setting: Setting, seed: int | None) -> str:
    return setting.name if seed is None else f"{setting.name}/seed_{seed}"


def _config_part(argv: list[str]) -> list[str]:
    return argv[:2] if argv[:1] == ["--config"] else []


def setting_argv(config: AblationConfig, base, setting: Setting, out_dir: Path, seed: int | None = None) -> list[str]:
    """The `janus-rig grpo` argv of one setting: recipe, eval_every 0 (a flag may override), the flags given, then
    the setting's reward, its seed (when the ablation has seeds) and output directory."""
    head = _config_part(config.grpo_argv)
    weights, options = restrict_options(setting, base.reward_weights, base.term_options)
    argv = [*head, "--eval_every", "0", *config.grpo_argv[len(head):],
            "--reward_terms", *setting.terms, "--reward_combine", setting.combine,
            "--reward_weights", json.dumps(weights), "--term_options", json.dumps(options),
            "--output_dir", str(out_dir)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if config.budget_s is not None:
        argv += ["--max_train_seconds", str(config.budget_s)]
    return argv


def _pick_per_tag(entries: list, per_tag: int) -> list:
    if not per_tag:
        return entries
    seen: Counter = Counter()
    picked = []
    for entry in entries:
        if seen[entry.metadata["tag"]] < per_tag:
            seen[entry.metadata["tag"]] += 1
            picked.append(entry)
    return picked


def plan_ablation(config: AblationConfig) -> Plan:
    """Parse and validate everything (recipe, every setting's GRPOConfig, the bench, the folders) without loading a
    model: a mistake stops the ablation before the first run."""
    out = Path(config.out)
    head = _config_part(config.grpo_argv)
    base = parse_config([*head, "--eval_every", "0", *config.grpo_argv[len(head):],
                         "--output_dir", str(out / BASELINE)])
    combine = config.combine or base.reward_combine
    settings = parse_settings(config.terms, list(base.reward_terms), combine, config.combine_row)
    seeds = list(config.seeds) or [None]
    argvs = {run_name(s, k): setting_argv(config, base, s, out / run_name(s, k), k) for s in settings for k in seeds}
    configs = {}
    for s in settings:
        try:
            for k in seeds:
                configs[run_name(s, k)] = parse_config(argvs[run_name(s, k)])
        except ValueError as err:
            raise ValueError(f"setting {s.spec!r} ({s.label}): {err}") from None
    if config.eval_metadata:
        metadata_file = Path(config.eval_metadata)
    elif base.world:
        metadata_file = Path(base.world) / "bench" / "metadata.jsonl"
    else:
        raise ValueError("no bench to evaluate on: give --eval-metadata FILE or --world DIR (its bench)")
    entries = _pick_per_tag(read_geneval_metadata(metadata_file, tags=config.eval_tags), config.eval_per_tag)
    oracle = choose_oracle(entries, "on", metadata_file)  # the table needs scores: ShapeWorld bench prompts
    rollout = base.rollout_config(config.eval_samples)
    eval_key = {"metadata": str(metadata_file), "metadata_sha256": _sha256(metadata_file), "tags": config.eval_tags,
                "per_tag": config.eval_per_tag, "seed": config.eval_seed, "batch_size": config.eval_batch_size,
                "rollout": asdict(rollout)}
    plan = Plan(base, settings, configs, argvs, entries, metadata_file, oracle, rollout, eval_key, seeds=seeds)
    plan.steps[BASELINE] = folder_plan(out / BASELINE, baseline_key(base), eval_key, config.force)
    for s in settings:
        for name, _ in plan.runs(s):
            plan.steps[name] = folder_plan(out / name, run_key(plan, name), eval_key, config.force)
    return plan


def baseline_key(base) -> dict:
    return {"kind": BASELINE, "model": str(base.model_name_or_path)}


def run_key(plan: Plan, name: str) -> dict:
    """What decides a trained run (`name`: a key of plan.argvs): its argv (output_dir aside) and the recipe's
    content."""
    argv = plan.argvs[name]
    at = argv.index("--output_dir")  # setting_argv's, the only one (a flag for it is refused)
    argv = argv[:at] + argv[at + 2 :]
    head = _config_part(argv)
    return {"kind": "grpo", "argv": argv, "recipe_sha256": _sha256(head[1]) if head else None}


def evaluate(model_dir: str | Path, plan: Plan, out_dir: Path, config: AblationConfig) -> dict:
    """Sample the bench with the policy in `model_dir` into out_dir (GenEval layout, oracle-scored, summary.json);
    -> the summary's metrics."""
    if out_dir.exists():
        shutil.rmtree(out_dir)  # an earlier, partial or outdated evaluation
    device = "cuda" if torch.cuda.is_available() and not plan.base.use_cpu else "cpu"
    policy = JanusPolicy.load(model_dir, dtype=plan.base.model_dtype, device=device)
    run = run_geneval(policy, plan.entries, out_dir, plan.rollout, seed=config.eval_seed,
                      batch_size=config.eval_batch_size, oracle=True, progress=config.progress)
    header = {"model": str(model_dir), "prompts": f"{len(plan.entries)} ({plan.metadata_file})",
              "samples": f"{plan.rollout.group_size} per prompt", "seed": str(config.eval_seed)}
    write_geneval_outputs(out_dir, run, model=str(model_dir), header=header, oracle=plan.oracle,
                          metadata_file=plan.metadata_file, command="janus-rig ablate (evaluation)")
    del policy
    return read_summary(out_dir)["metrics"]


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _one(folder: Path, step: str, train: Callable[[], object] | None, model_dir, plan: Plan,
         config: AblationConfig, record: dict) -> dict:
    """Do what `step` says for one folder ("train": train then evaluate; "eval"; "reuse": read back) -> its row
    values. Never raises Exception: a failure becomes the row's error and OUT/<folder>/error.log."""
    row = {"status": "reused" if step == "reuse" else "ok", "error": None}
    started = time.perf_counter()
    try:
        if step == "train":
            if folder.exists():
                shutil.rmtree(folder)  # ours (folder_plan checked): a partial, failed or forced run
            _write_record(folder, **record, eval_key=None, train_wall_s=None, eval_wall_s=None, error=None)
            train()
            _write_record(folder, train_wall_s=round(time.perf_counter() - started, 2))
        elif step == "eval":
            _write_record(folder, **record, eval_key=None, eval_wall_s=None, error=None)
        if step in ("train", "eval"):
            eval_started = time.perf_counter()
            evaluate(model_dir, plan, folder / EVAL_DIR, config)
            _write_record(folder, eval_key=plan.eval_key, eval_wall_s=round(time.perf_counter() - eval_started, 2))
    except Exception as err:  # noqa: BLE001  one failed run is a row, not the end of the ablation
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ERROR_FILE).write_text(traceback.format_exc())
        _write_record(folder, error=row["error"])
    finally:
        _free_memory()
    saved = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    summary_path = folder / EVAL_DIR / "summary.json"
    if row["error"] is None and summary_path.is_file():
        row["metrics"] = json.loads(summary_path.read_text())["metrics"]
    grpo = json.loads((folder / GRPO_SUMMARY).read_text()) if (folder / GRPO_SUMMARY).is_file() else {}
    row["steps"] = grpo.get("steps")
    row["train_s"] = grpo.get("train_seconds")
    walls = [saved.get("train_wall_s"), saved.get("eval_wall_s")]
    row["wall_s"] = round(sum(w for w in walls if w is not None), 2) if any(w is not None for w in walls) else None
    return row


def run_ablation(config: AblationConfig, log: Callable[[str], None] = print) -> dict:
    """Plan, then the baseline and one GRPO run + evaluation per setting, sequentially; write the tables and the
    report. -> {"table": ..., "paths": {...}}."""
    from train.grpo.trainer import run_grpo  # startup: keeps datasets + pandas (0.4 s) out of `janus-rig --help`

    plan = plan_ablation(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    total = len(plan.settings) + 1
    log(f"ablation: {total - 1} settings + the starting model; " + ", ".join(
        f"{n} ({s})" for n, s in plan.steps.items()))
    rows = []
    base_row = {"name": BASELINE, "label": "starting model", "terms": [], "combine": None}
    step = plan.steps[BASELINE]
    log(f"[1/{total}] {BASELINE}: " + ("reused" if step == "reuse" else f"evaluating {plan.base.model_name_or_path}"))
    record = {"run_key": baseline_key(plan.base), "setting": base_row}
    rows.append({**base_row, **_one(out / BASELINE, step, None, plan.base.model_name_or_path, plan, config, record)})
    _log_row(log, rows[-1], rows[0])
    for i, s in enumerate(plan.settings, start=2):
        info = {"name": s.name, "label": s.label, "terms": list(s.terms), "combine": s.combine, "spec": s.spec}
        runs = []
        for name, seed in plan.runs(s):
            folder, step = out / name, plan.steps[name]
            what = {"train": "training + evaluating", "eval": "evaluating (trained earlier)", "reuse": "reused"}[step]
            log(f"[{i}/{total}] {s.label}: {' + '.join(s.terms)}, {s.combine}"
                + ("" if seed is None else f", seed {seed}") + f": {what}")
            record = {"run_key": run_key(plan, name), "setting": info, "seed": seed,
                      "command": shlex.join(["janus-rig", "grpo", *plan.argvs[name]])}
            train = partial(run_grpo, plan.configs[name], keep=(RUN_FILE,))  # the folder holds our record already
            runs.append({"name": name, "seed": seed, **_one(folder, step, train, folder, plan, config, record)})
            _log_row(log, runs[-1], rows[0])
        rows.append({**info, **(runs[0] if len(runs) == 1 else mean_row(runs)), "runs": runs})
        rows[-1]["name"] = s.name
    return write_outputs(config, plan, rows)


def _log_row(log, row: dict, baseline: dict) -> None:
    if row["error"]:
        log(f"    failed: {row['error']}")
        return
    overall = (row.get("metrics") or {}).get("overall")
    base = (baseline.get("metrics") or {}).get("overall")
    delta = f" (Δ {overall - base:+.4f})" if row is not baseline and overall is not None and base is not None else ""
    steps = f"{row['steps']} steps, " if row.get("steps") is not None else ""
    log(f"    {steps}overall {format_value(overall)}{delta}")


def write_outputs(config: AblationConfig, plan: Plan, rows: list[dict]) -> dict:
    """ablation.md / .csv / .json, then the eval report over the evaluated folders."""
    out = Path(config.out)
    table = build_table(rows, config.eval_tags)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    recipe = _config_part(config.grpo_argv)
    seconds = config.budget_s if config.budget_s is not None else plan.base.max_train_seconds
    budget = f"{seconds:g} s" if seconds else "no time limit"
    notes = [f"GRPO from `{plan.base.model_name_or_path}`, recipe `{recipe[1] if recipe else '(flags only)'}`, "
             f"training budget {budget} per run (max_steps {plan.base.max_steps}), {created}.",
             f"Bench: {len(plan.entries)} prompts of {', '.join(config.eval_tags)} from `{plan.metadata_file}`, "
             f"{config.eval_samples} samples each, seed {config.eval_seed}, ShapeWorld oracle; overall = mean of the "
             "tag accuracies; Δ overall = minus the starting model's.",
             "R_PR = (R_sem + R_spa) / 2; product: R_PI x R_PR x R_RI (GoT-R1), sum: their mean."]
    if config.seeds:
        notes.append(f"Each setting trained with seeds {', '.join(map(str, config.seeds))}: its figures are the mean "
                     "over them, (min..max) after each; steps and seconds are means.")
    paths = {"md": out / TABLE_MD, "csv": out / TABLE_CSV, "json": out / TABLE_JSON}
    paths["md"].write_text(render_markdown(table, "Reward ablation (GoT-R1 Table 3)", notes), encoding="utf-8")
    paths["csv"].write_text(render_csv(table), encoding="utf-8")
    evaluated = [out / run["name"] for r in table["rows"] for run in r.get("runs") or [r]
                 if run.get("metrics") is not None]
    report_error = None
    if evaluated:
        try:
            paths.update({f"report_{k}": v for k, v in write_report(evaluated, out / REPORT_DIR).items()})
        except (OSError, ValueError) as err:  # the tables above are the result; the report is a view of them
            report_error = f"{type(err).__name__}: {err}"
    document = {"created": created, "grpo_argv": config.grpo_argv, "budget_s": config.budget_s, "seeds": config.seeds,
                "eval": {**plan.eval_key, "prompts": len(plan.entries)}, "report_error": report_error, **table}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    return {"table": table, "paths": paths, "report_error": report_error}
