"""A sharded index: a folder of ordinary index folders, one manifest listing them.

    big-index/
      manifest.json      the encoder, chunking and dense settings of every shard, the shard
                         folders in order, and what `ragline train` left (one model for all)
      shard-000/ …       each an ordinary index folder (store.sqlite, dense.faiss, sparse/,
                         its own manifest and crash safety)

A document lives in shard `shard_of(id, N)`: a hash of its content-hash id, so a document
always lands in the same shard and a duplicate meets its first copy. Every shard records every
source file it was given (with the documents of that file routed to it, possibly none), so an
unchanged file is skipped by each shard on its own: re-running an ingestion that was killed
finishes the shards it had not reached, duplicating nothing. Searches go through
ragline.retrieve.sharded (in this process) or ragline.scale (one Ray actor per shard).

    index = ShardedIndex.create("big-index", 4, IndexConfig(encoder="hash"))
    index.add(["docs/"]); index.info()["shards"]
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline import __version__
from ragline.config import IndexConfig
from ragline.encode import Encoder, encoder_from_spec
from ragline.errors import (
    ConfigError,
    DocumentNotFoundError,
    IndexBusyError,
    IndexCorruptError,
    RaglineError,
)
from ragline.index.dense import DenseSpec
from ragline.index.folder import IndexFolder
from ragline.index.index import Index
from ragline.index.manifest import Manifest, TrainedState, read_manifest, write_manifest
from ragline.index.upkeep import MANIFEST
from ragline.ingest.files import DOCUMENTS, FileReader
from ragline.ingest.pipeline import IngestReport, ingest_paths, shard_of
from ragline.types import Document, DocumentInfo, Passage

log = logging.getLogger(__name__)

MAX_SHARDS = 1024


def shard_name(i: int) -> str:
    return f"shard-{i:03d}"


class ShardedIndex(Index):
    """An Index whose passages live in N shard indexes. Writes take every shard's writer
    lock; each shard commits file by file as a single index does."""

    def __init__(self, path: Path, manifest: Manifest, shards: list[Index], encoder: Encoder,
                 batch_passages: int = 1024, device: str | None = None) -> None:
        # no Index.__init__: a sharded index has no folder of its own, only its shards'
        self._path = path
        self._manifest = manifest
        self.shards = shards
        self.encoder = encoder
        self.batch_passages = batch_passages
        self.device = device
        self.down: tuple[str, ...] = ()  # shards left out by a partial open

    def _check_whole(self) -> None:
        if self.down:
            raise ConfigError(f"{self.path}: shard(s) {', '.join(self.down)} are missing or "
                              "damaged; a write needs every shard (restore them first)")

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def is_sharded(cls, path: str | Path) -> bool:
        mpath = Path(path) / MANIFEST
        if not mpath.is_file():
            return False
        try:
            return bool(json.loads(mpath.read_text("utf-8")).get("shards"))
        except (OSError, ValueError, AttributeError):
            return False  # IndexFolder.open reports the damage

    @classmethod
    def create(cls, path: str | Path, n_shards: int, config: IndexConfig, encoder: Encoder,
               device: str | None = None) -> ShardedIndex:
        """A new sharded index of `n_shards` empty shards for a loaded `encoder`. The
        manifest is written last: a creation that was killed is finished by the next one."""
        path = Path(path)
        if not 1 <= n_shards <= MAX_SHARDS:
            raise ConfigError(f"--shards must be from 1 to {MAX_SHARDS}, got {n_shards}")
        if (path / MANIFEST).exists():
            raise RaglineError(f"{path} already holds an index; open it instead")
        names = [shard_name(i) for i in range(n_shards)]
        if path.is_dir():
            strangers = [p.name for p in path.iterdir() if p.name not in names]
            if strangers:
                raise RaglineError(f"{path} is a non-empty folder without a ragline index; "
                                   "choose an empty or new folder")
        path.mkdir(parents=True, exist_ok=True)
        dense = DenseSpec(config.dense or "flat", auto=config.dense is None)
        shards = []
        try:
            for i, name in enumerate(names):
                sub = path / name
                if (sub / MANIFEST).exists():  # a creation killed before the manifest below
                    folder = IndexFolder.open(sub)
                    shards.append(Index(folder, encoder, config.batch_passages, device))
                    _check_left_shard(folder, i, n_shards, encoder)
                else:
                    folder = IndexFolder.create(sub, encoder.spec, chunk_words=config.chunk_words,
                                                dense=dense, shard=(i, n_shards))
                    shards.append(Index(folder, encoder, config.batch_passages, device))
            manifest = Manifest(encoder=encoder.spec, chunk_words=config.chunk_words,
                                dense=dense, shards=tuple(names), ragline_version=__version__)
            write_manifest(path / MANIFEST, manifest)
        except BaseException:
            for s in shards:
                s.close()
            raise
        return cls(path, manifest, shards, encoder, config.batch_passages, device)

    @classmethod
    def open_sharded(cls, path: str | Path, encoder: str | None = None,
                     batch_passages: int = 1024, device: str | None = None,
                     partial: bool = False) -> ShardedIndex:
        """`partial`: a shard that is missing or damaged is left out with a warning naming it
        (what is left answers searches; writes are refused), instead of failing the open. A
        shard list that does not match the shards is damage either way: no shard is known
        to be the one its position names."""
        path = Path(path)
        manifest = read_manifest(path / MANIFEST)
        n = len(manifest.shards)
        unlisted = sorted(p.name for p in path.glob("shard-*") if p.name not in manifest.shards)
        if unlisted:
            raise IndexCorruptError(f"{path}: damaged manifest: it lists {n} shards, but "
                                    f"{unlisted[0]} is a shard folder too; restore manifest.json "
                                    "from a backup")
        folders: list[IndexFolder] = []
        down: list[str] = []
        try:
            for i, name in enumerate(manifest.shards):
                sub = path / name
                try:
                    if not (sub / MANIFEST).is_file():
                        raise IndexCorruptError(
                            f"{path}: shard {name} is missing (listed in manifest.json); "
                            "restore the folder from a backup, or search with --partial to "
                            "leave it out")
                    folder = IndexFolder.open(sub, expect_encoder=encoder)
                except IndexCorruptError as e:
                    if not partial:
                        raise
                    log.warning("%s; searching without it (--partial)", e)
                    down.append(name)
                    continue
                folders.append(folder)
                if folder.encoder_spec.id != manifest.encoder.id:
                    raise IndexCorruptError(f"{sub}: built with {folder.encoder_spec.id}, the "
                                            f"other shards with {manifest.encoder.id}")
                if not folder.manifest.shard and name == shard_name(i):
                    _record_shard(folder, i, n)  # made before shards knew their number
                if tuple(folder.manifest.shard) != (i, n):
                    have = folder.manifest.shard
                    raise IndexCorruptError(
                        f"{path}: damaged manifest: it lists {name} as shard {i + 1} of {n}, "
                        f"but the shard is " + (f"{have[0] + 1} of {have[1]}" if have else
                                                "not numbered")
                        + "; restore manifest.json from a backup (documents are routed by "
                        "shard number: a changed list would lose them)")
        except BaseException:
            for f in folders:
                f.close()
            raise
        if not folders:
            raise IndexCorruptError(f"{path}: all {n} shards are missing or damaged")
        enc = encoder_from_spec(manifest.encoder, device=device)
        index = cls(path, manifest, [Index(f, enc, batch_passages, device) for f in folders],
                    enc, batch_passages, device)
        index.down = tuple(down)
        return index

    def close(self) -> None:
        for s in self.shards:
            s.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        with ExitStack() as stack:
            for s in self.shards:
                stack.enter_context(s.write_lock())
            yield

    def set_trained(self, trained: TrainedState) -> None:
        self._check_whole()
        self._manifest = self._manifest.updated_now(trained=trained)
        write_manifest(self.path / MANIFEST, self._manifest)

    def _check_settings(self, config: IndexConfig, shown: Path | None = None) -> None:
        self.shards[0]._check_settings(config, shown or self.path)

    # ------------------------------------------------------------ writes

    def add(self, paths: Sequence[str | Path], progress: bool = False,
            names: Mapping[Path, str] | None = None,
            reader: FileReader = DOCUMENTS) -> IngestReport:
        """Each file is read once; its documents go to their shards, and every shard
        records the file (ragline.ingest.pipeline.ingest_paths)."""
        self._check_whole()
        with self.write_lock():
            return ingest_paths([s.folder for s in self.shards], self.encoder,
                                [Path(p) for p in paths], progress=progress,
                                batch_passages=self.batch_passages, names=names, reader=reader)

    def remove(self, target: str) -> list[str]:
        """Remove a document by id, or a source file from every shard that records it."""
        self._check_whole()
        removed: list[str] = []
        found = False
        for s in self.shards:
            try:
                removed += s.remove(target)
                found = True
            except DocumentNotFoundError:  # this shard has neither
                continue
        if not found:
            raise DocumentNotFoundError(
                f"no document or source '{target}' in {self.path}; "
                f"list them with: ragline info {self.path} --documents")
        return removed

    def remove_documents(self, doc_ids: Sequence[str]) -> list[str]:
        self._check_whole()
        missing = [d for d in doc_ids if not self.has_document(d)]
        if missing:
            raise DocumentNotFoundError(f"no document '{missing[0]}' in {self.path}")
        by_shard: dict[int, list[str]] = {}
        for d in doc_ids:
            by_shard.setdefault(shard_of(d, len(self.shards)), []).append(d)
        for i, ids in sorted(by_shard.items()):
            self.shards[i].remove_documents(ids)
        return list(doc_ids)

    def reindex(self, dense: DenseSpec | None = None, progress: bool = False) -> None:
        self._check_whole()
        for s in self.shards:
            s.reindex(dense, progress)
        if dense is not None:
            self._manifest = self._manifest.updated_now(dense=dense)
            write_manifest(self.path / MANIFEST, self._manifest)

    # ------------------------------------------------------------ reads

    def info(self) -> dict[str, Any]:
        """The whole index: counts from the stores (as committed, whoever wrote them), the
        last update of any shard, the dense and BM25 parts summed over the shards; then each
        shard's own."""
        shards = [s.info() for s in self.shards]
        m = self._manifest.to_dict()
        first = shards[0]
        segments = [seg for s in shards for seg in s["sparse"].get("segments", [])]
        kinds = sorted({s["dense"]["kind"] for s in shards})
        dense_index = (f"{len(shards)} shards: " + "; ".join(
            f"{n}× {d}" for d, n in Counter(s["dense_index"] for s in shards).most_common()))
        return {"path": str(self.path), "format": m["format"],
                "ragline_version": m["ragline_version"], "encoder": m["encoder"],
                "chunking": m["chunking"], "dense": {**first["dense"], "kind": "/".join(kinds)},
                "sparse": {**first["sparse"], "segments": segments},
                "counts": self.counts(), "created": m["created"],
                "updated": max([m["updated"], *(s["updated"] for s in shards)]),
                "generation": sum(max(s["generation"], 0) for s in shards),
                "trained": m.get("trained"), "dense_index": dense_index,
                "shards": [{"name": name, "counts": s.counts(), "dense_index": i["dense_index"],
                            "segments": len(i["sparse"].get("segments", [])),
                            "updated": i["updated"]}
                           for name, s, i in zip(self._manifest.shards, self.shards, shards,
                                                 strict=True)]}

    def documents(self, source: str | None = None) -> list[DocumentInfo]:
        docs = [d for s in self.shards for d in s.documents(source)]
        return sorted(docs, key=lambda d: (d.source, d.id))

    def counts(self) -> dict[str, int]:
        """Documents and passages summed; a source file counts once however many shards
        record it."""
        out: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.counts().items():
                out[k] = out.get(k, 0) + v
        out["sources"] = len(self.source_paths())
        return out

    def source_paths(self) -> set[str]:
        return set().union(*(s.folder.store.source_paths() for s in self.shards))

    def committed_generation(self) -> int:
        return sum(s.committed_generation() for s in self.shards)  # each shard's only grows

    def names(self, doc_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self.shards:
            out.update(s.names(doc_ids))
        return out

    def _shard_of(self, doc_id: str) -> Index:
        if self.down:  # positions no longer match shard numbers: ask each
            return next((s for s in self.shards if s.has_document(doc_id)), self.shards[0])
        return self.shards[shard_of(doc_id, len(self.shards))]

    def has_document(self, doc_id: str) -> bool:
        return self._shard_of(doc_id).has_document(doc_id)

    def passage_window(self, passage_id: str, neighbours: int = 1) -> list[Passage]:
        for s in self.shards:  # a passage id does not say its document's shard
            try:
                return s.passage_window(passage_id, neighbours)
            except DocumentNotFoundError:
                continue
        raise DocumentNotFoundError(f"no passage '{passage_id[:100]}' in the index; search "
                                    "gives the ids of passages")

    def document(self, doc_id: str) -> Document | None:
        return self._shard_of(doc_id).document(doc_id)

    def document_source(self, doc_id: str) -> str | None:
        return self._shard_of(doc_id).document_source(doc_id)


def _check_left_shard(folder: IndexFolder, i: int, n: int, encoder: Encoder) -> None:
    """A shard folder found where a new sharded index is being made must be what a killed
    creation of this same index left: shard i of n, this encoder, nothing in it."""
    why = _not_left_by_us(folder, i, n)
    if why is None and folder.encoder_spec.id != encoder.spec.id:
        why = f"it was built with {folder.encoder_spec.id}, not {encoder.spec.id}"
    if why is not None:
        raise RaglineError(f"{folder.path} belongs to another index ({why}); move the shard "
                           "folders away or choose an empty folder")
    if not folder.manifest.shard:
        _record_shard(folder, i, n)


def _not_left_by_us(folder: IndexFolder, i: int, n: int) -> str | None:
    """Why a shard folder cannot be shard i of a new index of n shards, or None."""
    have = folder.manifest.shard
    if have and tuple(have) != (i, n):
        return f"it is shard {have[0] + 1} of {have[1]}, not {i + 1} of {n}"
    docs = folder.store.counts()["documents"]
    return f"it holds {docs:,} documents" if docs else None


def _record_shard(folder: IndexFolder, i: int, n: int) -> None:
    """Number a shard made before shards knew their number (saved when the folder is free)."""
    try:
        with folder.write_lock():
            folder.manifest = replace(folder.manifest, shard=(i, n))
            folder.save_manifest()
    except (IndexBusyError, OSError):
        folder.manifest = replace(folder.manifest, shard=(i, n))  # saved by a later open


def check_leftover_shards(path: Path, n_shards: int | None) -> None:
    """Before an index is created at `path` (and its encoder loaded): shard folders there
    must be what a killed creation of a sharded index of `n_shards` left, empty and numbered
    for it; a folder of shards whose manifest.json is gone is damage, never a new index."""
    found = sorted(p for p in path.glob("shard-*") if (p / MANIFEST).is_file())
    if not found:
        return
    if n_shards is None:
        raise IndexCorruptError(f"{path} holds shard folders ({found[0].name} …) but no "
                                "manifest.json: it is a sharded index whose manifest is lost; "
                                "restore manifest.json from a backup")
    names = [shard_name(i) for i in range(n_shards)]
    for sub in found:
        if sub.name not in names:
            raise RaglineError(f"{sub} belongs to another index (there is no {sub.name} in "
                               f"{n_shards} shards); move the shard folders away or choose an "
                               "empty folder")
        folder = IndexFolder.open(sub)
        try:
            why = _not_left_by_us(folder, names.index(sub.name), n_shards)
        finally:
            folder.close()
        if why is not None:
            raise RaglineError(f"{sub} belongs to another index ({why}); move the shard "
                               "folders away or choose an empty folder")
