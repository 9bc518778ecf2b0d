"""The Retriever protocol: queries in, ranked passage row ids out.

A retriever ranks; the Searcher (ragline.retrieve.searcher) turns rankings into Hits, reranks
and computes p(z|x). Implementations are registered by mode in ragline.registry.RETRIEVERS:

    dense      DenseRetriever: FAISS inner product, exact rescoring for approximate kinds
    bm25       BM25Retriever: bm25s over the store's tokens
    hybrid     FusionRetriever(rrf) of dense and BM25
    weighted   FusionRetriever(weighted min-max) of dense and BM25

    retriever = RETRIEVERS.create("hybrid", folder, RetrievalConfig())
    runs = retriever.retrieve(["capital of France"], vectors, n=10)
    runs[0].ranked                         # [(rowid, score), …], best first
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Ranked = list[tuple[int, float]]  # (passage row id, score), best first


@dataclass(frozen=True)
class Run:
    """One query's ranking, and the BM25 score of every candidate BM25 saw (Hit.sparse_score,
    kept when fusion replaces the scores)."""

    ranked: Ranked
    sparse: Mapping[int, float] = field(default_factory=dict)


class Retriever(Protocol):
    """Contract (tests/test_contracts.py runs it for every registered mode):
    - `retrieve(queries, vectors, n)` returns one Run per query whose ranking is at most n
      long, sorted by score (descending), with distinct row ids; a query nothing matches gets
      an empty ranking.
    - `vectors` holds the queries' encodings (len(queries), dim) when `uses_vectors`, else it
      may be None; a retriever never encodes queries itself (the Searcher batches that).
    - Ids may name passages removed since the index was read: the Searcher drops those.
    """

    name: str
    uses_vectors: bool

    def retrieve(self, queries: Sequence[str], vectors: np.ndarray | None,
                 n: int) -> list[Run]: ...
