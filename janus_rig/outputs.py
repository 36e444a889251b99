"""Output folders and files: no command writes over an earlier run without being told to.

Every command that writes a folder calls `prepare_out_dir` once its cheap input checks passed and before a model
loads: a missing or empty folder is fine, a non-empty one is refused in one line that names the folder and the flag
that allows it. The folder is not created here but by the command's first write, so a command that fails before
writing (a missing model) leaves nothing behind. With the flag (`--overwrite`; the trainers'
`--overwrite_output_dir`) the folder is EMPTIED first, not written over: replacing files one by one would keep the
earlier run's files that the new run does not rewrite (`generate --num 2`, then `--num 1`, left `0000_01.png` next
to a one-line traces.jsonl), and a mixed folder is worse than either run.

Emptying is refused, flag or not, where a mistyped path would lose more than an earlier output: the current directory
or one of its parents, the home directory, a filesystem root, a git checkout, and a model directory janus-rig did not
write (config.json next to weights but no janus_rig.json: a downloaded checkpoint). A folder that is one of the
command's inputs, or holds one, is refused as an output whatever the flag says.

Commands that write into a folder they share with other things (`eval report --out RUN`) name their own entries
(`only=`): only those count, and only those are removed. Commands that write one file (`reward --out`, `convert
prompts --out`, `eval score --out`) call `prepare_out_file`: an existing file is refused without the flag, and
replaced with it.

    out = prepare_out_dir(args.out, args.overwrite, inputs={"--model": args.model})
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from janus_rig.model.policy import MANIFEST  # what every model janus-rig saves carries

WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.pt", "*.pth", "*.ckpt")
SHOWN = 3  # entries named in a refusal


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str = "--out", text: str | None = None) -> None:
    """The `--overwrite` flag, with the same help text in every command (`text` replaces it)."""
    parser.add_argument("--overwrite", action="store_true",
                        help=text or f"write into a non-empty {what}: its contents are deleted first (without it a "
                        f"used {what} is refused)")


def overlap(out: str | Path, other: str | Path) -> str | None:
    """How folder `out` relates to path `other`: "is", "holds" (other lies inside it), "is inside", or None."""
    a, b = Path(out).resolve(), Path(other).resolve()
    if a == b:
        return "is"
    if b.is_relative_to(a):
        return "holds"
    if a.is_relative_to(b):
        return "is inside"
    return None


def prepare_out_dir(path: str | Path, overwrite: bool, *, what: str = "--out", flag: str = "--overwrite",
                    inputs: Mapping[str, str | Path | list | None] | None = None, only: Iterable[str] | None = None,
                    keep: Iterable[str] = (), hint: str = "") -> Path:
    """Check that `path` may take a fresh output, emptying it when `overwrite` (module docstring); -> the path.

    inputs: {"--model": path, "INPUT": [paths], ...}, what the command reads; `path` may not be one of them or hold
        one (None values are skipped).
    only: the entry names this command writes into a folder shared with other things (None: the whole folder).
    keep: entry names that may already be there and stay (an orchestrator's own record of the run).
    hint: another way out, put in the refusal (", resume with --resume_from_checkpoint true").
    ValueError (one line, naming the folder and `flag`) when the folder may not be used.
    """
    out = Path(path)
    for label, given in (inputs or {}).items():
        for other in given if isinstance(given, (list, tuple)) else [given]:
            relation = other and overlap(out, other)
            if relation in ("is", "holds"):
                raise ValueError(f"{what} {out} {relation} the {label} {other}: write the output somewhere else")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{what} {out} exists and is not a folder")
    used = _used(out, only, set(keep))
    if used and not overwrite:
        if only is None:
            raise ValueError(f"{what} {out} is not empty (it holds {_names(used)}): pick a new folder{hint}, or "
                             f"add {flag} to delete its contents first")
        raise ValueError(f"{what} {out} holds an earlier output ({_names(used)}): pick a new folder{hint}, or add "
                         f"{flag} to delete those first")
    if used:
        if only is None:
            _check_safe_to_empty(out, what)
        for entry in used:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return out


def prepare_out_file(path: str | Path, overwrite: bool, *, what: str = "--out", flag: str = "--overwrite") -> Path:
    """A one-file output: refused when it is a folder, or exists and not `overwrite` (the command then writes it
    anew). -> the path."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{what} {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise ValueError(f"{what} {out} exists: pick a new file name, or add {flag} to replace it")
    return out


def _used(out: Path, only: Iterable[str] | None, keep: set[str]) -> list[Path]:
    if not out.is_dir():
        return []
    if only is not None:
        return [out / name for name in only if (out / name).exists() or (out / name).is_symlink()]
    return sorted(p for p in out.iterdir() if p.name not in keep)


def _names(entries: list[Path]) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:SHOWN]]
    more = len(entries) - SHOWN
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _check_safe_to_empty(out: Path, what: str) -> None:
    """Folders a mistyped path must never lose, whatever the flag says (ValueError naming why)."""
    resolved = out.resolve()
    reason = None
    if Path.cwd().resolve().is_relative_to(resolved):
        reason = "the current directory or one of its parents"
    elif resolved == Path.home().resolve() or resolved.parent == resolved:
        reason = "the home directory or a filesystem root"
    elif (out / ".git").exists():
        reason = "a git checkout"
    elif (out / "config.json").is_file() and not (out / MANIFEST).is_file() and any(
            next(out.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        reason = f"a model directory janus-rig did not write (config.json and weights, no {MANIFEST})"
    if reason:
        raise ValueError(f"{what} {out} is {reason}: janus-rig never empties it; pick a new folder, or delete its "
                         "contents yourself")
