"""Dense vector indexes over passage row ids: maximum inner product search with FAISS.

Three kinds, chosen per index and recorded in the manifest (`DenseSpec`):

  flat   exact search (IndexFlatIP); 4·dim bytes per vector; the default
  hnsw   graph search (HNSW, M links per node); flat vectors plus ≈ 8·M bytes of links; fast
         queries at millions of vectors, slow to build, no in-place removal (rebuilt instead)
  ivfpq  inverted lists + product quantization: ≈ pq_m bytes per vector (48 for 384-d), the
         choice when vectors no longer fit in memory; trained on the corpus, so below
         `IVFPQIndex.MIN_TRAIN` vectors it stays exact until there is enough to train on

The approximate kinds return candidates that the retriever rescores exactly from the vectors
kept in the store (`DenseSpec.refine`), so a coarse code costs little recall.

    index = make_dense(DenseSpec("hnsw"), dim=384); index.add(ids, vecs)
    scores, ids = index.search(q, k=5)        # (n_queries, k) each; id -1 = no result
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragline.errors import ConfigError, IndexCorruptError, missing_extra
from ragline.index.atomic import temp_path_beside
from ragline.registry import DENSE_KINDS

log = logging.getLogger(__name__)



AUTO_LARGE = 200_000  # passages: where an automatic index leaves exact search


@dataclass(frozen=True)
class DenseSpec:
    """How the dense index is built and searched; stored in manifest.json under "dense"."""

    kind: str = "flat"
    hnsw_m: int = 32              # links per node
    ef_construction: int = 80
    ef_search: int = 128          # candidates explored per query (recall ↔ latency)
    nlist: int = 0                # inverted lists; 0: ≈ √n (a power of two) at training time
    pq_m: int = 0                 # sub-quantizers of 8 bits; 0: dim / 8 (48 bytes for 384-d)
    nprobe: int = 32              # lists visited per query
    refine: int = 4               # approximate kinds: rescore refine·k candidates exactly
    auto: bool = False            # the kind follows the corpus size (nobody chose one)

    def __post_init__(self) -> None:
        DENSE_KINDS.check(self.kind)
        if not isinstance(self.auto, bool):
            raise ConfigError(f"dense.auto must be true or false, got {self.auto!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "refine"):
            if getattr(self, name) < 1:
                raise ConfigError(f"dense.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.nlist < 0 or self.pq_m < 0:
            raise ConfigError("dense.nlist and dense.pq_m must be ≥ 0 (0 = automatic)")

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def for_size(self, n: int) -> DenseSpec | None:
        """The spec an automatic index switches to at n passages, or None to stay: exact
        search up to AUTO_LARGE passages (a flat scan stays in the milliseconds there), then
        IVF-PQ, whose 48-byte codes keep a million passages in under 100 MB (HNSW needs the
        flat vectors plus its graph: 1.8 GB at 1M). nprobe 128: at 1M passages (1,024 lists)
        hybrid search then finds 0.97 of what it finds over exact search, in 16-20 ms at
        p95 on 2 cores (bench/scale.py); nprobe 32 found 0.94."""
        if self.auto and self.kind == "flat" and n >= AUTO_LARGE:
            return DenseSpec("ivfpq", nprobe=128, auto=True)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metric": "inner_product"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenseSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class VectorIndex(Protocol):
    """Maximum inner product search over vectors keyed by passage row ids.

    Contract (tests/test_dense_kinds.py runs it for every kind):
    - `search(queries (n, dim), k)` → (scores, ids), each (n, min(k, ntotal)), best first;
      id -1 pads a row with fewer results; an empty index gives (n, 0) arrays.
    - `add` then `search` finds each vector as its own best match (exact kinds; approximate
      ones nearly always). `remove` drops ids at once: from the index itself, or (HNSW, whose
      graph cannot lose nodes) as tombstones filtered out at search time, counted by `deleted`
      until the index folder compacts it (rebuilds it from the store). `ids()` lists the live
      ids held.
    - A kind that learns from the corpus is not `trained` until `train(sample, n_total)` is
      called with at least MIN_TRAIN vectors (0: it never needs training); until then it
      searches exactly.
    - `save(path)` replaces the file atomically; `load_dense` reads it back.
    """

    kind: str
    dim: int
    MIN_TRAIN: int
    MAX_TRAIN: int

    @property
    def ntotal(self) -> int: ...

    @property
    def trained(self) -> bool: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def ids(self) -> np.ndarray: ...

    @property
    def deleted(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def train(self, sample: np.ndarray, n_total: int) -> None: ...

    def save(self, path: Path) -> None: ...

    def describe(self) -> str: ...


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise missing_extra("faiss-cpu", "core") from None
    return faiss


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _i64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.int64)


class FaissIndex:
    """Exact inner-product search (IndexFlatIP) under an id map, so ids are store row ids.
    The base of the other kinds: they differ in the FAISS index inside and its search knobs."""

    kind = "flat"
    MIN_TRAIN = 0   # nothing to learn
    MAX_TRAIN = 0

    def __init__(self, dim: int, index: Any = None, spec: DenseSpec | None = None) -> None:
        self.dim = dim
        self.spec = spec or DenseSpec(self.kind)
        self._index = index if index is not None else self._empty()

    def _empty(self) -> Any:
        faiss = _faiss()
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def trained(self) -> bool:
        return True

    def train(self, sample: np.ndarray, n_total: int) -> None:
        """Flat and HNSW indexes learn nothing from the corpus."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(_f32(vectors), _i64(ids))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(_i64(ids))

    @property
    def deleted(self) -> int:
        return 0

    def ids(self) -> np.ndarray:
        return _faiss().vector_to_array(self._index.id_map).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.ntotal == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        # FAISS pads with id -1 when k exceeds what it can return; callers drop those
        k = max(1, min(k, self.ntotal))
        self._set_search_params()
        scores, ids = self._index.search(_f32(queries), k)
        return scores, ids

    def _set_search_params(self) -> None:
        pass

    def describe(self) -> str:
        return "flat (exact)"

    def save(self, path: Path) -> None:
        tmp = temp_path_beside(path)
        try:
            _faiss().write_index(self._index, str(tmp))
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class HNSWIndex(FaissIndex):
    """HNSW graph over flat vectors. FAISS cannot delete from the graph (rebuilding it took
    91 s at 1M vectors), so a removal is a tombstone: searches skip tombstoned ids through a
    FAISS id selector, and the index folder rebuilds the graph once they pile up."""

    kind = "hnsw"

    def __init__(self, dim: int, index: Any = None, spec: DenseSpec | None = None) -> None:
        super().__init__(dim, index, spec)
        self._dead = np.zeros(0, np.int64)  # sorted tombstoned ids

    def _empty(self) -> Any:
        faiss = _faiss()
        hnsw = faiss.IndexHNSWFlat(self.dim, self.spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self.spec.ef_construction
        return faiss.IndexIDMap2(hnsw)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) - len(self._dead)

    @property
    def deleted(self) -> int:
        return len(self._dead)

    def remove(self, ids: np.ndarray) -> None:
        held = super().ids()
        ids = _i64(ids)
        self._dead = np.union1d(self._dead, ids[np.isin(ids, held)])

    def ids(self) -> np.ndarray:
        held = super().ids()
        return held[~np.isin(held, self._dead)] if len(self._dead) else held

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(self._dead) or self.ntotal == 0:
            return super().search(queries, k)
        faiss = _faiss()
        k = max(1, min(k, self.ntotal))
        # the selector sees the ids of the IDMap (FAISS translates them for the inner graph)
        params = faiss.SearchParametersHNSW(
            sel=faiss.IDSelectorNot(faiss.IDSelectorBatch(self._dead)), efSearch=self.spec.ef_search)
        scores, ids = self._index.search(_f32(queries), k, params=params)
        return scores, ids

    def _set_search_params(self) -> None:
        _faiss().downcast_index(self._index.index).hnsw.efSearch = self.spec.ef_search

    def describe(self) -> str:
        dead = f", {self.deleted:,} removed until compaction" if self.deleted else ""
        return (f"hnsw (M={self.spec.hnsw_m}, efConstruction={self.spec.ef_construction}, "
                f"efSearch={self.spec.ef_search}{dead})")


class IVFPQIndex(FaissIndex):
    """IVF with product-quantized codes. Untrained (too few vectors to learn the codebooks) it
    is an exact flat index; `train` learns lists and codebooks from a sample of the corpus and
    moves every vector over. Its vectors are kept in the store, so nothing is lost to the codes."""

    kind = "ivfpq"
    MIN_TRAIN = 39 * 256  # FAISS wants ≥ 39 points per centroid; PQ has 256 per sub-quantizer
    MAX_TRAIN = 64 * 1024

    @property
    def trained(self) -> bool:
        """Holds IVF-PQ codes (else the exact flat index it keeps until it can train)."""
        faiss = _faiss()
        return isinstance(faiss.downcast_index(self._index), faiss.IndexIVF)

    def nlist_for(self, n: int) -> int:
        if self.spec.nlist:
            return self.spec.nlist
        # ≈ √n lists (FAISS's rule of thumb is 4√n–16√n; fewer lists train faster on 2 cores
        # and nprobe makes up the recall), at least 39 training points per list
        nlist = 2 ** round(math.log2(max(16.0, math.sqrt(n))))
        return int(max(16, min(nlist, n // 39)))

    def train(self, sample: np.ndarray, n_total: int) -> None:
        """Learn the coarse lists and PQ codebooks from `sample`, then re-add every vector."""
        faiss = _faiss()
        if len(sample) < self.MIN_TRAIN:
            raise ValueError(f"IVF-PQ needs ≥ {self.MIN_TRAIN} training vectors, got {len(sample)}")
        pq_m = self.spec.pq_m or max(1, self.dim // 8)
        if self.dim % pq_m:
            raise ConfigError(f"dense.pq_m={pq_m} must divide the vector dimension {self.dim}")
        nlist = self.nlist_for(n_total)
        ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(self.dim), self.dim, nlist, pq_m, 8,
                               faiss.METRIC_INNER_PRODUCT)
        ivf.train(_f32(sample))
        old = self._index
        self._index = ivf
        if old.ntotal:  # vectors held while untrained: an IndexIDMap2 over a flat index
            ids = faiss.vector_to_array(old.id_map).astype(np.int64)
            self.add(ids, faiss.downcast_index(old.index).reconstruct_n(0, old.ntotal))
        log.info("IVF-PQ trained on %d vectors: %d lists, %d-byte codes", len(sample), nlist, pq_m)

    def ids(self) -> np.ndarray:
        if not self.trained:
            return super().ids()
        faiss = _faiss()
        lists = faiss.extract_index_ivf(self._index).invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(lists.nlist) if lists.list_size(i)]
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _set_search_params(self) -> None:
        if self.trained:
            faiss = _faiss()
            faiss.downcast_index(self._index).nprobe = min(self.spec.nprobe,
                                                          faiss.downcast_index(self._index).nlist)

    def describe(self) -> str:
        if not self.trained:
            return f"ivfpq (untrained: exact until {self.MIN_TRAIN:,} passages)"
        ivf = _faiss().downcast_index(self._index)
        return f"ivfpq (nlist={ivf.nlist}, {ivf.pq.M}-byte codes, nprobe={self.spec.nprobe})"


def make_dense(spec: DenseSpec, dim: int) -> VectorIndex:
    index: VectorIndex = DENSE_KINDS.create(spec.kind, dim, spec=spec)
    return index


def load_dense(path: Path, spec: DenseSpec, dim: int) -> VectorIndex:
    try:
        raw = _faiss().read_index(str(path))
    except RuntimeError as e:
        raise IndexCorruptError(f"{path}: unreadable FAISS index ({e})") from None
    if raw.d != dim:
        raise IndexCorruptError(f"{path}: vectors have dim {raw.d}, manifest says {dim}")
    index: VectorIndex = DENSE_KINDS.create(spec.kind, dim, raw, spec)
    return index
