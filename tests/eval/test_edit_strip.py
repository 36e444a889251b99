"""The first check's flags against the oracle, and the strip of edits, from `eval geneval --reflect`'s records."""

from __future__ import annotations

from PIL import Image

from janus_rig.eval.edit_strip import EDIT_STRIP, edit_strip, flag_metrics


def _trace(out, name, decisions, statuses, correct, colours):
    """A sample record as run_geneval writes it: round images under <name>/rounds/, per-round oracle verdicts."""
    folder = out / name
    (folder / "rounds").mkdir(parents=True)
    paths = []
    for j, colour in enumerate(colours):
        Image.new("RGB", (32, 32), colour).save(folder / "rounds" / f"0000_r{j}.png")
        paths.append(f"rounds/0000_r{j}.png")
    rounds = [{"decision": d, "status": s, "edit_boxes": [{"name": "red circle", "box": [0, 0, 500, 500]}]}
              for d, s in zip(decisions, statuses)]
    return {"image": f"{name}/samples/0000.png", "prompt": f"prompt {name}", "round_images": paths, "reflect": rounds,
            "scores": {f"correct@r{j}": c for j, c in enumerate(correct)}}


def test_flag_metrics_split_first_decisions_by_the_oracle(tmp_path):
    traces = [
        _trace(tmp_path, "a", ["edit", "keep"], ["edited", "keep"], [False, True, True], ["red"] * 3),  # wrong, flagged
        _trace(tmp_path, "b", ["keep"], ["keep"], [False, False, False], ["red"] * 3),  # wrong, not flagged
        _trace(tmp_path, "c", ["edit", "edit"], ["edited", "edited"], [True, False, True], ["red"] * 3),  # right, flagged
        _trace(tmp_path, "d", ["keep"], ["keep"], [True, True, True], ["red"] * 3),  # right, kept
        {"image": "e/samples/0000.png", "scores": {"correct": True}},  # not a reflecting sample: left out
    ]
    assert flag_metrics(traces) == {"flagged_right@r0": 0.5, "flagged_wrong@r0": 0.5, "edited": 0.5}
    assert flag_metrics(traces[-1:]) == {}


def test_edit_strip_shows_fixes_first(tmp_path):
    traces = [
        _trace(tmp_path, "a", ["keep"], ["keep"], [True, True], ["white", "white"]),  # no edit: not shown
        _trace(tmp_path, "b", ["edit", "keep"], ["edited", "keep"], [True, False, False], ["blue", "green", "green"]),
        _trace(tmp_path, "c", ["edit", "keep"], ["edited", "keep"], [False, True, True], ["yellow", "black", "black"]),
    ]
    path = edit_strip(tmp_path, traces, tile=64)
    assert path == tmp_path / EDIT_STRIP
    strip = Image.open(path).convert("RGB")
    assert strip.size == (3 * 64, 2 * (64 + 16))  # two edited samples, three pictures each
    assert strip.getpixel((32, 32)) == (255, 255, 0)  # the fix (c) comes first: before ...
    assert strip.getpixel((2 * 64 + 32, 32)) == (0, 0, 0)  # ... and after
    assert strip.getpixel((1, 1)) == (200, 40, 40) and strip.getpixel((2 * 64 + 1, 1)) == (40, 150, 60)  # wrong, right
    assert strip.getpixel((32, 80 + 32)) == (0, 0, 255)  # then b
    assert edit_strip(tmp_path, traces[:1]) is None
