"""Checks and repairs an index folder needs when it is opened: are the derived files the ones
the manifest vouches for, was a creation interrupted, and what did killed writers leave behind.

    why = derived_damage(path, manifest)     # None, or why dense.faiss / sparse/ can't be trusted
    tidy(path, store, manifest)              # under the writer lock: remove leftovers
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ragline.errors import IndexCorruptError
from ragline.index.manifest import Manifest, matches
from ragline.index.schema import is_blank
from ragline.index.store import Store, source_key

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STORE = "store.sqlite"
DENSE = "dense.faiss"
SPARSE = "sparse"
UPLOADS = "uploads"      # files the server received, stored under their content hash
CHECKPOINTS = "model"    # trained models (ragline.model.train), the manifest names the live one
STORE_FILES = frozenset({STORE, f"{STORE}-wal", f"{STORE}-shm", ".lock"})


def derived_damage(path: Path, manifest: Manifest) -> str | None:
    """Why dense.faiss or sparse/ cannot be trusted, or None."""
    for name, record in manifest.files.items():
        if not matches(record, path / name):
            what = "missing" if not (path / name).exists() else "not the file it recorded"
            return f"{name} is {what} (size and sha256 in manifest.json)"
    if not (path / DENSE).is_file() or not (path / SPARSE).is_dir():
        return "a search index file is missing"
    return None


def tidy(path: Path, store: Store, manifest: Manifest) -> None:
    """Remove what killed writers left behind (call under the writer lock): temporary files
    and folders of atomic writes, uploads that no committed source refers to, and checkpoints
    the manifest does not name."""
    for p in path.iterdir():
        if _temporary(p.name):
            _remove(p)
    drop_unlisted_segments(path, manifest)
    uploads = path / UPLOADS
    if uploads.is_dir():  # one lookup a file: the store may know millions of other sources
        for p in uploads.iterdir():
            if store.source(source_key(p)) is None:
                _remove(p)
    checkpoints = path / CHECKPOINTS
    if checkpoints.is_dir():
        live = manifest.trained.checkpoints if manifest.trained else set()
        for p in checkpoints.iterdir():
            if f"{CHECKPOINTS}/{p.name}" not in live:
                _remove(p)


def drop_unlisted_segments(path: Path, manifest: Manifest) -> None:
    """Remove what sparse/ holds besides the manifest's segments: segments merged away, or
    written by a writer killed before its manifest."""
    folder = path / SPARSE
    if folder.is_dir():
        keep = set(manifest.segments)
        for p in folder.iterdir():
            if p.name not in keep:
                _remove(p)


def interrupted_creation(path: Path) -> bool:
    """A folder where `create` was killed before its first manifest: a store with no
    documents, perhaps empty search indexes, and nothing else."""
    names = {p.name for p in path.iterdir()}
    if STORE not in names or MANIFEST in names:
        return False
    if any(n not in STORE_FILES | {DENSE, SPARSE} and not _temporary(n) for n in names):
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


def no_manifest(path: Path) -> IndexCorruptError:
    return IndexCorruptError(f"{path}: manifest.json is missing; the index cannot be read. "
                             "Restore it from a backup, or move the folder away and index your "
                             "files again")


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith((".tmp", ".old"))


def _remove(p: Path) -> None:
    log.info("removing leftover %s", p)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
