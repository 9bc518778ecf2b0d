"""What a Searcher searches: the passages of one index folder, or of the shards of a sharded
index (ragline.retrieve.sharded). Ids are ints either way: a folder's row ids, or row ids
tagged with their shard.

    collection = FolderCollection(index.folder)
    collection.retriever("hybrid", RetrievalConfig()).retrieve(queries, vectors, n=10)
    collection.passages([3, 7])          # {3: (Passage, vector), 7: …}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ragline.config import RetrievalConfig
from ragline.index.folder import IndexFolder
from ragline.registry import RETRIEVERS
from ragline.retrieve.base import Ranked, Retriever
from ragline.retrieve.dense import DenseRetriever
from ragline.types import Passage

Rows = dict[int, tuple[Passage, np.ndarray]]  # id → (passage, its stored vector)


class Collection(Protocol):
    """Contract: `passages` leaves out ids it no longer holds (removed since they were
    found); `dense_top` is DenseRetriever.top over all the passages; `refresh` catches up
    with what another process committed (every search starts with it)."""

    def retriever(self, mode: str, config: RetrievalConfig) -> Retriever: ...

    def refresh(self) -> None: ...

    def passages(self, ids: Sequence[int]) -> Rows: ...

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]: ...

    def is_empty(self) -> bool: ...


class FolderCollection:
    """The passages of one index folder."""

    def __init__(self, folder: IndexFolder) -> None:
        self.folder = folder

    def retriever(self, mode: str, config: RetrievalConfig) -> Retriever:
        retriever: Retriever = RETRIEVERS.create(mode, self.folder, config)
        return retriever

    def refresh(self) -> None:
        self.folder.refresh()

    def passages(self, ids: Sequence[int]) -> Rows:
        return self.folder.store.passages_by_rowid(list(ids))

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]:
        return DenseRetriever(self.folder).top(qvecs, n)

    def is_empty(self) -> bool:
        dense = self.folder.dense  # in memory: counting the store's rows costs ms at 100k
        return dense is None or dense.ntotal == 0
