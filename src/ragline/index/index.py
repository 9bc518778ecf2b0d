"""An `Index`: an index folder with its passage encoder — what is stored and how it changes.

    index = Index.open_or_create("my-index", IndexConfig(encoder="hash"))
    index.add(["docs/"]); index.remove("docs/old.md"); index.documents()
    index.question_encoder()        # the one `ragline train` left, else the passage encoder
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.config import DEFAULT_PRIOR_SCALE, IndexConfig
from ragline.encode import Encoder, SentenceTransformerEncoder, encoder_from_spec, load_encoder
from ragline.errors import ConfigError, DocumentNotFoundError, IndexCorruptError
from ragline.index.dense import DenseSpec
from ragline.index.folder import IndexFolder
from ragline.index.manifest import Manifest, TrainedState
from ragline.index.store import source_key
from ragline.index.upkeep import MANIFEST
from ragline.ingest.files import DOCUMENTS, FileReader
from ragline.ingest.pipeline import IngestReport, cjk_share, ingest_paths
from ragline.text import invalid_char
from ragline.types import Document, DocumentInfo, Passage

log = logging.getLogger(__name__)


class Index:
    """Writes take the folder's writer lock; reads are safe beside them (see IndexFolder)."""

    def __init__(self, folder: IndexFolder, encoder: Encoder, batch_passages: int = 1024,
                 device: str | None = None) -> None:
        self.folder = folder
        self.encoder = encoder
        self.batch_passages = batch_passages
        self.device = device

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / MANIFEST).exists()

    @classmethod
    def open(cls, path: str | Path, encoder: str | None = None, batch_passages: int = 1024,
             device: str | None = None, partial: bool = False) -> Index:
        """Open an existing index with the encoder its manifest names (`encoder`, if given,
        must be that one). A sharded index opens as a ShardedIndex; `partial`: its missing or
        damaged shards are left out (searches only; writes are refused)."""
        from ragline.index.shards import ShardedIndex, check_leftover_shards

        if ShardedIndex.is_sharded(path):
            return ShardedIndex.open_sharded(path, encoder, batch_passages, device, partial)
        if not cls.exists(path) and Path(path).is_dir():
            check_leftover_shards(Path(path), None)  # shards whose manifest is lost
        folder = IndexFolder.open(Path(path), expect_encoder=encoder)
        return cls(folder, encoder_from_spec(folder.encoder_spec, device=device),
                   batch_passages, device)

    @classmethod
    def open_or_create(cls, path: str | Path, config: IndexConfig | None = None,
                       encoder: str | None = None, device: str | None = None,
                       paths: Sequence[str | Path] = (), shards: int | None = None,
                       languages: tuple[str, str] | None = None) -> Index:
        """Open the index at `path`, or create it from `config`. An existing index keeps its
        encoder, chunking and dense kind; settings that name different ones are an error
        (the prefixes and the dense kind, when the config sets them). A new index whose first
        `paths` are mostly Chinese gets `config.encoder_zh` unless an encoder was chosen.
        `shards`: create a sharded index of that many shards (ragline.index.shards); an
        existing one must have that many. `languages`: a new index is a translation memory
        from the first to the second (ragline.tm)."""
        config = config or IndexConfig()
        path = Path(path)
        if cls.exists(path):
            index = cls.open(path, encoder, config.batch_passages, device)
            try:
                index._check_settings(config)
                have = len(index.manifest.shards) or None
                if shards is not None and shards != have:
                    raise ConfigError(f"{path} already has {have or 'no'} shards; a different "
                                      "number of shards needs a new index")
            except ConfigError:
                index.close()
                raise
            return index
        if path.is_dir():
            from ragline.index.shards import check_leftover_shards

            check_leftover_shards(path, shards)  # before the encoder takes its seconds to load
        enc = load_encoder(encoder or _default_encoder(config, paths), device=device,
                           query_prefix=config.query_prefix, passage_prefix=config.passage_prefix)
        enc.load()  # the dimension and the model's own prefixes are known once loaded
        if shards is not None:
            from ragline.index.shards import ShardedIndex

            if languages:
                raise ConfigError("a translation memory is one index folder, not shards")
            return ShardedIndex.create(path, shards, config, enc, device)
        folder = IndexFolder.create(path, enc.spec, chunk_words=config.chunk_words,
                                    dense=DenseSpec(config.dense or "flat",
                                                    auto=config.dense is None),
                                    languages=languages)
        return cls(folder, enc, config.batch_passages, device)

    def _check_settings(self, config: IndexConfig, shown: Path | None = None) -> None:
        """Settings that name another dense kind or other prefixes than the index has are an
        error naming `shown` (the index a user knows; a shard's sharded index)."""
        path = shown or self.path
        have = self.folder.dense_spec.kind
        if config.dense and config.dense != have:
            raise ConfigError(f"{path} already has a {have} dense index; switch it with: "
                              f"ragline reindex {path} --dense {config.dense}")
        spec = self.folder.encoder_spec
        for name, given, kept in (("query", config.query_prefix, spec.query_prefix),
                                  ("passage", config.passage_prefix, spec.passage_prefix)):
            if given and given != kept:
                raise ConfigError(f"{path} was built with --{name}-prefix {kept!r}; a "
                                  "different prefix needs a new index")

    def close(self) -> None:
        self.folder.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def manifest(self) -> Manifest:
        return self.folder.manifest

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the index's writer lock (other processes' writes fail meanwhile)."""
        with self.folder.write_lock():
            yield

    def set_trained(self, trained: TrainedState) -> None:
        """Record what `ragline train` left (the manifest points at it from now on)."""
        self.folder.manifest = replace(self.folder.manifest, trained=trained)
        self.folder.save_manifest()

    def question_encoder(self) -> Encoder:
        """The question encoder `ragline train` left in the index (the manifest names it),
        else the passage encoder itself. The passage side never changes."""
        trained = self.manifest.trained
        if trained is None or trained.question_encoder is None:
            return self.encoder
        part = trained.question_encoder
        path = self.path / part.path
        if not path.is_dir():
            raise IndexCorruptError(f"{path}: the trained question encoder named in the manifest "
                                    "is missing; retrain or remove 'trained' from manifest.json")
        spec = self.manifest.encoder
        enc = SentenceTransformerEncoder(path=path, model_id=f"{spec.id}+{part.path}",
                                         dim=spec.dim, query_prefix=spec.query_prefix,
                                         passage_prefix=spec.passage_prefix, device=self.device)
        enc.prefixes_from_model = False  # the manifest's prefixes, even when they are empty
        return enc

    def prior_scale(self, configured: float | None = None) -> float:
        """The inverse temperature of p(z|x): the configured one, else the one `ragline train`
        learned for this index, else DEFAULT_PRIOR_SCALE."""
        if configured is not None:
            return configured
        trained = self.manifest.trained
        if trained is not None and trained.prior_scale is not None:
            return trained.prior_scale
        return DEFAULT_PRIOR_SCALE

    # ------------------------------------------------------------ writes

    def add(self, paths: Sequence[str | Path], progress: bool = False,
            names: Mapping[Path, str] | None = None,
            reader: FileReader = DOCUMENTS) -> IngestReport:
        """Index files and folders (changed files are replaced, unchanged ones skipped).
        `names`: display names for files stored under meaningless names (server uploads);
        `reader`: which files are read and how (default: documents by type)."""
        if self.manifest.languages and reader is DOCUMENTS:
            raise ConfigError(f"{self.path} is a translation memory: import bilingual files "
                              f"with: ragline tm import {self.path} FILE…")
        with self.folder.write_lock():
            return ingest_paths(self.folder, self.encoder, [Path(p) for p in paths],
                                progress=progress, batch_passages=self.batch_passages,
                                names=names, reader=reader)

    def remove(self, target: str) -> list[str]:
        """Remove a document by id, or a source file; returns the ids of the documents
        deleted. A file's documents that another file also holds stay (content is stored
        once and lives while a file holds it)."""
        store = self.folder.store
        if self.has_document(target):
            return self.remove_documents([target])  # else a path (its bytes need not be UTF-8)
        source = source_key(Path(target).expanduser())
        with self.folder.write_lock():
            if not store.document_ids_of_source(source) and store.source(source) is None:
                raise DocumentNotFoundError(
                    f"no document or source '{target}' in {self.path}; "
                    f"list them with: ragline info {self.path} --documents")
            with store.transaction():
                removed, doc_ids = store.delete_source(source)
            self._after_removal(removed)
        return doc_ids

    def remove_documents(self, doc_ids: Sequence[str]) -> list[str]:
        """Remove documents by id (never a path: what the HTTP API calls). Their files count
        as changed from then on, so indexing one again brings its documents back."""
        store = self.folder.store
        with self.folder.write_lock():
            missing = [d for d in doc_ids if not store.has_document(d)]
            if missing:
                raise DocumentNotFoundError(f"no document '{missing[0]}' in {self.path}")
            with store.transaction():
                store.forget_sources_of(doc_ids)
                removed = store.delete_documents(doc_ids)
            self._after_removal(removed)
        return list(doc_ids)

    def _after_removal(self, removed: list[int]) -> None:
        self.folder.apply(removed)
        self.folder.persist()

    def reindex(self, dense: DenseSpec | None = None, progress: bool = False) -> None:
        """Rebuild the search indexes from the store, the dense one as `dense` if given (e.g.
        to switch a grown corpus to HNSW or IVF-PQ, or to retrain IVF-PQ on all of it)."""
        with self.folder.write_lock():
            self.folder.rebuild_dense(dense, progress)
            self.folder.rebuild_sparse(progress)
            self.folder.persist()

    # ------------------------------------------------------------ reads

    def info(self) -> dict[str, Any]:
        m = self.manifest.to_dict()
        return {"path": str(self.path), **{k: m[k] for k in (
            "format", "ragline_version", "encoder", "chunking", "dense", "sparse",
            "generation", "created", "updated")},
                "counts": self.counts(),  # as committed, by whichever process
                "trained": m.get("trained"),
                "translation_memory": m.get("translation_memory"),
                "dense_index": self.folder.dense.describe() if self.folder.dense else ""}

    def documents(self, source: str | None = None) -> list[DocumentInfo]:
        """The indexed documents, or those of one source file (its resolved path)."""
        return self.folder.store.documents(source)

    def counts(self) -> dict[str, int]:
        """Documents, passages and source files, as committed."""
        return self.folder.store.counts()

    def source_paths(self) -> set[str]:
        """The source files recorded, as the store names them."""
        return self.folder.store.source_paths()

    def committed_generation(self) -> int:
        """A number that grows with every commit, by any process (one SQLite read)."""
        return self.folder.store.committed_generation()

    def names(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """Display names of documents, by id (see DocumentInfo.name)."""
        return self.folder.store.names(doc_ids)

    def has_document(self, doc_id: str) -> bool:
        return invalid_char(doc_id) is None and self.folder.store.has_document(doc_id)

    def passage_window(self, passage_id: str, neighbours: int = 1) -> list[Passage]:
        """A passage and up to `neighbours` of its document's passages on each side, in
        order; DocumentNotFoundError when no passage has that id."""
        found = (self.folder.store.passage_window(passage_id, neighbours)
                 if invalid_char(passage_id) is None else None)
        if found is None:
            raise DocumentNotFoundError(f"no passage '{passage_id[:100]}' in the index; search "
                                        "gives the ids of passages")
        return found

    def document(self, doc_id: str) -> Document | None:
        """A document's text and facts, or None when there is no such document."""
        return self.folder.store.document(doc_id) if self.has_document(doc_id) else None

    def document_source(self, doc_id: str) -> str | None:
        doc = self.document(doc_id)
        return doc.source if doc else None


def _default_encoder(config: IndexConfig, paths: Sequence[str | Path]) -> str:
    """The config's encoder, or its Chinese one for files that are mostly Chinese."""
    if (not config.encoder_zh or config.encoder != IndexConfig.encoder or not paths
            or cjk_share(Path(p) for p in paths) < 0.5):
        return config.encoder
    log.info("the files are mostly Chinese: the index gets %s", config.encoder_zh)
    return config.encoder_zh
