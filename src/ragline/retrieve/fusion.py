"""Rank fusion as pure functions over ranked id lists.

    rrf([[3, 1, 2], [1, 4]])  # {1: 1/61 + 1/62 … }  — reciprocal rank fusion (Cormack et al. 2009)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rrf(rankings: Sequence[Sequence[int]], k: int = 60,
        weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion: score(d) = Σ_r w_r / (k + rank_r(d)), ranks starting at 1."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for w, ranking in zip(weights, rankings, strict=True):
        for rank, doc in enumerate(ranking, 1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return scores


def rrf_top(runs: Sequence[Sequence[tuple[int, float]]], n: int,
            k: int = 60) -> list[tuple[int, float]]:
    """The n best of ranked (id, score) runs by reciprocal rank fusion, with ties treated as
    ties, so that the result does not depend on how a run ordered them (one index orders exact
    ties by row id, its shards by shard):
    - passages of equal score in a run share its rank (1 + the number scored higher);
    - equal fused scores (typically rank r in one run against rank r in the other) go to the
      higher sum of min-max normalized scores, the margin the `weighted` mode ranks by; then to
      the best rank and the first run; then to the id."""
    scores: dict[int, float] = {}
    margin: dict[int, float] = {}
    best: dict[int, tuple[int, int]] = {}  # passage → (its best rank, the run it is in)
    for part, run in enumerate(runs):
        norm = minmax(np.array([s for _, s in run], dtype=np.float64))
        rank = 0
        for pos, (doc, score) in enumerate(run):
            if pos == 0 or score != run[pos - 1][1]:
                rank = pos + 1
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
            margin[doc] = margin.get(doc, 0.0) + float(norm[pos])
            if doc not in best or (rank, part) < best[doc]:
                best[doc] = (rank, part)
    return sorted(scores.items(),
                  key=lambda kv: (-kv[1], -margin[kv[0]], best[kv[0]], kv[0]))[:n]


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant list (including a single score) maps to all ones, not NaN."""
    if len(scores) == 0:
        return scores.astype(np.float64)
    lo, hi = float(np.min(scores)), float(np.max(scores))
    if hi - lo <= 1e-12:
        return np.ones(len(scores))
    return (scores - lo) / (hi - lo)


def weighted(runs: Sequence[tuple[Sequence[int] | np.ndarray, np.ndarray]],
             weights: Sequence[float]) -> dict[int, float]:
    """Convex combination of min-max normalised scores; a doc missing from a run gets 0 there."""
    out: dict[int, float] = {}
    for (ids, scores), w in zip(runs, weights, strict=True):
        for doc, s in zip(ids, minmax(np.asarray(scores, dtype=np.float64)), strict=True):
            out[int(doc)] = out.get(int(doc), 0.0) + w * float(s)
    return out


def top(scores: dict[int, float], k: int) -> list[tuple[int, float]]:
    """Highest k (id, score), ties broken by id for determinism."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    z = np.exp(z - z.max()) if len(z) else z
    return z / z.sum() if len(z) else z
