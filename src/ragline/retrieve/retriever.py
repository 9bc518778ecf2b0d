"""Dense, BM25 and hybrid retrieval over an IndexFolder, with optional reranking, returning
Hits with p(z|x).

    r = Retriever(folder, encoder)
    hits = r.search("capital of France", k=5, mode="hybrid")
    runs = r.search_many(questions, k=100, mode="dense")    # queries encoded in one batch
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from tqdm import tqdm

from ragline.encode.base import Encoder
from ragline.errors import ConfigError, EmptyIndexError
from ragline.index.folder import IndexFolder
from ragline.retrieve.fusion import rrf, softmax, top, weighted
from ragline.retrieve.rerank import Reranker
from ragline.text import invalid_char, tokenize
from ragline.types import Hit, Passage

Mode = Literal["dense", "bm25", "hybrid", "weighted"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid", "weighted")

_Ranked = list[tuple[int, float]]  # (passage row id, score), best first


MAX_K = 1000                # passages one query may ask for (eval's recall@100 needs 100)
MAX_QUERY_CHARS = 4000      # a question, not a document: longer ones cannot fit a prompt


def check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def check_query(query: str, what: str = "query") -> str:
    """A query or question must be non-empty text of at most MAX_QUERY_CHARS characters."""
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"the {what} is empty")
    bad = invalid_char(query)
    if bad is not None:
        raise ConfigError(f"the {what} is not valid text: character {bad + 1} is U+"
                          f"{ord(query[bad]):04X}, a byte that is not UTF-8; send or type it as "
                          "UTF-8 (check the terminal's encoding)")
    if len(query) > MAX_QUERY_CHARS:
        raise ConfigError(f"the {what} has {len(query):,} characters; at most "
                          f"{MAX_QUERY_CHARS:,} are allowed")
    return query


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown retrieval mode '{mode}'; choose one of {', '.join(MODES)}")
    return mode


class Retriever:
    """k larger than the corpus returns what exists (never an error, never padding).

    Hybrid modes fuse the top `candidates` of each side. With a reranker, the top
    `rerank_depth` first-stage passages are reordered by its scores (their `score` becomes the
    reranker's); any passages below them follow in first-stage order with their own scores."""

    def __init__(self, folder: IndexFolder, encoder: Encoder, rrf_k: int = 60,
                 candidates: int = 100, dense_weight: float = 0.5,
                 temperature: float = 1.0, query_encoder: Encoder | None = None,
                 reranker: Reranker | None = None, rerank_depth: int = 20) -> None:
        if not 0.0 <= dense_weight <= 1.0:
            raise ConfigError(f"dense_weight must be in [0, 1], got {dense_weight}")
        self.folder = folder
        self.encoder = encoder
        # a fine-tuned question encoder (ragline train) replaces the passage encoder's query side
        self.query_encoder = query_encoder or encoder
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.temperature = temperature  # of the softmax that turns d(z)·q(x) into p(z|x)
        self.reranker = reranker
        self.rerank_depth = check_k(rerank_depth)

    def encode_query(self, query: str) -> np.ndarray:
        return self.query_encoder.encode_queries([query])[0]

    def search(self, query: str, k: int = 5, mode: str = "hybrid",
               rerank: bool = True) -> list[Hit]:
        return self.search_many([query], k=k, mode=mode, rerank=rerank)[0]

    def search_many(self, queries: Sequence[str], k: int = 5, mode: str = "hybrid",
                    rerank: bool = True, progress: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query. Query vectors are encoded and searched in one batch;
        `rerank=False` skips a configured reranker."""
        check_k(k)
        check_mode(mode)
        for q in queries:
            check_query(q)
        self._check_not_empty()
        reranker = self.reranker if rerank else None
        depth = max(k, self.rerank_depth) if reranker else k
        n = max(depth, self.candidates) if mode in ("hybrid", "weighted") else depth
        qvecs = (self.query_encoder.encode_queries(list(queries)) if mode != "bm25"
                 else [None] * len(queries))
        dense = self._dense(np.asarray(qvecs), n) if mode != "bm25" else [[]] * len(queries)

        out = []
        name = mode + ("+rerank" if reranker else "")
        bar = tqdm(total=len(queries), desc=f"search ({name})", unit="query",
                   disable=not progress, dynamic_ncols=True)
        for query, qvec, d in zip(queries, qvecs, dense, strict=True):
            s: _Ranked = []
            if mode != "dense":
                s_scores, s_ids = self.folder.sparse.search(tokenize(query), n)  # type: ignore[union-attr]
                s = list(zip(s_ids.tolist(), s_scores.tolist(), strict=True))
            ranked = self._fuse(mode, d, s, depth)
            rows = self.folder.store.passages_by_rowid([i for i, _ in ranked])
            if reranker is not None and ranked:
                head = [(i, x) for i, x in ranked[:self.rerank_depth] if i in rows]
                ranked = self._rerank(reranker, query, head, rows) + ranked[self.rerank_depth:]
            out.append(self._hits(ranked[:k], qvec, dict(s), rows))
            bar.update()
        bar.close()
        return out

    def _check_not_empty(self) -> None:
        dense = self.folder.dense
        assert dense is not None and self.folder.sparse is not None
        if dense.ntotal == 0:
            raise EmptyIndexError(f"{self.folder.path} has no passages yet; add documents with: "
                                  f"ragline index FILES --index {self.folder.path}")

    def _dense(self, qvecs: np.ndarray, n: int) -> list[_Ranked]:
        """Dense top-n per query vector (B, d). Approximate indexes return refine·n candidates
        that are rescored exactly against the vectors in the store."""
        spec = self.folder.dense_spec
        with self.folder.searching.read():  # an upload may be adding to this index in place
            dense = self.folder.dense
            assert dense is not None
            scores, ids = dense.search(qvecs, n if spec.exact else n * spec.refine)
        if spec.exact:
            return [[(int(i), float(s)) for i, s in zip(row, sc, strict=True) if i >= 0]
                    for row, sc in zip(ids, scores, strict=True)]
        vecs = self.folder.store.vectors_by_rowid(sorted({int(i) for i in ids.ravel() if i >= 0}))
        out: list[_Ranked] = []
        for q, row in zip(qvecs, ids, strict=True):
            cand = [int(i) for i in row if int(i) in vecs]
            if not cand:
                out.append([])
                continue
            exact = np.stack([vecs[i] for i in cand]) @ q  # (n·refine,) exact d(z)·q(x)
            order = np.argsort(-exact, kind="stable")[:n]
            out.append([(cand[j], float(exact[j])) for j in order])
        return out

    def _fuse(self, mode: str, d: _Ranked, s: _Ranked, n: int) -> _Ranked:
        if mode == "dense":
            return d[:n]
        if mode == "bm25":
            return s[:n]
        if mode == "hybrid":
            return top(rrf([[i for i, _ in d], [i for i, _ in s]], k=self.rrf_k), n)
        w = self.dense_weight
        return top(weighted([([i for i, _ in d], np.array([x for _, x in d])),
                             ([i for i, _ in s], np.array([x for _, x in s]))], [w, 1 - w]), n)

    @staticmethod
    def _rerank(reranker: Reranker, query: str, ranked: _Ranked,
                rows: dict[int, tuple[Passage, np.ndarray]]) -> _Ranked:
        ids = [i for i, _ in ranked]
        scores = reranker.score(query, [rows[i][0] for i in ids])
        # stable sort: equal reranker scores keep the first-stage order
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        return [(ids[j], float(scores[j])) for j in order]

    def dense_hits(self, qvecs: np.ndarray, k: int) -> list[tuple[list[Hit], np.ndarray]]:
        """Dense top-k for a batch of query vectors (B, d): each question's hits and their
        passage vectors (k', d), so that d(z)·q(x) can be recomputed in torch (training)."""
        check_k(k)
        self._check_not_empty()
        ranked_all = self._dense(qvecs, k)
        rows = self.folder.store.passages_by_rowid(sorted({i for r in ranked_all for i, _ in r}))
        out = []
        for q, ranked in zip(qvecs, ranked_all, strict=True):
            hits = self._hits(ranked, q, {}, rows)
            kept = [rows[i][1] for i, _ in ranked if i in rows]  # the hits' order
            vecs = np.stack(kept) if kept else np.zeros((0, len(q)))
            out.append((hits, vecs.astype(np.float32)))
        return out

    def _hits(self, ranked: _Ranked, qvec: np.ndarray | None, sparse_scores: dict[int, float],
              rows: dict[int, tuple[Passage, np.ndarray]]) -> list[Hit]:
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
