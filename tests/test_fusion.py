import numpy as np
import pytest

from ragline.retrieve.fusion import minmax, rrf, rrf_top, softmax, top, weighted


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


def test_rrf_top_treats_ties_as_ties_whatever_their_order() -> None:
    # 2 and 3 tie in the second run: either order gives the same fused scores and ranking
    dense = [(1, 0.9), (4, 0.1), (7, 0.0)]
    for bm25 in ([(5, 3.0), (2, 2.9), (3, 2.9), (6, 0.0)],
                 [(5, 3.0), (3, 2.9), (2, 2.9), (6, 0.0)]):
        fused = rrf_top([dense, bm25], n=5, k=60)
        assert dict(fused)[2] == dict(fused)[3] == dict(fused)[4] == 1 / 62
        # equal fused scores: the larger normalized margin first (2 and 3 hold 0.97 of BM25's
        # range, 4 holds 0.11 of dense's), then the best rank and the first run (1 before 5)
        assert [i for i, _ in fused] == [1, 5, 2, 3, 4]
