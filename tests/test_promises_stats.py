"""The confidence arithmetic: Wilson bounds, the decision they imply, and the tests needed to decide."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.promises.stats import Side, decisive_sample_size, side, wilson_bounds, z_score


def test_known_values() -> None:
    assert z_score(0.95) == pytest.approx(1.6449, abs=1e-4)
    lo, hi = wilson_bounds(20, 20, 0.95)  # type: ignore[misc]
    assert lo == pytest.approx(20 / (20 + 1.6449**2), abs=1e-4) and hi == pytest.approx(1.0)
    lo, hi = wilson_bounds(0, 10, 0.95)  # type: ignore[misc]
    assert lo == 0.0 and hi == pytest.approx(1.6449**2 / (10 + 1.6449**2), abs=1e-4)
    assert wilson_bounds(0, 0, 0.95) is None
    with pytest.raises(ValueError):
        z_score(1.0)


@given(n=st.integers(1, 3000), data=st.data(), threshold=st.sampled_from([0.5, 0.8, 0.9, 0.95]),
       confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_side_agrees_with_the_bounds(n: int, data: st.DataObject, threshold: float, confidence: float) -> None:
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_bounds(k, n, confidence)  # type: ignore[misc]
    where = side(k, n, threshold, confidence)
    eps = 1e-9
    if where is Side.ABOVE:
        assert lo >= threshold - eps
    elif where is Side.BELOW:
        assert hi < threshold + eps
    else:
        assert lo < threshold + eps and hi >= threshold - eps


@given(share=st.floats(0, 1).filter(lambda s: abs(s - 0.8) > 0.01), confidence=st.sampled_from([0.8, 0.95, 0.99]))
def test_decisive_sample_size_is_the_smallest_deciding_count(share: float, confidence: float) -> None:
    n = decisive_sample_size(share, 0.8, confidence)
    assert n is not None

    def decided(m: int) -> bool:
        # the continuous version of side(): the pass share held fixed at `share`
        from collector.promises.stats import z_score as z

        need = z(confidence) ** 2 * 0.8 * 0.2
        return m * (share - 0.8) ** 2 >= need if share > 0.8 else m * (share - 0.8) ** 2 > need

    assert decided(n)
    assert n == 1 or not decided(n - 1)


def test_a_share_on_the_threshold_never_decides() -> None:
    assert decisive_sample_size(0.8, 0.8, 0.95) is None
    assert side(800, 1000, 0.8, 0.95) is Side.STRADDLES
