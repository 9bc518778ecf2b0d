"""Dense vector index over passage row ids: maximum inner product search with FAISS.

    index = FaissIndex(dim=384); index.add(ids, vecs)
    scores, ids = index.search(q, k=5)        # (n_queries, k) each; id -1 = no result
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragline.errors import IndexCorruptError, missing_extra
from ragline.index.atomic import temp_path_beside


class VectorIndex(Protocol):
    dim: int

    @property
    def ntotal(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: Path) -> None: ...


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise missing_extra("faiss-cpu", "core") from None
    return faiss


class FaissIndex:
    """Exact inner-product search (IndexFlatIP) under an id map, so ids are store row ids."""

    kind = "flat"

    def __init__(self, dim: int, index: Any = None) -> None:
        self.dim = dim
        faiss = _faiss()
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                     np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # FAISS pads with id -1 when k exceeds the number of vectors
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def save(self, path: Path) -> None:
        tmp = temp_path_beside(path)
        try:
            _faiss().write_index(self._index, str(tmp))
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, dim: int) -> FaissIndex:
        try:
            index = _faiss().read_index(str(path))
        except RuntimeError as e:
            raise IndexCorruptError(f"{path}: unreadable FAISS index ({e})") from None
        if index.d != dim:
            raise IndexCorruptError(f"{path}: vectors have dim {index.d}, manifest says {dim}")
        return cls(dim, index)
