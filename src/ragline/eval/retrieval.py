"""Retrieval evaluation on BEIR-format data: nDCG@10, recall@k, MRR@10 per retrieval mode.

Documents are what the qrels judge, passages are what the index returns: each document is
ranked at its best passage (MaxP), so enough passages are fetched to fill the deepest cut-off
with distinct documents.

    data = BeirData.from_folder(Path("scifact"))
    results = evaluate_retrieval(rag, data, modes=["bm25", "dense", "hybrid"])
    results[0].metrics["ndcg@10"]
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragline.errors import ConfigError
from ragline.eval.beir import BeirData
from ragline.eval.ranking import DEFAULT_METRICS, dedupe, evaluate_run, parse_metric
from ragline.registry import RETRIEVERS
from ragline.retrieve.searcher import MAX_K

if TYPE_CHECKING:
    from ragline.rag import RAG


@dataclass(frozen=True)
class RetrievalResult:
    name: str                       # the mode, "+rerank" when a reranker reordered it
    metrics: dict[str, float]
    queries: int
    seconds_per_query: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "queries": self.queries,
                "seconds_per_query": self.seconds_per_query, **self.metrics}


def passage_depth(rag: RAG, doc_depth: int) -> int:
    """Passages to fetch so that about `doc_depth` distinct documents come back (at most what
    one query may ask for)."""
    counts = rag.index.counts()
    per_doc = counts["passages"] / max(1, counts["documents"])
    return min(MAX_K, max(doc_depth, math.ceil(doc_depth * per_doc * 1.5)))


def check_judged_documents(rag: RAG, data: BeirData) -> None:
    """The qrels must name documents of this index, else every metric is a silent 0."""
    judged = {d for rels in data.qrels.values() for d in rels}
    if not any(rag.index.has_document(d) for d in judged):
        raise ConfigError(
            f"none of the {len(judged)} judged documents is in {rag.index.path}; build the index "
            f"from the same corpus (ragline index corpus.jsonl --index DIR keeps its '_id's)")


def check_evaluation(modes: Sequence[str], metrics: Sequence[str]) -> None:
    """Every mode registered and every metric known (ConfigError otherwise): cheap, so callers
    check before they build an index to evaluate."""
    for mode in modes:
        RETRIEVERS.check(mode)
    for m in metrics:
        try:
            parse_metric(m)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def evaluate_retrieval(rag: RAG, data: BeirData, modes: Sequence[str] = ("bm25", "dense", "hybrid"),
                       metrics: Sequence[str] = DEFAULT_METRICS, rerank: bool = False,
                       progress: bool = False) -> list[RetrievalResult]:
    """One result per mode; with `rerank`, each mode's run goes through the configured reranker."""
    check_evaluation(modes, metrics)
    if rerank and rag.searcher.reranker is None:
        raise ConfigError("rerank asked for, but no reranker is configured (retrieval.rerank)")
    depth = max(parse_metric(m)[1] for m in metrics)
    check_judged_documents(rag, data)
    qids = list(data.queries)
    texts = [data.queries[q] for q in qids]
    k = passage_depth(rag, depth)
    results = []
    for mode in modes:
        t0 = time.perf_counter()
        runs = rag.search_many(texts, k=k, mode=mode, rerank=rerank, progress=progress)
        seconds = (time.perf_counter() - t0) / max(1, len(qids))
        run = {q: dedupe([h.passage.doc_id for h in hits])[:depth]
               for q, hits in zip(qids, runs, strict=True)}
        results.append(RetrievalResult(mode + ("+rerank" if rerank else ""),
                                       evaluate_run(run, data.qrels, metrics), len(qids), seconds))
    return results
