"""Evaluation: benchmark folder layouts and scorers (GenEval's layout, scored by the exact ShapeWorld oracle)."""

from janus_rig.eval.geneval_layout import (
    prompt_dir,
    prompt_dirs,
    read_metadata,
    sample_path,
    sample_paths,
    write_prompt_dir,
)
from janus_rig.eval.score import ScoreSummary, score_geneval_dir

__all__ = [
    "ScoreSummary",
    "prompt_dir",
    "prompt_dirs",
    "read_metadata",
    "sample_path",
    "sample_paths",
    "score_geneval_dir",
    "write_prompt_dir",
]
