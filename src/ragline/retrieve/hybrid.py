"""Hybrid retrieval: dense and BM25 candidates fused by a pure function of ragline.retrieve.fusion.

    rrf_retriever(folder, RetrievalConfig()).retrieve(queries, vectors, n=10)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ragline.config import RetrievalConfig
from ragline.index.folder import IndexFolder
from ragline.retrieve.base import Ranked, Retriever, Run
from ragline.retrieve.dense import DenseRetriever
from ragline.retrieve.fusion import rrf_top, top, weighted
from ragline.retrieve.sparse import BM25Retriever

Fuse = Callable[[Sequence[Ranked], int], Ranked]  # the parts' rankings, n → the fused top n

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads for the parts of fused queries, started on first use (never at import)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                       thread_name_prefix="ragline-search")
        return _POOL


class FusionRetriever:
    """Each part's top `candidates` (at least n), fused into one ranking."""

    uses_vectors = True

    def __init__(self, name: str, parts: Sequence[Retriever], fuse: Fuse,
                 candidates: int = 100) -> None:
        self.name = name
        self.parts = list(parts)
        self.fuse = fuse
        self.candidates = candidates

    def retrieve(self, queries: Sequence[str], vectors: np.ndarray | None,
                 n: int) -> list[Run]:
        depth = max(n, self.candidates)
        # the parts run side by side: FAISS, SQLite and the BM25 kernel release the GIL, so
        # a hybrid query costs about its slower part, not the sum of both
        others = [_pool().submit(p.retrieve, queries, vectors, depth) for p in self.parts[1:]]
        runs = [self.parts[0].retrieve(queries, vectors, depth)] + [f.result() for f in others]
        # runs: (parts, queries)
        return [Run(self.fuse([r.ranked for r in per_query], n),
                    {i: s for r in per_query for i, s in r.sparse.items()})
                for per_query in zip(*runs, strict=True)]


def rrf_retriever(folder: IndexFolder, config: RetrievalConfig | None = None) -> FusionRetriever:
    """Reciprocal rank fusion (k = rrf_k) of dense and BM25."""
    return rrf_of(DenseRetriever(folder), BM25Retriever(folder), config)


def weighted_retriever(folder: IndexFolder,
                       config: RetrievalConfig | None = None) -> FusionRetriever:
    """Min-max normalized scores, dense_weight · dense + (1 − dense_weight) · BM25."""
    return weighted_of(DenseRetriever(folder), BM25Retriever(folder), config)


def rrf_of(dense: Retriever, bm25: Retriever,
           config: RetrievalConfig | None = None) -> FusionRetriever:
    """`rrf_retriever` over any dense and BM25 retrievers (e.g. those of a sharded index)."""
    c = config or RetrievalConfig()
    return FusionRetriever("hybrid", [dense, bm25],
                           lambda runs, n: rrf_top(runs, n, k=c.rrf_k),
                           c.candidates)


def weighted_of(dense: Retriever, bm25: Retriever,
                config: RetrievalConfig | None = None) -> FusionRetriever:
    """`weighted_retriever` over any dense and BM25 retrievers."""
    c = config or RetrievalConfig()  # validated there: dense_weight is in [0, 1]
    w = c.dense_weight
    return FusionRetriever(
        "weighted", [dense, bm25],
        lambda runs, n: top(weighted([([i for i, _ in r], np.array([s for _, s in r]))
                                      for r in runs], [w, 1 - w]), n),
        c.candidates)
