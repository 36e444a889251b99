"""A self-contained HTML gallery of samples: image, overlay with the planned boxes, and the chain that planned them.

One page, inline CSS, no scripts, images by relative path, so the output folder can be copied or opened from disk.
Every page that shows samples with chains (generate, GRPO samples, eval reports) writes it with `write_gallery`.
A trace is a dict; the gallery reads these keys (only "image" is required):

    {"image": "images/0000_00.png",          # path relative to out_dir (absolute paths are made relative)
     "overlay": "overlays/0000_00.png",      # the image with the chain's boxes drawn (draw_boxes)
     "prompt": "a red circle left of a blue square", "prompt_index": 0, "sample": 0,
     "chain": "A <|obj_start|>red circle<|obj_end|> <|box_start|>(31,47),(312,328)<|box_end|> ...",
     "problems": [{"kind": "missing_box", "position": 12, "message": "..."}], "truncated": false,
     "scores": {"R_spa": 0.8, "correct": true},  # optional: anything per sample worth a glance (rewards, verdicts)
     "label": "round 1",                       # optional: the card's caption (default "sample N" or the file name)
     "more_images": [{"src": "edited/0000_1.png", "alt": "edited"}],   # optional: shown after the overlay
     "reflection": "<|reflect_start|>...<|reflect_end|>", "edit": "<|edit_start|>...<|edit_end|>"}  # optional

Samples are grouped by prompt (by "prompt_index" when present), in order of first appearance.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from urllib.parse import quote

from janus_rig.chain import BOX_END, BOX_START, CHAIN_TOKENS, OBJ_END, OBJ_START, PALETTE
from janus_rig.chain.roles import DECISION, EDIT_BOXES, ROLE_TOKENS, VERDICT

GALLERY_FILE = "index.html"
_TOKEN_RE = re.compile("|".join(re.escape(t) for t in CHAIN_TOKENS))
_ROLE_RE = re.compile("(" + "|".join(re.escape(t) for t in ROLE_TOKENS) + ")")

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .4em; }
table.header { border-collapse: collapse; margin-bottom: 1.5em; }
table.header td { padding: 1px 12px 1px 0; vertical-align: top; }
table.header td:first-child { color: #666; }
section { margin-bottom: 2em; }
h2 { font-size: 1.05em; font-weight: 600; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h2 .index { color: #888; font-weight: 400; margin-right: .5em; }
.grid { display: flex; flex-wrap: wrap; gap: 14px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 8px; width: min-content; }
.images { display: flex; gap: 6px; }
.images img { image-rendering: pixelated; display: block; background: #eee; }
.meta { color: #666; font-size: .9em; margin: 4px 0; }
.badge { display: inline-block; padding: 0 5px; border-radius: 3px; background: #eee; margin-left: 4px; }
.badge.warn { background: #fde2c8; color: #8a4200; }
.chain { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 12em; overflow-y: auto; font-size: .92em; }
.chain b { font-weight: 700; }
.chain code, .scores code { font: .9em ui-monospace, monospace; background: #f1f1f1; padding: 0 2px; }
.chain .tok { font: .8em ui-monospace, monospace; color: #b00; }
.empty { color: #999; font-style: italic; }
details { font-size: .85em; color: #8a4200; margin-top: 4px; }
details ul { margin: 2px 0; padding-left: 1.2em; }
.role { font: .75em ui-monospace, monospace; color: #555; background: #eef; border-radius: 3px; padding: 0 3px; }
.yes { color: #1a7f37; } .no { color: #b00; font-weight: 600; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def render_chain(chain: str) -> str:
    """HTML of a chain: object names bold in their box colour (the colour draw_boxes gives them), box coordinates
    in monospace, chain tokens that do not fit the format kept visible in red; every text piece escaped."""
    if not chain:
        return '<span class="empty">(no chain)</span>'
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(chain)]
    out, cursor, i, objects = [], 0, 0, 0
    while i < len(tokens):
        start, end, token = tokens[i]
        out.append(_esc(chain[cursor:start]))
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        closer = {OBJ_START: OBJ_END, BOX_START: BOX_END}.get(token)
        if closer and following and following[2] == closer:
            inner = chain[end : following[0]]
            if token == BOX_START:
                out.append(f"<code>{_esc(inner)}</code>")
            elif inner.strip():  # parse_chain counts exactly these spans as objects, in this order
                r, g, b = PALETTE[objects % len(PALETTE)]
                out.append(f'<b style="color:rgb({r},{g},{b})">{_esc(inner)}</b>')
                objects += 1
            else:
                out.append(f'<span class="tok">{_esc(token + inner + closer)}</span>')
            cursor, i = following[1], i + 2
        else:
            out.append(f'<span class="tok">{_esc(token)}</span>')
            cursor, i = end, i + 1
    out.append(_esc(chain[cursor:]))
    return "".join(out)


def render_roles(text: str) -> str:
    """HTML of a reflection or an edit (janus_rig.chain.roles): each role token as a small label (verdicts,
    the decision and the edit boxes on their own line), the text between them as `render_chain` shows chains
    (so seen objects and edit boxes get the colours draw_boxes gives them), verdicts green (yes) or red (no)."""
    if not text:
        return '<span class="empty">(nothing written)</span>'
    out, previous = [], None
    for piece in _ROLE_RE.split(text):
        if piece in ROLE_TOKENS:
            out.append(("<br>" if piece in (VERDICT, DECISION, EDIT_BOXES) else "")
                       + f'<span class="role">{_esc(piece.strip("<|>"))}</span> ')
            previous = piece
            continue
        if not piece.strip():
            continue
        html_piece = render_chain(piece.strip())
        value = piece.strip().rpartition(":")[2].strip().lower()
        if previous == VERDICT and value in ("yes", "no"):
            html_piece = f'<span class="{value}">{html_piece}</span>'
        out.append(html_piece)
    return "".join(out)


def _src(path, out_dir: Path) -> str:
    path = Path(path)
    if path.is_absolute():
        path = Path(os.path.relpath(path, out_dir))
    return _esc(quote(path.as_posix()))


def _card(trace: dict, out_dir: Path, display_size: int) -> str:
    size = f'width="{display_size}" height="{display_size}"'
    images = [f'<img src="{_src(trace["image"], out_dir)}" {size} loading="lazy" alt="sample">']
    if trace.get("overlay"):
        images.append(f'<img src="{_src(trace["overlay"], out_dir)}" {size} loading="lazy" alt="planned boxes">')
    for more in trace.get("more_images") or []:
        alt = _esc(more.get("alt", "image"))
        images.append(f'<img src="{_src(more["src"], out_dir)}" {size} loading="lazy" alt="{alt}" title="{alt}">')
    problems = trace.get("problems") or []
    badges = []
    if trace.get("truncated"):
        badges.append('<span class="badge warn">truncated</span>')
    if problems:
        badges.append(f'<span class="badge warn">{len(problems)} problem{"s" * (len(problems) != 1)}</span>')
    label = f"sample {_esc(trace['sample'])}" if "sample" in trace else _esc(Path(str(trace["image"])).name)
    label = _esc(trace["label"]) if trace.get("label") else label
    parts = [f'<div class="images">{"".join(images)}</div>', f'<div class="meta">{label}{"".join(badges)}</div>']
    if trace.get("scores"):
        scores = " ".join(f"{_esc(k)} <code>{_esc(_fmt(v))}</code>" for k, v in trace["scores"].items())
        parts.append(f'<div class="meta scores">{scores}</div>')
    if "chain" in trace:
        parts.append(f'<div class="chain">{render_chain(trace["chain"] or "")}</div>')
    for role in ("reflection", "edit"):
        if trace.get(role) is not None:
            parts.append(f'<div class="meta">{role}</div><div class="chain">{render_roles(trace[role])}</div>')
    if problems:
        items = "".join(f"<li><b>{_esc(p.get('kind'))}</b> at {_esc(p.get('position'))}: {_esc(p.get('message'))}</li>"
                        for p in problems)
        parts.append(f"<details><summary>parse problems</summary><ul>{items}</ul></details>")
    return f'<div class="card">{"".join(parts)}</div>'


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_gallery(out_dir: str | Path, traces: list[dict], header: dict, *, title: str = "janus-rig samples",
                  display_size: int = 256, filename: str = GALLERY_FILE) -> Path:
    """Write out_dir/filename showing every trace (see the module docstring); `header` rows (setting -> value)
    are listed on top. Images are shown at display_size CSS pixels, upscaled without smoothing. -> the page's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict = {}
    for trace in traces:
        key = trace.get("prompt_index", trace.get("prompt"))
        groups.setdefault(key, []).append(trace)
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(_fmt(v))}</td></tr>" for k, v in header.items())
    sections = []
    for key, group in groups.items():
        index = f'<span class="index">#{_esc(key)}</span>' if "prompt_index" in group[0] else ""
        prompt = _esc(group[0].get("prompt", ""))
        cards = "".join(_card(t, out, display_size) for t in group)
        sections.append(f'<section><h2>{index}{prompt}</h2><div class="grid">{cards}</div></section>')
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body><h1>{_esc(title)}</h1>"
        f'<table class="header">{rows}</table>\n' + "\n".join(sections) + "\n</body></html>\n"
    )
    path = out / filename
    path.write_text(page, encoding="utf-8")
    return path
