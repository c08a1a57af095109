"""Confidence in a pass share: Wilson score bounds, and how many tests would settle a verdict.

The Wilson interval at one-sided confidence c is {p : (p̂ - p)² <= z² p (1 - p) / n} with
z = Φ⁻¹(c). Its lower bound clears a threshold s exactly when p̂ > s and
n (p̂ - s)² >= z² s (1 - s) — a one-sided score test of "the true share is s". The same
inequality, solved for n, says how many tests settle the question if the pass share stays where
it is. Deciding with that inequality (not by comparing floats of the bounds) keeps the verdict and
the "tests needed" figure consistent to the last test.
"""

from __future__ import annotations

import math
from enum import StrEnum
from statistics import NormalDist


class Side(StrEnum):
    ABOVE = "above"  # the whole interval lies at or above the threshold
    BELOW = "below"  # the whole interval lies below it
    STRADDLES = "straddles"  # the data cannot tell at this confidence


def z_score(confidence: float) -> float:
    """One-sided normal quantile, e.g. 1.645 for 0.95."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    return NormalDist().inv_cdf(confidence)


def wilson_bounds(passed: int, n: int, confidence: float) -> tuple[float, float] | None:
    """(lower, upper) Wilson score bounds of the pass share at one-sided `confidence`; None for n = 0."""
    if n <= 0:
        return None
    if not 0 <= passed <= n:
        raise ValueError(f"passed must be within 0..{n}, got {passed}")
    z = z_score(confidence)
    p = passed / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def side(passed: int, n: int, threshold: float, confidence: float) -> Side:
    """Where the Wilson interval lies relative to `threshold` (0 < threshold < 1)."""
    if n <= 0:
        return Side.STRADDLES
    p = passed / n
    z = z_score(confidence)
    need = z * z * threshold * (1 - threshold)
    if p > threshold and n * (p - threshold) ** 2 >= need:
        return Side.ABOVE
    if p < threshold and n * (p - threshold) ** 2 > need:
        return Side.BELOW
    return Side.STRADDLES


def fewest_deciding_tests(min_valid_tests: int, threshold: float, confidence: float) -> int:
    """The fewest valid tests on which a promise can be found delivered: the configured minimum, or, when
    more, the count of all-passing tests whose Wilson bound clears `threshold` at `confidence`. The one
    source for the criterion's text and an empty window's "at least N are needed" (they once said 10 and
    11 in the same acceptance report)."""
    return max(min_valid_tests, decisive_sample_size(1.0, threshold, confidence) or 0)


def decisive_sample_size(share: float, threshold: float, confidence: float) -> int | None:
    """Total valid tests at which a pass share of `share` would be decisive; None when share == threshold.

    Assumes future tests pass at the current share (the best estimate we have); the verdict
    reports it as an estimate, not a promise.
    """
    if share == threshold:
        return None
    z = z_score(confidence)
    exact = z * z * threshold * (1 - threshold) / (share - threshold) ** 2
    # BELOW is a strict inequality, ABOVE is not; nudge past float noise at exact integers.
    n = math.ceil(exact - 1e-9)
    if share < threshold and n * (share - threshold) ** 2 <= z * z * threshold * (1 - threshold):
        n += 1
    return max(1, n)
