"""Dense, BM25 and hybrid retrieval over an IndexFolder, returning Hits with p(z|x).

    r = Retriever(folder, encoder)
    hits = r.search("capital of France", k=5, mode="hybrid")
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ragline.encode.base import Encoder
from ragline.errors import ConfigError, EmptyIndexError
from ragline.index.folder import IndexFolder
from ragline.retrieve.fusion import rrf, softmax, top, weighted
from ragline.text import tokenize
from ragline.types import Hit, Passage

Mode = Literal["dense", "bm25", "hybrid", "weighted"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid", "weighted")


def check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be an integer ≥ 1, got {k!r}")
    return k


class Retriever:
    """k larger than the corpus returns what exists (never an error, never padding)."""

    def __init__(self, folder: IndexFolder, encoder: Encoder, rrf_k: int = 60,
                 candidates: int = 100, dense_weight: float = 0.5,
                 temperature: float = 1.0, query_encoder: Encoder | None = None) -> None:
        self.folder = folder
        self.encoder = encoder
        # a fine-tuned question encoder (ragline train) replaces the passage encoder's query side
        self.query_encoder = query_encoder or encoder
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.temperature = temperature  # of the softmax that turns d(z)·q(x) into p(z|x)

    def encode_query(self, query: str) -> np.ndarray:
        return self.query_encoder.encode_queries([query])[0]

    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        check_k(k)
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode '{mode}'; choose one of {', '.join(MODES)}")
        if not query.strip():
            raise ConfigError("the query is empty")
        dense, sparse = self.folder.dense, self.folder.sparse
        assert dense is not None and sparse is not None
        if dense.ntotal == 0:
            raise EmptyIndexError(f"{self.folder.path} has no passages yet; add documents with: "
                                  f"ragline index FILES --index {self.folder.path}")
        n = max(k, self.candidates) if mode in ("hybrid", "weighted") else k
        qvec = self.encode_query(query) if mode != "bm25" else None

        d_ids: np.ndarray = np.zeros(0, np.int64)
        d_scores: np.ndarray = np.zeros(0, np.float32)
        s_ids: np.ndarray = np.zeros(0, np.int64)
        s_scores: np.ndarray = np.zeros(0, np.float32)
        if qvec is not None:
            sc, ids = dense.search(qvec[None, :], n)
            keep = ids[0] >= 0
            d_ids, d_scores = ids[0][keep], sc[0][keep]
        if mode != "dense":
            s_scores, s_ids = sparse.search(tokenize(query), n)

        if mode == "dense":
            ranked = list(zip(d_ids.tolist(), d_scores.tolist(), strict=True))
        elif mode == "bm25":
            ranked = list(zip(s_ids.tolist(), s_scores.tolist(), strict=True))
        elif mode == "hybrid":
            ranked = top(rrf([d_ids.tolist(), s_ids.tolist()], k=self.rrf_k), k)
        else:
            w = self.dense_weight
            ranked = top(weighted([(d_ids, d_scores), (s_ids, s_scores)], [w, 1 - w]), k)
        ranked = ranked[:k]
        return self._hits(ranked, qvec, dict(zip(s_ids.tolist(), s_scores.tolist(), strict=True)))

    def dense_hits(self, qvecs: np.ndarray, k: int) -> list[tuple[list[Hit], np.ndarray]]:
        """Dense top-k for a batch of query vectors (B, d): each question's hits and their
        passage vectors (k', d), so that d(z)·q(x) can be recomputed in torch (training)."""
        check_k(k)
        dense = self.folder.dense
        assert dense is not None
        if dense.ntotal == 0:
            raise EmptyIndexError(f"{self.folder.path} has no passages yet")
        scores, ids = dense.search(qvecs, k)
        rows = self.folder.store.passages_by_rowid(sorted({int(i) for i in ids.ravel() if i >= 0}))
        out = []
        for q, sc, row in zip(qvecs, scores, ids, strict=True):
            ranked = [(int(i), float(s)) for i, s in zip(row, sc, strict=True) if int(i) in rows]
            hits = self._hits(ranked, q, {}, rows)
            vecs = np.stack([rows[i][1] for i, _ in ranked]) if ranked else np.zeros((0, len(q)))
            out.append((hits, vecs.astype(np.float32)))
        return out

    def _hits(self, ranked: list[tuple[int, float]], qvec: np.ndarray | None,
              sparse_scores: dict[int, float],
              rows: dict[int, tuple[Passage, np.ndarray]] | None = None) -> list[Hit]:
        if rows is None:
            rows = self.folder.store.passages_by_rowid([i for i, _ in ranked])
        ranked = [(i, s) for i, s in ranked if i in rows]  # a stale id never becomes a hit
        # d(z)·q(x) for every returned passage, from its stored vector, so p(z|x) is defined
        # for hybrid and BM25 hits too (a passage BM25 found may be outside the dense top-n).
        dots = ([float(rows[i][1] @ qvec) for i, _ in ranked] if qvec is not None else None)
        probs = softmax(np.array(dots) / self.temperature) if dots else None
        hits = []
        for r, (i, s) in enumerate(ranked):
            hits.append(Hit(passage=rows[i][0], score=float(s), rank=r + 1,
                            dense_score=dots[r] if dots is not None else None,
                            sparse_score=sparse_scores.get(i),
                            prob=float(probs[r]) if probs is not None else None))
        return hits
