"""Combining reward terms into one reward. Pure functions: no judges, no I/O.

The enabled terms become factors: R_sem and R_spa (whichever are enabled) are averaged into one factor, R_PR
(GoT-R1's prompt -> reasoning pair, also the name the ablation table uses); every other enabled term is a factor
of its own. Then

    product (default):  R = prod_f f ** w_f                      GoT-R1: R_PI * (R_sem + R_spa) / 2 * R_RI
    sum:                R = sum_f w_f * f / sum_f w_f            (a weighted mean, so R stays in [0, 1])

with weights w (default 1; a weight on R_sem or R_spa weights them inside R_PR's mean instead). A switched-off
term is simply not among the values: it drops out of the formula, e.g. without R_RI the product is
R_PI * R_PR, and without R_spa, R_PR = R_sem.

    >>> combine({"R_sem": 1.0, "R_spa": 0.5, "R_RI": 0.8, "R_PI": 1.0})
    (0.6000000000000001, {'R_PR': 0.75, 'R_RI': 0.8, 'R_PI': 1.0})

A term that is None or NaN makes the total None: missing values never reach the total silently. The caller
(trainer) decides what a None reward means; `combine_batch` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from janus_rig.registry import Registry

PAIR = ("R_sem", "R_spa")  # prompt -> reasoning: semantic and spatial
PAIR_NAME = "R_PR"

COMBINERS: Registry = Registry("reward combination")


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def factors(values: Mapping[str, float], weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Terms -> factors: R_sem/R_spa (those present) -> their weighted mean R_PR; the other terms as they are."""
    weights = weights or {}
    out: dict[str, float] = {}
    pair = [name for name in PAIR if name in values]
    if pair:
        pair_weight = sum(weights.get(name, 1.0) for name in pair)
        if pair_weight <= 0:
            raise ValueError(f"the weights of {' and '.join(pair)} sum to 0: switch the terms off instead")
        out[PAIR_NAME] = sum(weights.get(name, 1.0) * values[name] for name in pair) / pair_weight
    out.update((name, value) for name, value in values.items() if name not in PAIR)
    return out


@COMBINERS.register("product")
def product(factor_values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    total = 1.0
    for name, value in factor_values.items():
        total *= value ** weights.get(name, 1.0)
    return total


@COMBINERS.register("sum")
def weighted_mean(factor_values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    total_weight = sum(weights.get(name, 1.0) for name in factor_values)
    if total_weight <= 0:
        raise ValueError("the weights of the enabled terms sum to 0: give at least one a positive weight")
    return sum(weights.get(name, 1.0) * value for name, value in factor_values.items()) / total_weight


def combine(
    values: Mapping[str, float | None], mode: str = "product", weights: Mapping[str, float] | None = None
) -> tuple[float | None, dict[str, float]]:
    """(total, factors) for one sample's enabled terms; total None when a term is None or NaN.

    Raises ValueError when a term is outside [0, 1] or infinite: that is a bug in the term, not a judge failure.
    """
    weights = weights or {}
    if not values:
        raise ValueError("no reward terms are enabled")
    for name, value in values.items():
        if not is_missing(value) and not 0.0 <= value <= 1.0:
            raise ValueError(f"reward term {name} = {value} is outside [0, 1]")
    missing = {name for name, value in values.items() if is_missing(value)}
    if missing:
        # Factors of what is there, for logging; R_PR only when both of its (enabled) halves are.
        present = {k: v for k, v in values.items() if k not in missing and not (k in PAIR and missing & set(PAIR))}
        return None, factors(present, weights)
    found = factors(values, weights)
    return COMBINERS.get(mode)(found, weights), found


def combine_batch(
    per_term: Mapping[str, Sequence[float | None]], mode: str = "product", weights: Mapping[str, float] | None = None
) -> tuple[list[float | None], list[dict[str, float | None]], dict[str, float]]:
    """Combine a batch: (totals, per-sample term values with R_PR added, metrics).

    metrics: `none/<term>` and `none/total` (how many were None or NaN), `mean/<term>`, `mean/R_PR` and
    `mean/total` over the samples where they exist (NaN when none does).
    """
    names = list(per_term)
    sizes = {len(v) for v in per_term.values()}
    if len(sizes) > 1:
        raise ValueError(f"reward terms disagree on the batch size: { {k: len(v) for k, v in per_term.items()} }")
    n = sizes.pop() if sizes else 0
    totals, rows = [], []
    for i in range(n):
        values = {name: (None if is_missing(per_term[name][i]) else per_term[name][i]) for name in names}
        total, found = combine(values, mode, weights)
        row: dict[str, float | None] = dict(values)
        if any(name in values for name in PAIR):
            row[PAIR_NAME] = found.get(PAIR_NAME)
        totals.append(total)
        rows.append(row)
    metrics: dict[str, float] = {}
    for key in [*names, *([PAIR_NAME] if any(p in names for p in PAIR) else []), "total"]:
        column = totals if key == "total" else [row[key] for row in rows]
        present = [v for v in column if v is not None]
        metrics[f"none/{key}"] = float(len(column) - len(present))
        metrics[f"mean/{key}"] = sum(present) / len(present) if present else math.nan
    return totals, rows, metrics
