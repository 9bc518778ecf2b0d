"""An index is a folder: store.sqlite (truth), dense.faiss, sparse/ (BM25), manifest.json.

Commit protocol, so that a kill at any moment leaves the last committed index usable:
  1. change the store in one SQLite transaction (bumps the store's generation);
  2. write dense.faiss and sparse/ under temporary names and rename them into place;
  3. write manifest.json last, recording the generation the derived files reflect.
On open, a manifest generation behind the store's means step 2/3 did not finish: the derived
indexes are rebuilt from the store (vectors and tokens are kept there), never trusted stale.

    folder = IndexFolder.create(path, encoder_spec, chunk_words=100)
    folder = IndexFolder.open(path)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragline import __version__
from ragline.encode.base import EncoderSpec
from ragline.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, RaglineError
from ragline.index.atomic import atomic_write_bytes
from ragline.index.dense import DenseSpec, FaissIndex, IVFPQIndex, load_dense, make_dense
from ragline.index.rwlock import RWLock
from ragline.index.sparse import BM25Index
from ragline.index.store import Store

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TOKENIZER_ID = "ragline-1"  # lower-case, snowball-english, jieba search mode; see ragline.text
MANIFEST = "manifest.json"
STORE = "store.sqlite"
DENSE = "dense.faiss"
SPARSE = "sparse"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class IndexFolder:
    """Thread safety (the server searches while it indexes an upload): one writer at a time
    (`write_lock`); searches hold `searching.read()` around the dense index, whose in-place
    updates hold `searching.write()`; rebuilt indexes are built aside and swapped in. Store reads
    on the query path use per-thread connections, so they see committed data only. Between a
    store commit and the index update, a search can meet a removed passage's id: the retriever
    drops ids the store no longer has."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.store = Store(path / STORE)
        self.dense: FaissIndex | None = None
        self.sparse: BM25Index | None = None
        self.searching = RWLock()
        self._writer = threading.Lock()  # writers of this process queue; other processes fail

    @property
    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec.from_dict(self.manifest["encoder"])

    @property
    def dense_spec(self) -> DenseSpec:
        return DenseSpec.from_dict(self.manifest["dense"])

    @property
    def chunk_words(self) -> int:
        return int(self.manifest["chunking"]["words"])

    # ------------------------------------------------------------ create / open

    @classmethod
    def create(cls, path: Path, encoder: EncoderSpec, chunk_words: int = 100,
               dense: DenseSpec | None = None) -> IndexFolder:
        if (path / MANIFEST).exists():
            raise RaglineError(f"{path} already holds an index; open it instead")
        if path.exists() and not path.is_dir():
            raise RaglineError(f"{path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            raise RaglineError(f"{path} is a non-empty folder without a ragline index; "
                               "choose an empty or new folder")
        path.mkdir(parents=True, exist_ok=True)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = {
            "format": FORMAT_VERSION, "ragline_version": __version__,
            "encoder": encoder.to_dict(),
            "chunking": {"words": chunk_words, "unit": "word; 2 CJK characters = 1 word"},
            "dense": (dense or DenseSpec()).to_dict(),
            "sparse": {"kind": "bm25s", "k1": 1.5, "b": 0.75, "tokenizer": TOKENIZER_ID},
            "generation": -1, "counts": {}, "files": {}, "created": now, "updated": now,
        }
        folder = cls(path, manifest)
        folder.store.open()
        folder.dense = make_dense(folder.dense_spec, encoder.dim)
        folder.sparse = BM25Index.build([], [])
        folder.persist()
        return folder

    @classmethod
    def open(cls, path: Path, expect_encoder: str | None = None) -> IndexFolder:
        mpath = path / MANIFEST
        if not mpath.is_file():
            if path.is_dir() and (path / STORE).exists():
                raise IndexCorruptError(f"{path}: manifest.json is missing; the index cannot be read")
            raise IndexNotFoundError(
                f"no ragline index at {path}; create one with: ragline index FILES --index {path}")
        try:
            manifest = json.loads(mpath.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise IndexCorruptError(f"{mpath}: unreadable manifest ({e})") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"{path}: index format {manifest.get('format')} is not supported by ragline "
                f"{__version__} (format {FORMAT_VERSION}); rebuild the index")
        folder = cls(path, manifest)
        if expect_encoder is not None:
            folder.check_encoder(expect_encoder)
        folder.store.open()
        folder._load_derived()
        return folder

    def check_encoder(self, encoder_id: str) -> None:
        have = self.encoder_spec.id
        from ragline.encode import load_encoder

        want = load_encoder(encoder_id).spec.id
        if want != have:
            raise IndexMismatchError(
                f"{self.path} was built with encoder '{have}', not '{want}'; query it with "
                f"--encoder {have} or build a new index")

    def _load_derived(self) -> None:
        spec = self.encoder_spec
        gen = self.store.generation
        if self.manifest.get("generation") == gen:
            try:
                self.dense = load_dense(self.path / DENSE, self.dense_spec, spec.dim)
                self.sparse = BM25Index.load(self.path / SPARSE)
                if self.dense.ntotal == self.sparse.ntotal == self.store.counts()["passages"]:
                    return
                log.warning("%s: derived indexes disagree with the store; rebuilding", self.path)
            except IndexCorruptError as e:
                log.warning("%s; rebuilding it from the store", e)
        else:
            log.warning("%s: last write was interrupted (generation %s, store %s); rebuilding "
                        "the search indexes from the store", self.path,
                        self.manifest.get("generation"), gen)
        self.rebuild()

    # ------------------------------------------------------------ derived indexes

    def rebuild(self, progress: bool = False) -> None:
        """Recreate the dense and BM25 indexes from the store (vectors and tokens kept there)."""
        self.rebuild_dense()
        self.rebuild_sparse(progress)

    def rebuild_dense(self, spec: DenseSpec | None = None) -> None:
        """Recreate the dense index from the store's vectors, optionally as another kind (the
        manifest records it at the next `persist`). IVF-PQ is trained on a sample of the whole
        corpus first, so its lists fit the corpus rather than its first batch."""
        if spec is not None:
            self.manifest["dense"] = spec.to_dict()
        dense = make_dense(self.dense_spec, self.encoder_spec.dim)
        if isinstance(dense, IVFPQIndex):
            n = self.store.counts()["passages"]
            if n >= dense.MIN_TRAIN:
                dense.train(self._sample_vectors(n, dense.MAX_TRAIN), n)
        for ids, vecs in self.store.iter_vectors():
            dense.add(ids, vecs)
        self.dense = dense  # built aside, swapped in: searches never see a half-built index

    def _sample_vectors(self, n: int, size: int) -> np.ndarray:
        """An evenly strided sample of about `size` of the store's n vectors."""
        stride = max(1, n // size)
        parts = []
        seen = 0
        for _, vecs in self.store.iter_vectors():
            first = (-seen) % stride  # keep rows whose global position is a multiple of stride
            parts.append(vecs[first::stride])
            seen += len(vecs)
        return np.concatenate(parts)[:size]

    def rebuild_sparse(self, progress: bool = False) -> None:
        rowids: list[int] = []
        tokens: list[list[str]] = []
        for rowid, toks in self.store.iter_tokens():
            rowids.append(rowid)
            tokens.append(toks)
        sp = self.manifest["sparse"]
        self.sparse = BM25Index.build(rowids, tokens, k1=sp["k1"], b=sp["b"], progress=progress)

    def persist(self) -> None:
        """Steps 2 and 3 of the commit protocol (see the module docstring)."""
        assert self.dense is not None and self.sparse is not None
        gen = self.store.generation
        self.dense.save(self.path / DENSE)
        self.sparse.save(self.path / SPARSE)
        dense_path = self.path / DENSE
        self.manifest.update({
            "generation": gen, "ragline_version": __version__,
            "counts": self.store.counts(),
            "files": {DENSE: {"bytes": dense_path.stat().st_size,
                              "sha256": _file_sha256(dense_path)}},
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        self.save_manifest()

    def save_manifest(self) -> None:
        """Rewrite manifest.json alone (atomically), e.g. to record a trained model."""
        atomic_write_bytes(self.path / MANIFEST,
                           json.dumps(self.manifest, indent=2, ensure_ascii=False).encode())

    def apply_dense(self, removed: list[int], added_ids: list[int] | None = None,
                    added_vecs: np.ndarray | None = None) -> None:
        """Mirror a committed store change in the in-memory dense index."""
        assert self.dense is not None
        if removed and not self.dense.supports_remove:
            self.rebuild_dense()  # the store already holds the change, additions included
            return
        with self.searching.write():  # FAISS must not be searched while it changes
            self.dense.remove(np.asarray(removed, dtype=np.int64))
            if added_ids:
                if added_vecs is None:
                    raise ValueError("apply_dense: added_ids given without added_vecs")
                self.dense.add(np.asarray(added_ids, dtype=np.int64), added_vecs)
        self._maybe_train()

    def _maybe_train(self) -> None:
        """An untrained IVF-PQ index trains once the corpus is large enough."""
        dense = self.dense
        if isinstance(dense, IVFPQIndex) and not dense.trained and dense.ntotal >= dense.MIN_TRAIN:
            self.rebuild_dense()

    # ------------------------------------------------------------ writer lock

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time per index folder: another thread of this process waits its
        turn, another process gets an error at once (readers never wait). Not reentrant."""
        with self._writer:
            fd = os.open(self.path / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RaglineError(f"{self.path} is being written by another process; "
                                       "wait for it to finish") from None
                yield
            finally:
                os.close(fd)

    def close(self) -> None:
        self.store.close()
