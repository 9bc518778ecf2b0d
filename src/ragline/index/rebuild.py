"""The derived indexes built again from the store, which keeps every passage's vector and
BM25 tokens: what an open does when they are missing or damaged, and what `ragline reindex`
does. Each is built aside (the folder swaps it in), in batches, with progress.

    dense = build_dense(store, DenseSpec("hnsw"), dim=384)
    sparse = build_sparse(store, manifest.sparse)
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ragline.index.dense import DenseSpec, VectorIndex, make_dense
from ragline.index.manifest import SparseSpec
from ragline.index.sparse import BUILD_CHUNK, BM25Index
from ragline.index.store import Store


def build_dense(store: Store, spec: DenseSpec, dim: int, progress: bool = False) -> VectorIndex:
    """A dense index of `spec`'s kind over every stored vector. A kind that learns from the
    corpus is trained on a sample of all of it first, so its lists fit the corpus, not its
    first batch."""
    dense = make_dense(spec, dim)
    n = store.n_passages()
    if not dense.trained and n >= dense.MIN_TRAIN:
        dense.train(_sample_vectors(store, n, dense.MAX_TRAIN), n)
    with tqdm(total=n, desc=f"dense ({dense.kind})", unit="passage", disable=not progress) as bar:
        for ids, vecs in store.iter_vectors():
            dense.add(ids, vecs)
            bar.update(len(ids))
    return dense


def _sample_vectors(store: Store, n: int, size: int) -> np.ndarray:
    """An evenly strided sample of about `size` of the store's n vectors."""
    stride = max(1, n // size)
    parts = []
    seen = 0
    for _, vecs in store.iter_vectors():
        first = (-seen) % stride  # keep rows whose global position is a multiple of stride
        parts.append(vecs[first::stride])
        seen += len(vecs)
    return np.concatenate(parts)[:size]


def build_sparse(store: Store, spec: SparseSpec, progress: bool = False) -> BM25Index:
    """BM25 over every stored passage's tokens, a segment per BUILD_CHUNK passages (merged as
    BM25Index merges them), so memory stays bounded by the chunk, not the corpus."""
    sparse = BM25Index(k1=spec.k1, b=spec.b)
    n = store.counts()["passages"]
    with tqdm(total=n, desc="BM25", unit="passage", disable=not progress) as bar:
        for rowids, tokens in store.iter_token_batches(BUILD_CHUNK):
            sparse.add(rowids, tokens)
            bar.update(len(rowids))
    return sparse
