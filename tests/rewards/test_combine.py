"""Combination: GoT-R1's product, the sum, weights, switched-off terms, and None/NaN never reaching a total silently."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_models import RewardConfig
from reward_models.combine import combine, combine_batch

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
TERMS = ("R_sem", "R_spa", "R_RI", "R_PI")


def test_default_is_gotr1_product():
    total, found = combine({"R_sem": 0.8, "R_spa": 0.4, "R_RI": 0.5, "R_PI": 0.9})
    assert total == pytest.approx(0.9 * (0.8 + 0.4) / 2 * 0.5)
    assert found == {"R_PR": pytest.approx(0.6), "R_RI": 0.5, "R_PI": 0.9}


def test_sum_is_the_mean_of_the_same_factors():
    total, _ = combine({"R_sem": 0.8, "R_spa": 0.4, "R_RI": 0.5, "R_PI": 0.9}, "sum")
    assert total == pytest.approx((0.6 + 0.5 + 0.9) / 3)


def test_product_punishes_one_zero_factor_the_sum_does_not():
    values = {"R_sem": 1.0, "R_spa": 1.0, "R_RI": 0.0, "R_PI": 1.0}
    assert combine(values)[0] == 0.0
    assert combine(values, "sum")[0] == pytest.approx(2 / 3)


def test_switched_off_terms_drop_out():
    assert combine({"R_sem": 0.8, "R_RI": 0.5, "R_PI": 0.9})[0] == pytest.approx(0.8 * 0.5 * 0.9)  # R_PR = R_sem
    assert combine({"R_spa": 0.4, "R_PI": 0.9})[0] == pytest.approx(0.4 * 0.9)  # R_PR = R_spa, no R_RI
    assert combine({"R_PI": 0.9})[0] == pytest.approx(0.9)
    assert combine({"R_sem": 0.8, "R_spa": 0.4})[0] == pytest.approx(0.6)  # the R_PR-only ablation


def test_weights():
    values = {"R_sem": 0.8, "R_spa": 0.4, "R_RI": 0.5, "R_PI": 0.9}
    assert combine(values, "product", {"R_RI": 2.0})[0] == pytest.approx(0.9 * 0.6 * 0.25)  # an exponent
    assert combine(values, "product", {"R_RI": 0.0})[0] == pytest.approx(0.9 * 0.6)  # weight 0 = off
    assert combine(values, "sum", {"R_PI": 2.0})[0] == pytest.approx((0.6 + 0.5 + 1.8) / 4)
    assert combine(values, "product", {"R_spa": 0.0})[1]["R_PR"] == pytest.approx(0.8)  # inside the pair's mean
    assert combine(values, "product", {"R_PR": 0.5})[0] == pytest.approx(0.9 * 0.6**0.5 * 0.5)


@pytest.mark.parametrize("bad", [None, math.nan])
def test_none_or_nan_makes_the_total_none(bad):
    total, found = combine({"R_sem": 0.8, "R_spa": bad, "R_RI": 0.5, "R_PI": 0.9})
    assert total is None
    assert "R_PR" not in found and found["R_RI"] == 0.5  # what is known is still there for logging
    totals, rows, metrics = combine_batch({"R_sem": [0.8, 0.8], "R_spa": [bad, 0.4], "R_RI": [0.5, 0.5], "R_PI": [0.9, 0.9]})
    assert totals[0] is None and totals[1] == pytest.approx(0.27)
    assert rows[0]["R_spa"] is None and rows[0]["R_PR"] is None  # NaN is reported as None, never as NaN
    assert metrics["none/total"] == 1 and metrics["none/R_spa"] == 1 and metrics["none/R_PR"] == 1
    assert metrics["mean/total"] == pytest.approx(0.27)


def test_out_of_range_terms_are_bugs():
    with pytest.raises(ValueError, match="outside"):
        combine({"R_PI": 1.5})
    with pytest.raises(ValueError, match="outside"):
        combine({"R_PI": math.inf})
    with pytest.raises(ValueError, match="no reward terms"):
        combine({})
    with pytest.raises(ValueError, match="batch size"):
        combine_batch({"R_PI": [1.0], "R_RI": [1.0, 1.0]})


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries({}, optional={t: st.one_of(unit, st.none(), st.just(math.nan)) for t in TERMS}),
    mode=st.sampled_from(["product", "sum"]),
)
def test_never_a_silent_nan(values, mode):
    if not values:
        return
    total, _ = combine(values, mode)
    missing = any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values.values())
    if missing:
        assert total is None
    else:
        assert total is not None and 0.0 <= total <= 1.0
        pair = [values[t] for t in ("R_sem", "R_spa") if t in values]
        factors = ([sum(pair) / len(pair)] if pair else []) + [values[t] for t in ("R_RI", "R_PI") if t in values]
        expected = math.prod(factors) if mode == "product" else sum(factors) / len(factors)
        assert total == pytest.approx(expected)


def test_config_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="valid names: R_PI, R_RI"):
        RewardConfig(terms=["R_pi"])
    with pytest.raises(ValueError, match="no reward terms"):
        RewardConfig(terms=[])
    with pytest.raises(ValueError, match="product"):
        RewardConfig(combine="mean")
    with pytest.raises(ValueError, match="not an enabled term"):
        RewardConfig(terms=["R_PI"], weights={"R_RI": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        RewardConfig(weights={"R_PI": -1})
    with pytest.raises(ValueError, match="switch the terms off"):
        RewardConfig(weights={"R_sem": 0, "R_spa": 0})
    with pytest.raises(ValueError, match="unknown judge"):
        RewardConfig(judge="gpt")
    with pytest.raises(ValueError, match="judge_model"):
        RewardConfig(judge="hf")
    with pytest.raises(ValueError, match="takes no option"):
        RewardConfig(term_options={"R_spa": {"size": 3}})
    assert RewardConfig(judge="http://127.0.0.1:1/v1", weights={"R_PR": 2}).judge.startswith("http")
    assert all(RewardConfig.help().values())
