"""Ranking metrics as pure functions, with trec_eval's conventions (what BEIR reports).

A run maps a query id to its ranked document ids; qrels map a query id to {doc id: grade}.
A document is relevant when its grade is > 0. nDCG uses the grade as gain and log2(rank + 1)
as discount, the ideal ranking built from the qrels. Queries without a relevant document are
left out of the averages (trec_eval does the same); a judged query with no results scores 0.

    ndcg_at_k(["d3", "d1"], {"d1": 1}, 10)      # 1 / log2(3) = 0.631
    evaluate_run({"q1": ["d3", "d1"]}, {"q1": {"d1": 1}})["recall@1"]   # 0.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100",
                                    "mrr@10")


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"metric cut-off must be ≥ 1, got {k}")


def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k])
              if rels.get(d, 0) > 0)
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    relevant = {d for d, g in rels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document within the top k, else 0."""
    _check_k(k)
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


_METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def parse_metric(name: str) -> tuple[str, int]:
    """'ndcg@10' → ('ndcg', 10), with a clear error for anything else."""
    base, _, cut = name.lower().partition("@")
    if base not in _METRICS or not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"unknown metric '{name}'; use ndcg@K, recall@K or mrr@K (K ≥ 1)")
    return base, int(cut)


def evaluate_run(run: Run, qrels: Qrels,
                 metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the queries that have at least one relevant document."""
    parsed = [(m, *parse_metric(m)) for m in metrics]
    judged = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    out = {}
    for name, base, k in parsed:
        fn = _METRICS[base]
        total = sum(fn(run.get(q, ()), qrels[q], k) for q in judged)
        out[name] = total / len(judged) if judged else 0.0
    return out


def dedupe(ids: Sequence[str]) -> list[str]:
    """Keep each id's first (best) position: passages → documents by their best passage (MaxP)."""
    return list(dict.fromkeys(ids))
