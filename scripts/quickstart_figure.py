"""The quickstart's picture (README, report): accuracy per tag for each stage on the held-out prompts, and the mean
of position and complex after 0, 1 and 2 rounds of each stage's reflection loop, above the final model's edit strip.

    python scripts/quickstart_figure.py runs/quickstart --out runs/quickstart/quickstart.png

Reads RUN/eval/<stage>/heldout/summary.json, RUN/eval/<stage>/loop/summary.json and
RUN/eval/reflect/loop/edit_strip.png (what `make quickstart` writes); a stage without its evaluation is left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from janus_rig.eval.summary import read_summary

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

STAGES = (("sft", "SFT"), ("grpo", "GRPO"), ("reflect", "Reflection-GRPO"))
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "complex")
SPATIAL = ("position", "complex")


def _metrics(path: Path) -> dict | None:
    """A summary's metrics (janus_rig.eval.summary.read_summary), or None where that stage was not evaluated."""
    return read_summary(path)["metrics"] if path.is_file() else None


def draw(run: str | Path, out: str | Path) -> Path:
    run, out = Path(run), Path(out)
    heldout = {s: _metrics(run / "eval" / s / "heldout" / "summary.json") for s, _ in STAGES}
    loops = {s: _metrics(run / "eval" / s / "loop" / "summary.json") for s, _ in STAGES}
    stages = [(s, label) for s, label in STAGES if heldout[s]]
    if not stages:
        raise ValueError(f"{run}: no stage has eval/<stage>/heldout/summary.json (run the quickstart first)")
    fig, (bars, rounds) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    tags = [t for t in (*TAGS, "overall") if any(t in heldout[s] for s, _ in stages)]
    width = 0.8 / len(stages)
    for k, (s, label) in enumerate(stages):
        values = [100 * heldout[s].get(t, 0.0) for t in tags]
        bars.bar([i + (k - (len(stages) - 1) / 2) * width for i in range(len(tags))], values, width, label=label)
    bars.set_xticks(range(len(tags)), [t.replace("_", "\n") for t in tags], fontsize=8)
    bars.set_ylabel("% right (held-out prompts, oracle)")
    bars.set_ylim(0, 100)
    bars.legend(fontsize=8, loc="lower left")
    bars.set_title("each stage, one sample per prompt", fontsize=10)
    for s, label in stages:
        m = loops[s]
        if not m:
            continue
        ks = sorted(int(key.rpartition("@r")[2]) for key in m if key.startswith("overall@r"))
        ys = [100 * sum(m.get(f"{t}@r{j}", 0.0) for t in SPATIAL) / len(SPATIAL) for j in ks]
        rounds.plot(ks, ys, marker="o", label=label)
    rounds.set_xlabel("reflection rounds")
    rounds.set_ylabel("% right, mean of position and complex")
    rounds.set_title("the model's own loop", fontsize=10)
    rounds.set_xticks([0, 1, 2])
    rounds.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    strip = run / "eval" / "reflect" / "loop" / "edit_strip.png"
    if strip.is_file():  # below the charts: what the final model's loop changed
        with Image.open(out) as charts, Image.open(strip) as edits:
            charts, edits = charts.convert("RGB"), edits.convert("RGB")
            scale = min(1.0, 0.5 * charts.width / edits.width)
            edits = edits.resize((int(edits.width * scale), int(edits.height * scale)), Image.Resampling.NEAREST)
            canvas = Image.new("RGB", (charts.width, charts.height + edits.height + 10), (255, 255, 255))
            canvas.paste(charts, (0, 0))
            canvas.paste(edits, ((charts.width - edits.width) // 2, charts.height + 10))
            canvas.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the quickstart's run folder")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        print(draw(args.run, args.out))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
