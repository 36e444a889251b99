"""The quickstart's headline lines: what each training stage and the reflection loop changed, per tag, with the steps
each stage took (a slow machine takes the same steps; the lines say how many ran).

    python scripts/stage_gains.py runs/quickstart
    # GRPO (120 steps): overall 64.1 -> 71.3 % (+7.2); position 70.3 -> 89.1 (+18.8); complex ...
    # ...

Reads RUN/eval/<stage>/heldout/summary.json (every tag, one sample per prompt), RUN/eval/<stage>/loop/summary.json
(position + complex after 0, 1, 2 rounds of the model's own loop) and the trainers' summaries (RUN/grpo/
grpo_summary.json, RUN/reflect/reflect_grpo_summary.json); prints one line per comparison, for `eval report --note`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from janus_rig.eval.summary import read_summary

STAGES = (("sft", "SFT", None), ("grpo", "GRPO", "grpo/grpo_summary.json"),
          ("reflect", "Reflection-GRPO", "reflect/reflect_grpo_summary.json"))
SPATIAL = ("position", "complex")


def _metrics(path: Path) -> dict | None:
    """A summary's metrics (janus_rig.eval.summary.read_summary), or None where that stage was not evaluated."""
    return read_summary(path)["metrics"] if path.is_file() else None


def _steps(path: Path) -> str:
    try:
        return f"{int(json.loads(path.read_text(encoding='utf-8'))['steps'])} steps"
    except (OSError, ValueError, KeyError, TypeError):
        return "steps unknown"


def _change(before: dict, after: dict, names) -> str:
    parts = []
    for name in names:
        if name in before and name in after:
            a, b = 100 * before[name], 100 * after[name]
            parts.append(f"{name} {a:.1f} -> {b:.1f} ({b - a:+.1f})")
    return "; ".join(parts)


def _spatial(metrics: dict, suffix: str = "") -> float | None:
    values = [metrics.get(f"{tag}{suffix}") for tag in SPATIAL]
    return None if None in values else 100 * sum(values) / len(values)


def gain_lines(run: str | Path) -> list[str]:
    run = Path(run)
    lines, previous = [], None
    for stage, label, train_summary in STAGES:
        heldout = _metrics(run / "eval" / stage / "heldout" / "summary.json")
        if heldout is None:
            continue
        if previous is not None:
            tags = ["overall", *sorted(k for k in heldout if k != "overall" and "@" not in k)]
            lines.append(f"{label} ({_steps(run / train_summary)}), held-out, % right: "
                         + _change(previous, heldout, tags))
        previous = heldout
    loops = {stage: _metrics(run / "eval" / stage / "loop" / "summary.json") for stage, _, _ in STAGES}
    for stage, label, _ in STAGES:
        m = loops[stage]
        if m is None or _spatial(m, "@r0") is None:
            continue
        rounds = sorted(int(k.rpartition("@r")[2]) for k in m if k.startswith("overall@r"))
        lines.append(f"{label} + loop, mean of position and complex after " + ", ".join(
            f"{j} rounds {_spatial(m, f'@r{j}'):.1f}" for j in rounds))
    grpo, last = loops.get("grpo"), loops.get("reflect")
    if grpo and last and _spatial(grpo, "@r0") is not None:
        k = max(int(key.rpartition("@r")[2]) for key in last if key.startswith("overall@r"))
        a, b = _spatial(grpo, "@r0"), _spatial(last, f"@r{k}")
        lines.append(f"The final model's {k}-round loop against the GRPO model alone (mean of position and complex): "
                     f"{a:.1f} -> {b:.1f} ({b - a:+.1f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the quickstart's run folder")
    args = parser.parse_args(argv)
    for line in gain_lines(args.run):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
