"""Search the shards of a sharded index as one corpus: fan out, merge.

Each shard answers for its own passages; the merge gives what one index of all of them gives:
- dense: every shard's exact top n, merged by score, is the exact top n of the corpus;
- BM25: a query is scored with the corpus statistics (live passages, their total length, the
  query terms' document frequencies), summed over the shards first, so every shard scores as
  the single index would; the merged top n is then the single index's;
- hybrid and weighted fuse the merged dense and BM25 rankings, as for one index (RRF breaks
  ties by rank, never by id: ragline.retrieve.fusion.rrf_top).
A passage's id is its shard's row id tagged with the shard (`gid`). A shard is anything with
the `Shard` methods: a folder in this process (`LocalShard`) or a Ray actor
(ragline.scale.actors).

    collection = ShardedCollection([LocalShard(f) for f in folders])
    collection.retriever("bm25", RetrievalConfig()).retrieve(["capital"], None, n=10)
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np

from ragline.config import RetrievalConfig
from ragline.errors import ConfigError, ShardUnavailableError
from ragline.index.folder import IndexFolder
from ragline.index.sparse import BM25Stats
from ragline.retrieve.base import Ranked, Retriever, Run
from ragline.retrieve.collection import FolderCollection, Rows
from ragline.retrieve.dense import DenseRetriever
from ragline.retrieve.hybrid import rrf_of, weighted_of
from ragline.text import tokenize

log = logging.getLogger(__name__)

SHARD_BITS = 40  # a shard's row ids stay below 2**40 (SQLite's rowids count up from 1)
T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads that wait on the shards (started on first use). Not the hybrid pool: a fused
    query's part waits there on its own fan-out, and waiting tasks must never fill the pool
    their work needs."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ragline-shards")
        return _POOL


def gid(shard: int, rowid: int) -> int:
    """A passage's id in a sharded collection."""
    return (shard << SHARD_BITS) | rowid


def split_gid(g: int) -> tuple[int, int]:
    return g >> SHARD_BITS, g & ((1 << SHARD_BITS) - 1)


class Shard(Protocol):
    """One shard's part of every query, in its own row ids. `name` is what errors show."""

    name: str

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]: ...

    def bm25_stats(self, token_lists: list[list[str]]) -> list[BM25Stats]: ...

    def bm25_top(self, token_lists: list[list[str]], n: int,
                 stats: list[BM25Stats] | None) -> list[Ranked]: ...

    def passages(self, rowids: list[int]) -> Rows: ...

    def size(self) -> int: ...


class LocalShard:
    """A shard folder opened in this process."""

    def __init__(self, folder: IndexFolder, name: str = "") -> None:
        self.folder = folder
        self.name = name or str(folder.path)

    # a query starts with dense_top, or bm25_stats (bm25_top without stats when one shard is
    # all): those first see what another process (`ragline index`, the Ray driver) committed

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]:
        self.folder.refresh()
        return DenseRetriever(self.folder).top(qvecs, n)

    def bm25_stats(self, token_lists: list[list[str]]) -> list[BM25Stats]:
        self.folder.refresh()
        with self.folder.searching.read():
            sparse = self.folder.sparse
            if sparse is None:
                raise RuntimeError("the BM25 index is not loaded")
            return [sparse.stats(tokens) for tokens in token_lists]

    def bm25_top(self, token_lists: list[list[str]], n: int,
                 stats: list[BM25Stats] | None) -> list[Ranked]:
        """`stats`: the corpus's, per query; None: this shard's own (it is the corpus)."""
        if stats is None:
            self.folder.refresh()
        out = []
        with self.folder.searching.read():  # an upload may be changing the segments
            sparse = self.folder.sparse
            if sparse is None:
                raise RuntimeError("the BM25 index is not loaded")
            given: list[BM25Stats | None] = list(stats) if stats else [None] * len(token_lists)
            for tokens, st in zip(token_lists, given, strict=True):
                scores, ids = sparse.search(tokens, n, st)
                out.append(list(zip(ids.tolist(), scores.tolist(), strict=True)))
        return out

    def passages(self, rowids: list[int]) -> Rows:
        return FolderCollection(self.folder).passages(rowids)

    def size(self) -> int:
        self.folder.refresh()
        dense = self.folder.dense
        return 0 if dense is None else dense.ntotal


class ShardedCollection:
    """`partial`: a shard that stays down is left out (with a warning naming it) instead of
    failing the query with ShardUnavailableError."""

    def __init__(self, shards: Sequence[Shard], partial: bool = False) -> None:
        if len(shards) >= 1 << (63 - SHARD_BITS):
            raise ConfigError(f"at most {1 << (63 - SHARD_BITS)} shards, got {len(shards)}")
        self.shards = list(shards)
        self.partial = partial

    def fan_out(self, call: Callable[[int, Shard], T]) -> list[T | None]:
        """`call(i, shard)` for every shard at once; None for a shard that is down when
        `partial` allows leaving it out."""
        def guarded(i: int, shard: Shard) -> T | None:
            try:
                return call(i, shard)
            except ShardUnavailableError as e:
                if not self.partial:
                    raise
                log.warning("%s; the results leave this shard out (%d of %d shards answered)",
                            e, len(self.shards) - 1, len(self.shards))
                return None

        if len(self.shards) == 1:
            out = [guarded(0, self.shards[0])]
        else:
            futures = [_pool().submit(guarded, i, s) for i, s in enumerate(self.shards)]
            out = [f.result() for f in futures]
        if all(r is None for r in out):
            raise ShardUnavailableError(f"all {len(self.shards)} shards are down")
        return out

    # ------------------------------------------------------------ Collection

    def retriever(self, mode: str, config: RetrievalConfig) -> Retriever:
        dense, bm25 = _ShardedDense(self), _ShardedBM25(self)
        parts: dict[str, Callable[[], Retriever]] = {
            "dense": lambda: dense, "bm25": lambda: bm25,
            "hybrid": lambda: rrf_of(dense, bm25, config),
            "weighted": lambda: weighted_of(dense, bm25, config)}
        if mode not in parts:
            raise ConfigError(f"retrieval mode '{mode}' does not search sharded indexes; "
                              f"choose one of: {', '.join(parts)}")
        return parts[mode]()

    def refresh(self) -> None:
        pass  # each shard catches up when a query reaches it (LocalShard, ShardServer)

    def passages(self, ids: Sequence[int]) -> Rows:
        wanted: dict[int, list[int]] = {}
        for g in ids:
            s, r = split_gid(g)
            wanted.setdefault(s, []).append(r)
        found = self.fan_out(lambda i, shard: shard.passages(wanted[i]) if i in wanted else {})
        return {gid(i, r): row for i, rows in enumerate(found) if rows for r, row in rows.items()}

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]:
        runs = self.fan_out(lambda i, shard: shard.dense_top(qvecs, n))
        return [_merge(per_query, n) for per_query in _by_query(runs, len(qvecs))]

    def is_empty(self) -> bool:
        return not any(self.fan_out(lambda i, shard: shard.size()))


def _by_query(runs: list[list[Ranked] | None], n_queries: int) -> list[list[Ranked | None]]:
    """(shards, queries) → (queries, shards), with row ids made gids."""
    return [[[(gid(i, r), s) for r, s in run[q]] if run is not None else None
             for i, run in enumerate(runs)] for q in range(n_queries)]


def _merge(rankings: Sequence[Ranked | None], n: int) -> Ranked:
    """The n best of sorted rankings, by score (ties by id)."""
    merged = heapq.merge(*(r for r in rankings if r), key=lambda x: (-x[1], x[0]))
    return list(itertools.islice(merged, n))


class _ShardedDense:
    name = "dense"
    uses_vectors = True

    def __init__(self, collection: ShardedCollection) -> None:
        self.collection = collection

    def retrieve(self, queries: Sequence[str], vectors: np.ndarray | None, n: int) -> list[Run]:
        if vectors is None:
            raise ValueError("dense retrieval needs the queries' vectors")
        return [Run(r) for r in self.collection.dense_top(np.asarray(vectors), n)]


class _ShardedBM25:
    name = "bm25"
    uses_vectors = False

    def __init__(self, collection: ShardedCollection) -> None:
        self.collection = collection

    def retrieve(self, queries: Sequence[str], vectors: np.ndarray | None, n: int) -> list[Run]:
        tokens = [tokenize(q) for q in queries]
        c = self.collection
        # two rounds: the statistics of the whole corpus, then every shard scores with them
        # (one shard is the whole corpus: its own statistics, one round)
        stats = None
        if len(c.shards) > 1:
            parts = [p for p in c.fan_out(lambda i, shard: shard.bm25_stats(tokens))
                     if p is not None]
            stats = [BM25Stats.total(per_query) for per_query in zip(*parts, strict=True)]
        runs = c.fan_out(lambda i, shard: shard.bm25_top(tokens, n, stats))
        out = []
        for per_query in _by_query(runs, len(queries)):
            ranked = _merge(per_query, n)
            out.append(Run(ranked, dict(ranked)))
        return out
