"""RewardConfig: which terms, how they combine, which judge. Bad combinations fail here, with how to fix them."""

from __future__ import annotations

import importlib.util
import inspect
import math
from dataclasses import dataclass, field, fields

from reward_models.aesthetic import CLIP_EXTRA_HINT
from reward_models.combine import COMBINERS, PAIR, PAIR_NAME
from reward_models.judges import JUDGES, Judge, is_url, make_judge
from reward_models.terms import DEFAULT_TERMS, REWARD_TERMS


@dataclass
class RewardConfig:
    terms: list[str] = field(
        default_factory=lambda: list(DEFAULT_TERMS),
        metadata={"help": "enabled reward terms (a switched-off term drops out of the formula); "
                          f"registered: {', '.join(REWARD_TERMS.names())}"},
    )
    combine: str = field(
        default="product",
        metadata={"help": "product: R_PI * R_PR * R_RI (GoT-R1); sum: weighted mean of the same factors"},
    )
    weights: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "per factor or term weight (default 1): an exponent in the product, a weight in the sum; "
                          "on R_sem / R_spa it weights them inside R_PR"},
    )
    judge: str = field(
        default="shapeworld",
        metadata={"help": f"judge name ({', '.join(JUDGES.names())}) or an OpenAI-compatible base URL http://host:port/v1"},
    )
    judge_model: str | None = field(
        default=None, metadata={"help": "hf: local model directory; http: the server's model id (default: its first)"}
    )
    judge_options: dict = field(
        default_factory=dict,
        metadata={"help": "extra keyword arguments for the judge, e.g. {timeout: 30, retries: 2, concurrency: 16} "
                          "for http, {device: cuda, batch_size: 16} for hf"},
    )
    term_options: dict[str, dict] = field(
        default_factory=dict,
        metadata={"help": "keyword options per term, e.g. {R_spa: {canvas: 448}, aesthetic: {model_dir: DIR}}"},
    )

    def __post_init__(self):
        self.terms = list(self.terms)
        if not self.terms:
            raise ValueError(f"no reward terms enabled; pick some of: {', '.join(REWARD_TERMS.names())}")
        for name in self.terms:
            if name not in REWARD_TERMS:
                raise ValueError(f"unknown reward term {name!r}; valid names: {', '.join(REWARD_TERMS.names())}")
        if len(set(self.terms)) != len(self.terms):
            raise ValueError(f"reward terms listed twice: {self.terms}")
        if self.combine not in COMBINERS:
            raise ValueError(f"unknown combine {self.combine!r}; valid: {', '.join(COMBINERS.names())}")
        self._check_weights()
        if not is_url(self.judge) and self.judge not in JUDGES:
            raise ValueError(
                f"unknown judge {self.judge!r}; valid names: {', '.join(JUDGES.names())}, or a URL http://host:port/v1"
            )
        if self.judge == "hf" and not self.judge_model:
            raise ValueError("the hf judge needs judge_model: a local directory holding a Qwen2.5-VL-style model")
        self._check_term_options()

    def _check_weights(self) -> None:
        allowed = set(self.terms) | ({PAIR_NAME} if set(PAIR) & set(self.terms) else set())
        for name, weight in self.weights.items():
            if name not in allowed:
                raise ValueError(
                    f"weight for {name!r}, which is not an enabled term or factor ({', '.join(sorted(allowed))})"
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight {name}={weight!r} must be a finite number >= 0")
        pair = [t for t in PAIR if t in self.terms]
        if pair and sum(self.weights.get(t, 1.0) for t in pair) == 0:
            raise ValueError(f"the weights of {' and '.join(pair)} sum to 0: switch the terms off instead")
        if self.combine == "sum":
            factor_names = [t for t in self.terms if t not in PAIR] + ([PAIR_NAME] if pair else [])
            if sum(self.weights.get(f, 1.0) for f in factor_names) == 0:
                raise ValueError("every factor has weight 0: give at least one a positive weight")

    def _check_term_options(self) -> None:
        for name, options in self.term_options.items():
            if name not in self.terms:
                raise ValueError(f"term_options for {name!r}, which is not enabled ({', '.join(self.terms)})")
            accepted = {
                p.name for p in inspect.signature(REWARD_TERMS.get(name)).parameters.values() if p.kind is p.KEYWORD_ONLY
            }
            unknown = set(options) - accepted
            if unknown:
                raise ValueError(f"term {name} takes no option {sorted(unknown)}; it takes: {sorted(accepted) or 'none'}")
        if "aesthetic" in self.terms:
            if not self.term_options.get("aesthetic", {}).get("model_dir"):
                raise ValueError("the aesthetic term needs term_options {aesthetic: {model_dir: DIR}} (a local model)")
            if importlib.util.find_spec("open_clip") is None:
                raise ValueError(CLIP_EXTRA_HINT)

    def make_judge(self) -> Judge:
        return make_judge(self.judge, model=self.judge_model, **self.judge_options)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
