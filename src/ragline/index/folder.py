"""An index is a folder: store.sqlite (truth), dense.faiss, sparse/ (BM25), manifest.json.

Commit protocol, so that a kill at any moment leaves the last committed index usable:
  1. change the store in one SQLite transaction (bumps the store's generation);
  2. write dense.faiss and sparse/ under temporary names and rename them into place;
  3. write manifest.json last, recording the generation the derived files reflect.
On open, a manifest generation behind the store's means step 2/3 did not finish, and a derived
file that is missing or does not match the size and hash the manifest records was damaged or
swapped: either way the derived indexes are rebuilt from the store (vectors and tokens are kept
there), never trusted stale. A missing or empty store is damage nothing can repair: open refuses
(IndexCorruptError) and writes nothing. Leftovers of a killed writer (temporary files, uploads
and checkpoints nothing refers to) are removed on the next open that can take the writer lock
(see ragline.index.upkeep).

    folder = IndexFolder.create(path, encoder_spec, chunk_words=100)
    folder = IndexFolder.open(path)
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from ragline import __version__
from ragline.encode.base import EncoderSpec
from ragline.errors import IndexBusyError, IndexCorruptError, IndexNotFoundError, RaglineError
from ragline.index.dense import DenseSpec, VectorIndex, load_dense, make_dense
from ragline.index.manifest import Manifest, fingerprint, read_manifest, write_manifest
from ragline.index.rwlock import RWLock
from ragline.index.sparse import BM25Index
from ragline.index.store import Store
from ragline.index.upkeep import (
    DENSE,
    MANIFEST,
    SPARSE,
    STORE,
    STORE_FILES,
    derived_damage,
    interrupted_creation,
    no_manifest,
    tidy,
)

log = logging.getLogger(__name__)


class IndexFolder:
    """Thread safety (the server searches while it indexes an upload): one writer at a time
    (`write_lock`); searches hold `searching.read()` around the dense index, whose in-place
    updates hold `searching.write()`; rebuilt indexes are built aside and swapped in. Store reads
    on the query path use per-thread connections, so they see committed data only. Between a
    store commit and the index update, a search can meet a removed passage's id: the retriever
    drops ids the store no longer has."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self.store = Store(path / STORE)
        self.dense: VectorIndex | None = None
        self.sparse: BM25Index | None = None
        self.searching = RWLock()
        # writers of this process queue (re-entrant for the thread that holds it); other
        # processes fail at once
        self._writer = threading.RLock()
        self._writer_depth = 0

    @property
    def encoder_spec(self) -> EncoderSpec:
        return self.manifest.encoder

    @property
    def dense_spec(self) -> DenseSpec:
        return self.manifest.dense

    @property
    def chunk_words(self) -> int:
        return self.manifest.chunk_words

    # ------------------------------------------------------------ create / open

    @classmethod
    def create(cls, path: Path, encoder: EncoderSpec, chunk_words: int = 100,
               dense: DenseSpec | None = None) -> IndexFolder:
        if (path / MANIFEST).exists():
            raise RaglineError(f"{path} already holds an index; open it instead")
        if path.exists() and not path.is_dir():
            raise RaglineError(f"{path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            if not interrupted_creation(path):
                if (path / STORE).exists():
                    raise no_manifest(path)
                raise RaglineError(f"{path} is a non-empty folder without a ragline index; "
                                   "choose an empty or new folder")
            log.warning("%s: finishing an index creation that was interrupted", path)
            for name in STORE_FILES:
                (path / name).unlink(missing_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        folder = cls(path, Manifest(encoder=encoder, chunk_words=chunk_words,
                                    dense=dense or DenseSpec(), ragline_version=__version__))
        folder.store.open(create=True)
        folder.dense = make_dense(folder.dense_spec, encoder.dim)
        folder.sparse = BM25Index.build([], [])
        folder.persist()
        return folder

    @classmethod
    def open(cls, path: Path, expect_encoder: str | None = None) -> IndexFolder:
        mpath = path / MANIFEST
        if not mpath.is_file():
            if path.is_dir() and (path / STORE).exists() and not interrupted_creation(path):
                raise no_manifest(path)
            raise IndexNotFoundError(
                f"no ragline index at {path}; create one with: ragline index FILES --index {path}")
        folder = cls(path, read_manifest(mpath))
        if expect_encoder is not None:
            folder.check_encoder(expect_encoder)
        folder.store.open()
        try:
            folder._check_store()
            folder._load_derived()
        except BaseException:
            folder.close()
            raise
        return folder

    def _check_store(self) -> None:
        """The store must be the one this manifest describes."""
        have = self.store.vector_bytes()
        if have is not None and have != 4 * self.encoder_spec.dim:
            raise IndexCorruptError(
                f"{self.path}: the manifest says {self.encoder_spec.dim}-d vectors but the store "
                f"holds {have // 4}-d ones; manifest.json does not belong to this store. Restore "
                "it from a backup or rebuild the index")
        gen = self.store.generation
        if self.manifest.generation > gen:
            # a crash can leave the store ahead of the manifest, never behind it
            log.warning("%s: the store (generation %s) is older than the search indexes "
                        "(generation %s): it was replaced or restored; rebuilding them from it",
                        self.path, gen, self.manifest.generation)

    def check_encoder(self, encoder_id: str) -> None:
        from ragline.encode import load_encoder
        from ragline.errors import IndexMismatchError

        have = self.encoder_spec.id
        want = load_encoder(encoder_id).spec.id
        if want != have:
            raise IndexMismatchError(
                f"{self.path} was built with encoder '{have}', not '{want}'; query it with "
                f"--encoder {have} or build a new index")

    def _load_derived(self) -> None:
        """Load dense.faiss and sparse/ if they are the files the manifest vouches for and
        reflect the store's last commit; otherwise rebuild them from the store and, when no
        other process is writing, save them (so the next open need not rebuild). Leftovers of
        killed writers are removed under the same lock."""
        gen = self.store.generation
        if self.manifest.generation == gen:
            why = derived_damage(self.path, self.manifest)
            if why is None:
                try:
                    self.dense = load_dense(self.path / DENSE, self.dense_spec,
                                            self.encoder_spec.dim)
                    self.sparse = BM25Index.load(self.path / SPARSE)
                    n = self.store.counts()["passages"]
                    if self.dense.ntotal == self.sparse.ntotal == n:
                        self._tidy(persist=False)
                        return
                    why = "the search indexes disagree with the store"
                except IndexCorruptError as e:
                    why = str(e)
            log.warning("%s: %s; rebuilding the search indexes from the store", self.path, why)
        elif self.manifest.generation < gen:
            log.warning("%s: last write was interrupted (generation %s, store %s); rebuilding "
                        "the search indexes from the store", self.path,
                        self.manifest.generation, gen)
        self.rebuild()
        self._tidy(persist=True)

    def _tidy(self, persist: bool) -> None:
        """Under the writer lock if it is free: save what was rebuilt in memory (unless someone
        committed meanwhile) and remove leftovers. A busy or read-only folder is left as is."""
        gen = self.store.generation
        try:
            with self.write_lock():
                if persist and self.store.generation == gen:
                    self.persist()
                tidy(self.path, self.store, self.manifest)
        except IndexBusyError:
            pass  # the writer will persist its own state
        except OSError as e:  # a read-only folder: search from memory, repair next time
            if persist:
                log.warning("%s: could not save the rebuilt search indexes (%s)", self.path, e)

    # ------------------------------------------------------------ derived indexes

    def rebuild(self, progress: bool = False) -> None:
        """Recreate the dense and BM25 indexes from the store (vectors and tokens kept there)."""
        self.rebuild_dense()
        self.rebuild_sparse(progress)

    def rebuild_dense(self, spec: DenseSpec | None = None) -> None:
        """Recreate the dense index from the store's vectors, optionally as another kind (the
        manifest records it at the next `persist`). A kind that learns from the corpus is
        trained on a sample of all of it first, so its lists fit the corpus, not its first batch."""
        if spec is not None:
            self.manifest = replace(self.manifest, dense=spec)
        dense = make_dense(self.dense_spec, self.encoder_spec.dim)
        if not dense.trained:
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
        sp = self.manifest.sparse
        self.sparse = BM25Index.build(rowids, tokens, k1=sp.k1, b=sp.b, progress=progress)

    def persist(self) -> None:
        """Steps 2 and 3 of the commit protocol (see the module docstring)."""
        if self.dense is None or self.sparse is None:
            raise RuntimeError("persist() before the search indexes were loaded or built")
        gen = self.store.generation
        self.dense.save(self.path / DENSE)
        self.sparse.save(self.path / SPARSE)
        derived = [self.path / DENSE, *sorted(f for f in (self.path / SPARSE).rglob("*")
                                              if f.is_file())]
        self.manifest = self.manifest.updated_now(
            generation=gen, ragline_version=__version__, counts=self.store.counts(),
            files={f.relative_to(self.path).as_posix(): fingerprint(f) for f in derived})
        self.save_manifest()

    def save_manifest(self) -> None:
        """Rewrite manifest.json alone (atomically), e.g. to record a trained model."""
        write_manifest(self.path / MANIFEST, self.manifest)

    def apply_dense(self, removed: list[int], added_ids: list[int] | None = None,
                    added_vecs: np.ndarray | None = None) -> None:
        """Mirror a committed store change in the in-memory dense index."""
        if self.dense is None:
            raise RuntimeError("apply_dense() before the dense index was loaded or built")
        if removed and not self.dense.supports_remove:
            self.rebuild_dense()  # the store already holds the change, additions included
            return
        with self.searching.write():  # FAISS must not be searched while it changes
            self.dense.remove(np.asarray(removed, dtype=np.int64))
            if added_ids:
                if added_vecs is None:
                    raise ValueError("apply_dense: added_ids given without added_vecs")
                self.dense.add(np.asarray(added_ids, dtype=np.int64), added_vecs)
        if not self.dense.trained and self.dense.ntotal >= self.dense.MIN_TRAIN:
            self.rebuild_dense()  # large enough now to learn from the whole corpus

    # ------------------------------------------------------------ writer lock

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time per index folder: another thread of this process waits its
        turn, another process gets IndexBusyError at once (readers never wait). Re-entrant
        for the thread that holds it."""
        with self._writer:
            if self._writer_depth:
                self._writer_depth += 1
                try:
                    yield
                finally:
                    self._writer_depth -= 1
                return
            fd = os.open(self.path / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise IndexBusyError(f"{self.path} is being written by another process; "
                                         "wait for it to finish") from None
                self._writer_depth = 1
                try:
                    yield
                finally:
                    self._writer_depth = 0
            finally:
                os.close(fd)

    def close(self) -> None:
        self.store.close()
