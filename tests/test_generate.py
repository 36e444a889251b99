"""`janus-rig generate` on the tiny random-init policy: files, traces, gallery, seeding, input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import janus_rig.generate as gen
from janus_rig.cli import main
from janus_rig.gallery import render_chain, write_gallery
from janus_rig.rollout.config import RolloutConfig

PROMPTS = ["a red circle left of a blue square", "two yellow triangles and a circle right of the square"]
FAST = ["--max-chain-tokens", "4", "--cfg", "3", "--display-size", "64"]  # short chains keep CPU runs quick
TRACE_KEYS = {"prompt", "prompt_index", "sample", "seed", "chain", "objects", "problems", "truncated", "image",
              "overlay", "timings"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def read_traces(out):
    return [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]


def run_cli(model, out, *source, num=2, seed=0, extra=()):
    code = main(["generate", "--model", str(model), *source, "--num", str(num), "--seed", str(seed),
                 "--out", str(out), "--batch-size", "1", *FAST, *extra])
    assert code == 0
    return read_traces(out)


@pytest.fixture(scope="module")
def txt_run(tiny_policy_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    prompts = root / "prompts.txt"
    prompts.write_text(f"# ShapeWorld prompts\n{PROMPTS[0]}\n\n   \n{PROMPTS[1]}\n")
    out = root / "out"
    return out, run_cli(tiny_policy_dir, out, "--prompts", str(prompts)), prompts


def check_outputs(out, traces, prompts, num):
    assert len(traces) == len(prompts) * num
    expected = [(p, k) for p in range(len(prompts)) for k in range(num)]
    assert [(t["prompt_index"], t["sample"]) for t in traces] == expected
    page = (out / "index.html").read_text()
    for t in traces:
        assert set(t) == TRACE_KEYS and t["prompt"] == prompts[t["prompt_index"]]
        assert t["image"] == f"images/{t['prompt_index']:04d}_{t['sample']:02d}.png"
        assert Image.open(out / t["image"]).size == (64, 64)  # native size (the tiny preset)
        assert Image.open(out / t["overlay"]).size == (64, 64)  # --display-size
        assert set(t["timings"]) == {"text_s", "image_s", "decode_s"}
        assert f'src="{t["image"]}"' in page and f'src="{t["overlay"]}"' in page
        for p in t["problems"]:
            assert set(p) == {"kind", "position", "message"}
        for o in t["objects"]:
            assert set(o) == {"name", "box"}
    assert "http" not in page and "<script" not in page  # self-contained


def test_prompts_txt(txt_run):
    out, traces, _ = txt_run
    check_outputs(out, traces, PROMPTS, num=2)
    assert [t["seed"] for t in traces] == [0, 0, 1, 1]  # batch b: seed + b


def test_prompt_and_jsonl(tiny_policy_dir, tmp_path):
    traces = run_cli(tiny_policy_dir, tmp_path / "one", "--prompt", PROMPTS[1], num=3)
    check_outputs(tmp_path / "one", traces, PROMPTS[1:], num=3)
    metadata = tmp_path / "evaluation_metadata.jsonl"  # GenEval's metadata lines carry more than the prompt
    metadata.write_text("".join(json.dumps({"tag": "position", "include": [{"class": "circle", "count": 1}],
                                            "prompt": p}) + "\n" for p in PROMPTS) + "\n")
    traces = run_cli(tiny_policy_dir, tmp_path / "geneval", "--prompts", str(metadata), num=1, extra=["--no-chain"])
    check_outputs(tmp_path / "geneval", traces, PROMPTS, num=1)
    assert all(t["chain"] == "" and not t["problems"] for t in traces)


def test_same_seed_same_outputs(txt_run, tiny_policy_dir, tmp_path):
    out, traces, prompts = txt_run
    again = run_cli(tiny_policy_dir, tmp_path / "again", "--prompts", str(prompts))
    strip = lambda ts: [{k: v for k, v in t.items() if k != "timings"} for t in ts]  # noqa: E731
    assert strip(again) == strip(traces)
    for t in traces:
        assert (out / t["image"]).read_bytes() == (tmp_path / "again" / t["image"]).read_bytes()
    # Prompt 0 alone in its batch, as in txt_run, but another seed: other draws.
    other = run_cli(tiny_policy_dir, tmp_path / "other", "--prompt", PROMPTS[0], seed=5)
    assert (tmp_path / "other" / other[0]["image"]).read_bytes() != (out / traces[0]["image"]).read_bytes()


def test_malformed_chain_still_traced(tiny_policy, tmp_path, monkeypatch):
    # A random model writes garbage; these stand in for it so the checks do not depend on the draw.
    chains = ["<|obj_start|>cat<|box_start|>(1,2),(3 <|obj_end|>",
              "a <b>bold</b> & <|obj_start|>dog<|obj_end|> <|box_start|>(100,100),(700,800)<|box_end|> sits"]
    real = gen.sample

    def fake(*args, **kwargs):
        rollout = real(*args, **kwargs)
        rollout.chains = list(chains)
        return rollout

    monkeypatch.setattr(gen, "sample", fake)
    config = RolloutConfig(group_size=2, max_chain_tokens=2)
    traces = gen.generate(tiny_policy, PROMPTS[:1], tmp_path, config, seed=0, display_size=128, progress=False)
    bad, good = traces
    assert bad["objects"] == [] and {p["kind"] for p in bad["problems"]} >= {"unclosed_span"}
    native = Image.open(tmp_path / bad["image"])
    upscaled = native.resize((128, 128), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(Image.open(tmp_path / bad["overlay"])), np.asarray(upscaled))  # no boxes
    assert good["objects"] == [{"name": "dog", "box": [100, 100, 700, 800]}] and good["problems"] == []
    overlay = np.asarray(Image.open(tmp_path / good["overlay"]))
    assert not np.array_equal(overlay, np.asarray(Image.open(tmp_path / good["image"]).resize((128, 128), 0)))
    page = write_gallery(tmp_path, traces, {"model": "<tiny>"}).read_text()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; " in page and "<b>bold</b>" not in page and "&lt;tiny&gt;" in page


def test_render_chain():
    html = render_chain("A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> x<y "
                        "<|obj_end|><|obj_start|> <|obj_end|>")
    assert '<b style="color:rgb(230,25,75)">red circle</b>' in html  # PALETTE[0], the colour of its overlay box
    assert "<code>(31,47),(312,328)</code>" in html and "x&lt;y" in html
    assert '<span class="tok">&lt;|obj_end|&gt;</span>' in html  # stray token kept visible, escaped
    assert '<span class="tok">&lt;|obj_start|&gt; &lt;|obj_end|&gt;</span>' in html  # empty name: not an object
    assert "(no chain)" in render_chain("")


def test_bad_prompt_lines_are_named(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a red circle"}\n{"prompt": "a blue\n{"tag": "colors"}\n\n["x"]\n')
    code = main(["generate", "--model", str(tmp_path / "unused"), "--prompts", str(prompts), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{prompts}:2: not JSON" in err and f"{prompts}:3: no \"prompt\"" in err and f"{prompts}:5:" in err


def test_missing_model_dir_is_one_line(tmp_path, capsys):
    code = main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "a circle", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err and "Traceback" not in err


def test_a_used_folder_is_refused_and_overwrite_leaves_no_stale_file(tiny_policy_dir, tmp_path, capsys):
    """`--num 2` then `--num 1` into one folder once left a one-line traces.jsonl next to the first run's
    0000_01.png: now the second run is refused in one line, and with --overwrite the folder holds only its files."""
    out = tmp_path / "G"
    first = run_cli(tiny_policy_dir, out, "--prompt", PROMPTS[0], num=2)
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert len(first) == 2 and (out / "images" / "0000_01.png").is_file()
    capsys.readouterr()

    code = main(["generate", "--model", str(tiny_policy_dir), "--prompt", PROMPTS[0], "--num", "1",
                 "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--out {out} is not empty" in err and "--overwrite" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files and len(read_traces(out)) == 2  # untouched

    second = run_cli(tiny_policy_dir, out, "--prompt", PROMPTS[0], num=1, extra=["--overwrite"])
    assert len(second) == 1
    assert not (out / "images" / "0000_01.png").exists() and not (out / "overlays" / "0000_01.png").exists()
    written = {second[0]["image"], second[0]["overlay"], "traces.jsonl", "index.html"}
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == written


def test_cfg_defaults_to_the_guidance_the_model_records(tiny_policy, tmp_path, monkeypatch, capsys):
    """No --cfg: generate (and every command that samples) uses the model's generation_config guidance_scale; a
    given --cfg wins; a corrupt record is a one-line error naming the file."""
    from janus_rig.model.policy import DEFAULT_GUIDANCE, JanusPolicy, read_guidance

    tiny_policy.guidance = 3.0
    try:
        tiny_policy.save(tmp_path / "m")
    finally:
        tiny_policy.guidance = DEFAULT_GUIDANCE
    assert json.loads((tmp_path / "m" / "generation_config.json").read_text())["guidance_scale"] == 3.0
    assert read_guidance(tmp_path / "m") == JanusPolicy.load(tmp_path / "m").guidance == 3.0
    assert read_guidance(tmp_path / "nowhere") == DEFAULT_GUIDANCE  # loading it says what is wrong
    seen = []
    real = gen.generate
    monkeypatch.setattr(gen, "generate", lambda policy, prompts, out, config, **kw: seen.append(config.cfg_weight)
                        or real(policy, prompts, out, config, **kw))
    common = ["generate", "--model", str(tmp_path / "m"), "--prompt", "a red circle", "--num", "1",
              "--max-chain-tokens", "4"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--cfg", "1.5", "--out", str(tmp_path / "b")]) == 0
    assert seen == [3.0, 1.5]
    assert "CFG 3," in (tmp_path / "a" / "index.html").read_text()
    (tmp_path / "m" / "generation_config.json").write_text('{"guidance_scale": "strong"}')
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "generation_config.json: guidance_scale must be a number >= 0" in err and len(err.splitlines()) == 1
