"""Dense retrieval: maximum inner product search over the index's vectors (FAISS).

    DenseRetriever(folder).retrieve(queries, vectors, n=10)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragline.index.folder import IndexFolder
from ragline.retrieve.base import Ranked, Run


class DenseRetriever:
    """Approximate kinds (HNSW, IVF-PQ) return refine·n candidates that are rescored exactly
    against the vectors kept in the store, so coarse codes cost little recall."""

    name = "dense"
    uses_vectors = True

    def __init__(self, folder: IndexFolder, config: Any = None) -> None:
        self.folder = folder

    def retrieve(self, queries: Sequence[str], vectors: np.ndarray | None,
                 n: int) -> list[Run]:
        if vectors is None:
            raise ValueError("dense retrieval needs the queries' vectors")
        return [Run(ranked) for ranked in self.top(np.asarray(vectors), n)]

    def top(self, qvecs: np.ndarray, n: int) -> list[Ranked]:
        """Dense top-n per query vector (B, d)."""
        spec = self.folder.dense_spec
        with self.folder.searching.read():  # an upload may be adding to this index in place
            dense = self.folder.dense
            if dense is None:
                raise RuntimeError("the dense index is not loaded")
            scores, ids = dense.search(qvecs, n if spec.exact else n * spec.refine)
        if spec.exact:
            return [[(int(i), float(s)) for i, s in zip(row, sc, strict=True) if i >= 0]
                    for row, sc in zip(ids, scores, strict=True)]
        vecs = self.folder.store.vectors_by_rowid(sorted({int(i) for i in ids.ravel() if i >= 0}))
        out: list[Ranked] = []
        for q, row in zip(qvecs, ids, strict=True):
            cand = [int(i) for i in row if int(i) in vecs]
            if not cand:
                out.append([])
                continue
            exact = np.stack([vecs[i] for i in cand]) @ q  # (n·refine,) exact d(z)·q(x)
            order = np.argsort(-exact, kind="stable")[:n]
            out.append([(cand[j], float(exact[j])) for j in order])
        return out
