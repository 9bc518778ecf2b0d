"""The index folder: SQLite store (truth), FAISS dense index, BM25 index, manifest."""

from ragline.index.dense import FaissIndex, VectorIndex
from ragline.index.folder import IndexFolder
from ragline.index.index import Index
from ragline.index.sparse import BM25Index
from ragline.index.store import Store

__all__ = ["BM25Index", "FaissIndex", "Index", "IndexFolder", "Store", "VectorIndex"]
