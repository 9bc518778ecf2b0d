"""An index is a folder: store.sqlite (truth), dense.faiss, sparse/ (BM25 segments), manifest.json.

Commit protocol, so that a kill at any moment leaves the last committed index usable:
  1. change the store in one SQLite transaction (bumps the store's generation), then mirror
     the change in the in-memory dense and BM25 indexes (`apply`);
  2. write new BM25 segments (immutable folders) and, when enough changed, dense.faiss, under
     temporary names renamed into place;
  3. write manifest.json last: the generation, the segments that make the BM25 index, and the
     size and hash of every derived file.
The store keeps every passage's vector and tokens, so the derived files may lag behind it: on
open they are caught up (passages committed since they were saved are added, deleted ones
removed), which is what makes a write cost what it changes, not the size of the index. A derived
file that is missing or does not match what the manifest records, or a store older than the
manifest (restored from a backup), makes open rebuild the derived indexes from the store. A
missing or empty store is damage nothing can repair: open refuses (IndexCorruptError) and writes
nothing. Leftovers of a killed writer (temporary files, unlisted segments, uploads and
checkpoints nothing refers to) are removed on the next open that can take the writer lock (see
ragline.index.upkeep).

    folder = IndexFolder.create(path, encoder_spec, chunk_words=100)
    folder = IndexFolder.open(path)
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ragline import __version__
from ragline.encode.base import EncoderSpec
from ragline.errors import IndexBusyError, IndexCorruptError, IndexNotFoundError, RaglineError
from ragline.index.dense import DenseSpec, VectorIndex, load_dense, make_dense
from ragline.index.manifest import Manifest, fingerprint, read_manifest, write_manifest
from ragline.index.rebuild import build_dense, build_sparse
from ragline.index.rwlock import RWLock
from ragline.index.sparse import BM25Index, segment_files
from ragline.index.store import Store
from ragline.index.upkeep import (
    DENSE,
    MANIFEST,
    SPARSE,
    STORE,
    STORE_FILES,
    derived_damage,
    drop_unlisted_segments,
    interrupted_creation,
    no_manifest,
    tidy,
)

log = logging.getLogger(__name__)

SMALL_DENSE = 50_000         # dense indexes up to this many vectors are saved at every write
DENSE_RESAVE = 0.05          # larger ones when this share of them changed since the last save
_ALWAYS_SAVE = 1 << 62       # a rebuilt dense index is saved at the next persist


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
        self._dense_changes = 0  # passages added or removed since dense.faiss was saved
        self._seen_generation = -1  # the store generation `refresh` last caught up with

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
               dense: DenseSpec | None = None, languages: tuple[str, str] | None = None,
               shard: tuple[int, int] | None = None) -> IndexFolder:
        """A new, empty index; `languages` makes it a translation memory, `shard` = (number,
        count) a shard of a sharded index (both in its first and only manifest write, so a
        kill never leaves a folder that says it is something else)."""
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
                                    dense=dense or DenseSpec(), ragline_version=__version__,
                                    languages=languages or (), shard=shard or ()))
        folder.store.open(create=True)
        folder.dense = make_dense(folder.dense_spec, encoder.dim)
        folder.sparse = BM25Index()
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
        if folder.manifest.shards:
            raise RaglineError(f"{path} is a sharded index: open it with Index.open")
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
        """Load dense.faiss and the BM25 segments if they are the files the manifest vouches
        for, and catch them up with the store: passages committed after they were last saved
        are added, deleted ones removed (a write saves them lazily; see `persist`). Files that
        are damaged, of an older format, or newer than the store (a restored backup, whose row
        ids may repeat) are rebuilt from the store instead. When no other process is writing,
        what changed is saved and leftovers of killed writers are removed."""
        gen = self.store.generation
        why: str | None
        if self.manifest.generation > gen:  # a crash leaves the store ahead, never behind
            why = (f"the store (generation {gen}) is older than the search indexes (generation "
                   f"{self.manifest.generation}): it was replaced or restored")
        else:
            why = derived_damage(self.path, self.manifest)
            if why is None and self.manifest.sparse.kind != BM25Index.kind:
                why = f"the BM25 index is in an older format ({self.manifest.sparse.kind})"
        if why is None:
            try:
                self.dense = load_dense(self.path / DENSE, self.dense_spec, self.encoder_spec.dim)
                sp = self.manifest.sparse
                self.sparse = BM25Index.load(self.path / SPARSE, self.manifest.segments,
                                             sp.k1, sp.b)
            except IndexCorruptError as e:
                why = str(e)
        if why is not None:
            log.warning("%s: %s; rebuilding the search indexes from the store", self.path, why)
            self.rebuild()
            self._seen_generation = gen
            self._tidy(persist=True)
            return
        changed = self._catch_up()
        self._seen_generation = gen
        if changed:
            log.info("%s: %d passage changes were not in the saved search indexes; applied "
                     "from the store", self.path, changed)
        self._tidy(persist=bool(changed))

    def refresh(self) -> int:
        """Catch up with what another process committed since this one looked (`ragline
        index` beside a server, the driver beside a Ray shard actor); one SQLite read when
        nothing did. Every search starts with it. Skipped while a writer of this process holds
        the folder: then no other process can commit, and that writer mirrors its own commits."""
        if not self._writer.acquire(blocking=False):
            return 0
        try:
            if self._writer_depth:  # this thread is the writer
                return 0
            # holding _writer, no other thread applies the same commits meanwhile
            changed = self._catch_up_to(self.store.committed_generation())
            if changed:
                log.info("%s: caught up with %d passage changes another process committed",
                         self.path, changed)
            return changed
        finally:
            self._writer.release()

    def _catch_up_to(self, gen: int) -> int:
        """`_catch_up`, under the search lock, unless the store is still at `gen`, the
        generation last caught up with."""
        if gen == self._seen_generation:
            return 0
        with self.searching.write():
            changed = self._catch_up()
        self._seen_generation = gen
        return changed

    def _catch_up(self) -> int:
        """Apply to the loaded indexes what the store committed since they were saved;
        returns how many passages were added or removed."""
        assert self.dense is not None and self.sparse is not None
        live = self.store.rowids()
        dense_ids = self.dense.ids()
        dense_dead = dense_ids[~np.isin(dense_ids, live, assume_unique=True)]
        dense_new = live[~np.isin(live, dense_ids, assume_unique=True)]
        self.sparse.keep_only(live)
        sparse_new = live[~np.isin(live, self.sparse.rowids(), assume_unique=True)]
        if len(dense_dead):
            self.dense.remove(dense_dead)
        if len(dense_new):
            self.dense.add(dense_new, self.store.vectors_of(dense_new))
        if len(sparse_new):
            self.sparse.add(sparse_new, self.store.tokens_of(sparse_new))
        self._dense_changes += len(dense_dead) + len(dense_new)
        self._compact_if_needed()
        return len(dense_dead) + len(dense_new) + len(sparse_new)

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
        self.rebuild_dense(progress=progress)
        self.rebuild_sparse(progress)

    def rebuild_dense(self, spec: DenseSpec | None = None, progress: bool = False) -> None:
        """Recreate the dense index from the store's vectors, optionally as another kind (the
        manifest records it at the next `persist`)."""
        if spec is not None:
            self.manifest = replace(self.manifest, dense=spec)
        dense = build_dense(self.store, self.dense_spec, self.encoder_spec.dim, progress)
        with self.searching.write():
            self.dense = dense  # built aside, swapped in: searches never see a half-built index
        self._dense_changes = _ALWAYS_SAVE

    def rebuild_sparse(self, progress: bool = False) -> None:
        """Recreate BM25 from the store's tokens (ragline.index.rebuild)."""
        sparse = build_sparse(self.store, self.manifest.sparse, progress)
        with self.searching.write():
            self.sparse = sparse
        if self.manifest.sparse.kind != BM25Index.kind:
            self.manifest = replace(self.manifest,
                                    sparse=replace(self.manifest.sparse, kind=BM25Index.kind))

    def persist(self) -> None:
        """Steps 2 and 3 of the commit protocol (see the module docstring). New BM25 segments
        are written (saved ones never change); dense.faiss only when it is small or
        DENSE_RESAVE of it changed since it was saved: the store holds every vector, and open
        catches a stale dense.faiss up (`_catch_up`), so a one-document write into a
        million-passage index does not rewrite and re-hash a file of hundreds of MB."""
        if self.dense is None or self.sparse is None:
            raise RuntimeError("persist() before the search indexes were loaded or built")
        gen = self.store.generation
        old = self.manifest.files
        files: dict[str, dict[str, Any]] = {}
        dense_file = self.path / DENSE
        if (self._dense_changes >= DENSE_RESAVE * self.dense.ntotal
                or self.dense.ntotal <= SMALL_DENSE or DENSE not in old):
            self.dense.save(dense_file)
            files[DENSE] = fingerprint(dense_file)
            self._dense_changes = 0
        else:
            files[DENSE] = old[DENSE]
        names = self.sparse.save(self.path / SPARSE)
        for name in names:
            for f in segment_files(self.path / SPARSE, name):
                key = f.relative_to(self.path).as_posix()
                files[key] = old[key] if key in old else fingerprint(f)
        self.manifest = self.manifest.updated_now(
            generation=gen, ragline_version=__version__, counts=self.store.counts(),
            files=files, segments=tuple(names))
        self.save_manifest()
        drop_unlisted_segments(self.path, self.manifest)

    def save_manifest(self) -> None:
        """Rewrite manifest.json alone (atomically), e.g. to record a trained model."""
        write_manifest(self.path / MANIFEST, self.manifest)

    def apply(self, removed: Sequence[int], added_ids: Sequence[int] = (),
              added_vecs: np.ndarray | None = None,
              added_tokens: Sequence[Sequence[str]] = ()) -> None:
        """Mirror a committed store change in the in-memory dense and BM25 indexes."""
        if self.dense is None or self.sparse is None:
            raise RuntimeError("apply() before the search indexes were loaded or built")
        if len(added_ids) and (added_vecs is None or len(added_tokens) != len(added_ids)):
            raise ValueError("apply: added_ids need their vectors and tokens")
        with self.searching.write():  # FAISS and the segments must not be searched mid-change
            self.dense.remove(np.asarray(removed, dtype=np.int64))
            self.sparse.remove(removed)
            if len(added_ids) and added_vecs is not None:
                self.dense.add(np.asarray(added_ids, dtype=np.int64), added_vecs)
                self.sparse.add(added_ids, added_tokens, merge=False)
        self.sparse.merge_tiers(self.searching.write)  # searches wait for the swap only
        self._dense_changes += len(removed) + len(added_ids)
        self._compact_if_needed()

    def _compact_if_needed(self) -> None:
        """Rebuild the dense index when an automatic one outgrew its kind, when it can now
        train on the corpus (IVF-PQ past MIN_TRAIN), or when tombstones are a tenth of it
        (HNSW)."""
        assert self.dense is not None
        bigger = self.dense_spec.for_size(self.dense.ntotal)
        if bigger is not None:
            log.warning("%s: %s passages: the dense index switches from %s to %s (set one "
                        "with: ragline reindex %s --dense KIND)", self.path,
                        f"{self.dense.ntotal:,}", self.dense_spec.kind, bigger.kind, self.path)
            self.rebuild_dense(bigger)
        elif ((not self.dense.trained and self.dense.ntotal >= self.dense.MIN_TRAIN)
                or self.dense.deleted * 10 > max(self.dense.ntotal, 1)):
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
                    self._adopt_others_writes()
                    yield
                    self._seen_generation = self.store.generation  # memory mirrors every commit
                except BaseException:
                    self._seen_generation = -1  # a failed write: the next search re-checks
                    raise
                finally:
                    self._writer_depth = 0
            finally:
                os.close(fd)

    def _adopt_others_writes(self) -> None:
        """With the lock just taken, what another process wrote since (a server beside
        `ragline index`) comes in first: the manifest saved keeps the other's (a trained
        encoder), and the in-memory indexes its passages."""
        if self.dense is None or self.sparse is None:
            return  # being created: nothing loaded yet
        mpath = self.path / MANIFEST
        disk = read_manifest(mpath) if mpath.is_file() else self.manifest
        if disk != self.manifest:
            rebuilt = disk.dense != self.manifest.dense  # reindexed as another kind meanwhile
            self.manifest = disk
            if rebuilt:
                self.rebuild_dense()
        self._catch_up_to(self.store.generation)

    def close(self) -> None:
        self.store.close()
