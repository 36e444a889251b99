"""Timing in tests: algorithmic bounds only (a quadratic parser is slow on every run, a busy machine on one)."""

from __future__ import annotations

import math
import time


def fastest_run(function, argument, tries: int = 3, enough: float = 1.0) -> float:
    """Seconds of the fastest of up to `tries` runs of function(argument), stopping once one is under `enough`."""
    best = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        function(argument)
        best = min(best, time.perf_counter() - start)
        if best < enough:
            break
    return best
