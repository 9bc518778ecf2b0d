import numpy as np
import pytest

from ragline.retrieve.fusion import minmax, rrf, softmax, top, weighted


def test_rrf_exact_scores() -> None:
    scores = rrf([[1, 2, 3], [3, 1]], k=60)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)
    assert [d for d, _ in top(scores, 3)] == [1, 3, 2]


def test_minmax_never_divides_by_zero() -> None:
    assert minmax(np.array([0.7, 0.7])).tolist() == [1.0, 1.0]
    assert minmax(np.array([5.0])).tolist() == [1.0]
    assert minmax(np.array([])).tolist() == []
    assert minmax(np.array([1.0, 3.0, 2.0])).tolist() == [0.0, 1.0, 0.5]


def test_weighted_fusion_handles_missing_and_constant_runs() -> None:
    out = weighted([([1, 2], np.array([0.9, 0.1])), ([2], np.array([4.0]))], [0.5, 0.5])
    assert out == {1: pytest.approx(0.5), 2: pytest.approx(0.5)}
    assert all(np.isfinite(v) for v in out.values())


def test_softmax_sums_to_one_and_orders() -> None:
    p = softmax(np.array([2.0, 1.0, 0.0]))
    assert p.sum() == pytest.approx(1.0) and p[0] > p[1] > p[2]
