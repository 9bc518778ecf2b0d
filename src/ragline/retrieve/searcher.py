"""The Searcher: queries → Hits with scores and p(z|x), over an Index, by any registered mode,
with optional reranking.

    searcher = Searcher(index, config=RetrievalConfig(mode="hybrid"))
    hits = searcher.search("capital of France", k=5)
    runs = searcher.search_many(questions, k=100, mode="dense")   # queries encoded in one batch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ragline.config import DEFAULT_PRIOR_SCALE, RetrievalConfig
from ragline.encode.base import Encoder
from ragline.errors import ConfigError, EmptyIndexError
from ragline.index.index import Index
from ragline.registry import RETRIEVERS
from ragline.retrieve.base import Ranked, Retriever
from ragline.retrieve.collection import Collection, FolderCollection, Rows
from ragline.retrieve.fusion import softmax
from ragline.retrieve.rerank import Reranker
from ragline.text import invalid_char
from ragline.types import Hit

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


class Searcher:
    """k larger than the corpus returns what exists (never an error, never padding).

    With a reranker, the top `rerank_depth` first-stage passages are reordered by its scores
    (their `score` becomes the reranker's); any passages below them follow in first-stage
    order with their own scores. p(z|x) is the softmax of prior_scale · d(z)·q(x) over the
    returned hits (None in bm25 mode, which has no question vector)."""

    def __init__(self, index: Index, query_encoder: Encoder | None = None,
                 config: RetrievalConfig | None = None, reranker: Reranker | None = None,
                 prior_scale: float = DEFAULT_PRIOR_SCALE,
                 collection: Collection | None = None) -> None:
        self.index = index
        # what is searched: the index's folder, or its shards (here or on Ray actors)
        self.collection = collection or collection_of(index)
        # a fine-tuned question encoder (ragline train) replaces the passage encoder's query side
        self.query_encoder = query_encoder or index.encoder
        self.config = config or RetrievalConfig()
        self.reranker = reranker
        self.rerank_depth = check_k(self.config.rerank_depth)
        self.prior_scale = prior_scale  # inverse temperature of the softmax that gives p(z|x)
        self._retrievers: dict[str, Retriever] = {}

    def using(self, query_encoder: Encoder | None = None,
              collection: Collection | None = None) -> Searcher:
        """The same searcher with another query encoder (e.g. one that batches callers), or
        over another collection (e.g. the shards' Ray actors)."""
        other = Searcher(self.index, query_encoder or self.query_encoder, self.config,
                         self.reranker, self.prior_scale, collection or self.collection)
        other.rerank_depth = self.rerank_depth
        return other

    def retriever(self, mode: str) -> Retriever:
        RETRIEVERS.check(mode)
        if mode not in self._retrievers:
            self._retrievers[mode] = self.collection.retriever(mode, self.config)
        return self._retrievers[mode]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.query_encoder.encode_queries(list(queries))

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode_queries([query])[0]

    def search(self, query: str, k: int | None = None, mode: str | None = None,
               rerank: bool = True) -> list[Hit]:
        return self.search_many([query], k=k, mode=mode, rerank=rerank)[0]

    def search_many(self, queries: Sequence[str], k: int | None = None, mode: str | None = None,
                    rerank: bool = True, progress: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query. Query vectors are encoded and searched in one batch;
        `rerank=False` skips a configured reranker."""
        k = check_k(self.config.k if k is None else k)
        mode = self.config.mode if mode is None else mode
        retriever = self.retriever(mode)
        for q in queries:
            check_query(q)
        self.collection.refresh()
        reranker = self.reranker if rerank else None
        depth = max(k, self.rerank_depth) if reranker else k
        # every mode but bm25 has query vectors: for its own search and for p(z|x)
        qvecs = self.encode_queries(queries) if mode != "bm25" else None
        runs = retriever.retrieve(queries, qvecs, depth)
        if not any(r.ranked for r in runs):
            self._check_not_empty()  # only then: on Ray actors, asking costs a round trip
        out = []
        bar = tqdm(total=len(queries), desc=f"search ({mode}{'+rerank' if reranker else ''})",
                   unit="query", disable=not progress, dynamic_ncols=True)
        for i, (query, run) in enumerate(zip(queries, runs, strict=True)):
            ranked = run.ranked
            rows = self.collection.passages([r for r, _ in ranked])
            if reranker is not None and ranked:
                head = [(r, s) for r, s in ranked[:self.rerank_depth] if r in rows]
                ranked = _rerank(reranker, query, head, rows) + ranked[self.rerank_depth:]
            out.append(self._hits(ranked[:k], qvecs[i] if qvecs is not None else None, rows,
                                  run.sparse))
            bar.update()
        bar.close()
        return out

    def dense_hits(self, qvecs: np.ndarray, k: int) -> list[tuple[list[Hit], np.ndarray]]:
        """Dense top-k for a batch of query vectors (B, d): each question's hits and their
        passage vectors (k', d), so that d(z)·q(x) can be recomputed in torch (training)."""
        check_k(k)
        self.collection.refresh()
        runs = self.collection.dense_top(qvecs, k)
        if not any(runs):
            self._check_not_empty()
        rows = self.collection.passages(sorted({i for r in runs for i, _ in r}))
        out = []
        for q, ranked in zip(qvecs, runs, strict=True):
            hits = self._hits(ranked, q, rows)
            kept = [rows[i][1] for i, _ in ranked if i in rows]  # the hits' order
            vecs = np.stack(kept) if kept else np.zeros((0, len(q)))
            out.append((hits, vecs.astype(np.float32)))
        return out

    def _check_not_empty(self) -> None:
        if self.collection.is_empty():
            raise EmptyIndexError(f"{self.index.path} has no passages yet; add documents with: "
                                  f"ragline index FILES --index {self.index.path}")

    def _hits(self, ranked: Ranked, qvec: np.ndarray | None,
              rows: Rows,
              sparse_scores: Mapping[int, float] | None = None) -> list[Hit]:
        ranked = [(i, s) for i, s in ranked if i in rows]  # a stale id never becomes a hit
        # d(z)·q(x) for every returned passage, from its stored vector, so p(z|x) is defined
        # for hybrid and BM25 hits too (a passage BM25 found may be outside the dense top-n).
        dots = [float(rows[i][1] @ qvec) for i, _ in ranked] if qvec is not None else None
        probs = softmax(np.array(dots) * self.prior_scale) if dots else None
        sparse_scores = sparse_scores or {}
        return [Hit(passage=rows[i][0], score=float(s), rank=r + 1,
                    dense_score=dots[r] if dots is not None else None,
                    sparse_score=sparse_scores.get(i),
                    prob=float(probs[r]) if probs is not None else None)
                for r, (i, s) in enumerate(ranked)]


def collection_of(index: Index) -> Collection:
    """What an index's searches go through: its folder, or its shards in this process."""
    from ragline.index.shards import ShardedIndex

    if isinstance(index, ShardedIndex):
        from ragline.retrieve.sharded import LocalShard, ShardedCollection

        return ShardedCollection([LocalShard(s.folder, f"shard {i} ({s.path})")
                                  for i, s in enumerate(index.shards)])
    return FolderCollection(index.folder)


def _rerank(reranker: Reranker, query: str, ranked: Ranked,
            rows: Rows) -> Ranked:
    ids = [i for i, _ in ranked]
    scores = reranker.score(query, [rows[i][0] for i in ids])
    # stable sort: equal reranker scores keep the first-stage order
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [(ids[j], float(scores[j])) for j in order]

