"""Retrieval: the Retriever protocol (dense, BM25, hybrid fusion), the Searcher that turns
rankings into Hits with p(z|x), rerankers, and fusion as pure functions."""

from ragline.retrieve.base import Ranked, Retriever, Run
from ragline.retrieve.fusion import minmax, rrf, softmax, weighted
from ragline.retrieve.searcher import MAX_K, Searcher, check_k, check_query

__all__ = ["MAX_K", "Ranked", "Retriever", "Run", "Searcher", "check_k", "check_query", "minmax",
           "rrf", "softmax", "weighted"]
