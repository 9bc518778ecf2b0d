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
and checkpoints nothing refers to) are removed on the next open that can take the writer lock.

    folder = IndexFolder.create(path, encoder_spec, chunk_words=100)
    folder = IndexFolder.open(path)
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragline import __version__
from ragline.encode.base import EncoderSpec
from ragline.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    RaglineError,
)
from ragline.index.atomic import atomic_write_bytes
from ragline.index.dense import DenseSpec, FaissIndex, IVFPQIndex, load_dense, make_dense
from ragline.index.manifest import FORMAT_VERSION, fingerprint, matches, read_manifest
from ragline.index.rwlock import RWLock
from ragline.index.sparse import BM25Index
from ragline.index.store import Store, is_blank, source_key

log = logging.getLogger(__name__)

TOKENIZER_ID = "ragline-1"  # lower-case, snowball-english, jieba search mode; see ragline.text
MANIFEST = "manifest.json"
STORE = "store.sqlite"
DENSE = "dense.faiss"
SPARSE = "sparse"
UPLOADS = "uploads"      # files the server received, stored under their content hash
CHECKPOINTS = "model"    # trained models (ragline.model.train), the manifest names the live one
_STORE_FILES = {STORE, f"{STORE}-wal", f"{STORE}-shm", ".lock"}


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
        # writers of this process queue (re-entrant for the thread that holds it); other
        # processes fail at once
        self._writer = threading.RLock()
        self._writer_depth = 0

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
            if not _interrupted_creation(path):
                if (path / STORE).exists():
                    raise _no_manifest(path)
                raise RaglineError(f"{path} is a non-empty folder without a ragline index; "
                                   "choose an empty or new folder")
            log.warning("%s: finishing an index creation that was interrupted", path)
            for name in _STORE_FILES:
                (path / name).unlink(missing_ok=True)
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
        folder.store.open(create=True)
        folder.dense = make_dense(folder.dense_spec, encoder.dim)
        folder.sparse = BM25Index.build([], [])
        folder.persist()
        return folder

    @classmethod
    def open(cls, path: Path, expect_encoder: str | None = None) -> IndexFolder:
        mpath = path / MANIFEST
        if not mpath.is_file():
            if path.is_dir() and (path / STORE).exists() and not _interrupted_creation(path):
                raise _no_manifest(path)
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
        if self.manifest["generation"] > gen:
            # a crash can leave the store ahead of the manifest, never behind it
            log.warning("%s: the store (generation %s) is older than the search indexes "
                        "(generation %s): it was replaced or restored; rebuilding them from it",
                        self.path, gen, self.manifest["generation"])

    def check_encoder(self, encoder_id: str) -> None:
        have = self.encoder_spec.id
        from ragline.encode import load_encoder

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
        if self.manifest["generation"] == gen:
            why = self._derived_damage()
            if why is None:
                try:
                    self.dense = load_dense(self.path / DENSE, self.dense_spec,
                                            self.encoder_spec.dim)
                    self.sparse = BM25Index.load(self.path / SPARSE)
                    n = self.store.counts()["passages"]
                    if self.dense.ntotal == self.sparse.ntotal == n:
                        self._tidy_if_free()
                        return
                    why = "the search indexes disagree with the store"
                except IndexCorruptError as e:
                    why = str(e)
            log.warning("%s: %s; rebuilding the search indexes from the store", self.path, why)
        elif self.manifest["generation"] < gen:
            log.warning("%s: last write was interrupted (generation %s, store %s); rebuilding "
                        "the search indexes from the store", self.path,
                        self.manifest["generation"], gen)
        self.rebuild()
        try:
            with self.write_lock():
                if self.store.generation == gen:  # nobody committed meanwhile
                    self.persist()
                self._tidy()
        except IndexBusyError:
            pass  # the writer will persist its own state
        except OSError as e:  # a read-only folder: search from memory, repair next time
            log.warning("%s: could not save the rebuilt search indexes (%s)", self.path, e)

    def _derived_damage(self) -> str | None:
        """Why dense.faiss or sparse/ cannot be trusted, or None."""
        files = self.manifest.get("files") or {}
        for name, record in files.items():
            if not matches(record, self.path / name):
                what = "missing" if not (self.path / name).exists() else "not the file it recorded"
                return f"{name} is {what} (size and sha256 in manifest.json)"
        if not (self.path / DENSE).is_file() or not (self.path / SPARSE).is_dir():
            return "a search index file is missing"
        return None

    def _tidy_if_free(self) -> None:
        try:
            with self.write_lock():
                self._tidy()
        except (IndexBusyError, OSError):
            pass

    def _tidy(self) -> None:
        """Remove what killed writers left behind (call under the writer lock): temporary
        files and folders of atomic writes, uploads that no committed source refers to, and
        checkpoints the manifest does not name."""
        for p in self.path.iterdir():
            if p.name.startswith(".") and p.name.endswith((".tmp", ".old")):
                _remove(p)
        uploads = self.path / UPLOADS
        if uploads.is_dir():
            known = self.store.source_paths()
            for p in uploads.iterdir():
                if source_key(p) not in known:
                    _remove(p)
        checkpoints = self.path / CHECKPOINTS
        if checkpoints.is_dir():
            trained = self.manifest.get("trained") or {}
            named = [trained.get("path"), *((trained.get(part) or {}).get("path")
                                            for part in ("generator", "question_encoder"))]
            live = {Path(p).parts[1] for p in named if p and len(Path(p).parts) > 1}  # step-N
            for p in checkpoints.iterdir():
                if p.name not in live:
                    _remove(p)

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
        derived = [self.path / DENSE, *sorted(f for f in (self.path / SPARSE).rglob("*")
                                              if f.is_file())]
        self.manifest.update({
            "generation": gen, "ragline_version": __version__,
            "counts": self.store.counts(),
            "files": {f.relative_to(self.path).as_posix(): fingerprint(f) for f in derived},
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


def _no_manifest(path: Path) -> IndexCorruptError:
    return IndexCorruptError(f"{path}: manifest.json is missing; the index cannot be read. "
                             "Restore it from a backup, or move the folder away and index your "
                             "files again")


def _interrupted_creation(path: Path) -> bool:
    """A folder where `create` was killed before its first manifest: a store with no
    documents, perhaps empty search indexes, and nothing else."""
    names = {p.name for p in path.iterdir()}
    if STORE not in names or MANIFEST in names:
        return False
    if any(n not in _STORE_FILES | {DENSE, SPARSE}
           and not (n.startswith(".") and n.endswith((".tmp", ".old"))) for n in names):
        return False
    if is_blank(path / STORE):
        return True  # killed before the schema was written
    store = Store(path / STORE)
    try:
        store.open()
        return bool(store.counts()["documents"] == 0)
    except IndexCorruptError:
        return False
    finally:
        store.close()


def _remove(p: Path) -> None:
    log.info("removing leftover %s", p)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
