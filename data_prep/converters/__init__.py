"""Dataset converters: outside datasets -> records the rest of janus-rig reads (see docs/converters.md).

    got.py          GoT rows (LAHR-GoT, JourneyDB-GoT, ...) -> SFT records directory (chains, images, world.json)
    laion_sg.py     LAION-SG rows -> prompt + scene graph + vocabulary records (what eval sg-iou reads)
    prompt_sets.py  GenEval / T2I-CompBench prompt files (bundled in data_prep/prompt_sets) -> prompt-set rows
    common.py       the bad-row report, json / jsonl / parquet readers, field paths
"""

from data_prep.converters.common import BadRow, RowError, RowReport, RowSource
from data_prep.converters.got import GotConfig, convert_got, parse_fields
from data_prep.converters.laion_sg import LaionSGConfig, convert_laion_sg
from data_prep.converters.prompt_sets import PROMPT_SET_DIR, PROMPT_SETS, convert_prompt_set, load_prompt_set

__all__ = [
    "PROMPT_SETS",
    "PROMPT_SET_DIR",
    "BadRow",
    "GotConfig",
    "LaionSGConfig",
    "RowError",
    "RowReport",
    "RowSource",
    "convert_got",
    "convert_laion_sg",
    "convert_prompt_set",
    "load_prompt_set",
    "parse_fields",
]
