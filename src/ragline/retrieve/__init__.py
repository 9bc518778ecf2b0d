"""Retrieval: dense (FAISS), BM25, hybrid fusion (pure functions)."""

from ragline.retrieve.fusion import minmax, rrf, softmax, weighted
from ragline.retrieve.retriever import MODES, Retriever, check_k

__all__ = ["MODES", "Retriever", "check_k", "minmax", "rrf", "softmax", "weighted"]
