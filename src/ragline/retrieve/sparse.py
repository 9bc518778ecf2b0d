"""BM25 retrieval over the tokens ragline.text.tokenize makes (jieba for CJK, Snowball stems).

    BM25Retriever(folder).retrieve(["capital of France"], None, n=10)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragline.index.folder import IndexFolder
from ragline.retrieve.base import Run
from ragline.text import tokenize


class BM25Retriever:
    name = "bm25"
    uses_vectors = False

    def __init__(self, folder: IndexFolder, config: Any = None) -> None:
        self.folder = folder

    def retrieve(self, queries: Sequence[str], vectors: np.ndarray | None,
                 n: int) -> list[Run]:
        out = []
        for query in queries:
            tokens = tokenize(query)
            with self.folder.searching.read():  # an upload may be changing the segments
                sparse = self.folder.sparse
                if sparse is None:
                    raise RuntimeError("the BM25 index is not loaded")
                scores, ids = sparse.search(tokens, n)
            ranked = list(zip(ids.tolist(), scores.tolist(), strict=True))
            out.append(Run(ranked, dict(ranked)))
        return out
