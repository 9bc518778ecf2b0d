"""Files → index: discover, load, chunk, embed in batches, commit one file at a time.

A file is the unit of atomicity: its documents replace the previous version of that file in
one transaction, so a kill mid-run leaves every file either fully old or fully new.
Re-ingesting an unchanged file (same sha256) is a no-op; a bad file is skipped and reported.

    report = ingest_paths(folder, encoder, [Path("docs/")], progress=True)
    report.added, report.unchanged, report.skipped
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ragline.encode.base import Encoder
from ragline.index.folder import IndexFolder
from ragline.index.store import SourceRecord, source_key
from ragline.ingest.chunk import chunk_document
from ragline.ingest.files import (
    DOCUMENTS,
    FileReader,
    IngestReport,
    Reading,
    cjk_share,
    discover,
)
from ragline.text import display_path, tokenize
from ragline.types import Document, Passage

__all__ = ["IngestReport", "cjk_share", "ingest_paths", "merge_shard_reports", "shard_of"]

log = logging.getLogger(__name__)


@dataclass
class SourceFile:
    """A source file being ingested; its pieces follow each other through the stages."""
    record: SourceRecord
    replacing: bool
    name: str | None = None  # an upload's own name


@dataclass
class Piece:
    """Whole documents of one file, with their passages and BM25 tokens: what the stages pass
    on. A file is one or more pieces, the last with `last`; the committer writes a file's
    pieces in one transaction, so the file is in the index whole or not at all."""
    file: SourceFile
    docs: list[Document]
    passages: list[list[Passage]]
    tokens: list[list[list[str]]]
    last: bool
    vectors: np.ndarray | None = None
    n: int = 0  # passages
    # documents of this file that another file holds already: stored once, referenced by both
    shared: list[str] = field(default_factory=list)
    shard: int = 0          # which of the flow's folders it goes to
    file_done: bool = False  # the file's last piece of all (for the progress bar)
    # shards that get none of the file's documents but record it: (shard, replacing); one
    # piece for all of them, so that 1,000 shards cost the queues one item, not 1,000
    record_only: list[tuple[int, bool]] = field(default_factory=list)
    # the file could not be read to its end: its shard rolls back what it began of it
    abort: bool = False

    def append(self, doc: Document, passages: list[Passage], tokens: list[list[str]]) -> None:
        self.docs.append(doc)
        self.passages.append(passages)
        self.tokens.append(tokens)
        self.n += len(passages)


def shard_of(doc_id: str, n_shards: int) -> int:
    """The shard of a sharded index that holds a document: a hash of its id, so that the
    same document always goes to the same shard (and a duplicate meets its first copy)."""
    digest = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def ingest_paths(folders: IndexFolder | Sequence[IndexFolder], encoder: Encoder,
                 paths: Iterable[Path], progress: bool = False, batch_passages: int = 1024,
                 names: Mapping[Path, str] | None = None,
                 reader: FileReader = DOCUMENTS) -> IngestReport:
    """Read, embed and commit as a pipeline: a reading thread loads, chunks and tokenizes
    files; this thread embeds; a committing thread writes the store and the in-memory indexes.
    Bounded queues between them keep memory to a few batches whatever the corpus size, and
    the encoder never waits for CPU work the other stages can do beside it.

    `folders`: one index folder, or the shards of a sharded index in order. Each file is read
    once; a document goes to the shard `shard_of` gives it, and every shard records every file
    (possibly with none of its documents), so that an unchanged file is skipped by each shard
    and a killed run is finished shard by shard. `names` gives files whose own names mean
    nothing (server uploads, stored under content hashes) the name a person knows them by;
    documents keep it in meta["filename"]. `reader`: what files are read and how (default:
    documents by type)."""
    shards = [folders] if isinstance(folders, IndexFolder) else list(folders)
    report = IngestReport()
    files = discover(paths, report, reader)
    # what each shard committed; one folder commits into the report itself
    parts = [report] if len(shards) == 1 else [IngestReport() for _ in shards]
    flow = _Flow(shards, parts, encoder, files, report, batch_passages, names or {}, reader)
    desc = "indexing" if len(shards) == 1 else f"indexing {len(shards)} shards"
    # passages are counted as they are committed: how many a file holds is known only once read
    with tqdm(desc=desc, unit="passage", dynamic_ncols=True,
              disable=not progress or not files) as bar:
        flow.run(bar)
    for folder, part in zip(shards, parts, strict=True):
        if part.added or folder.manifest.generation != folder.store.generation:
            folder.persist()
    return report if len(shards) == 1 else merge_shard_reports(report, parts)


def merge_shard_reports(report: IngestReport, parts: Sequence[IngestReport]) -> IngestReport:
    """The reading's `report` with what each shard committed (`parts`) folded in: a file is
    added when any shard added it, unchanged when none had to."""
    added = {f for p in parts for f in p.added}
    report.added = sorted(added)
    report.replaced = sorted({f for p in parts for f in p.replaced})
    report.unchanged = [f for f in report.unchanged if f not in added]
    report.duplicates += [d for p in parts for d in p.duplicates]
    report.documents = sum(p.documents for p in parts)
    report.passages = sum(p.passages for p in parts)
    return report


class _Stop(Exception):
    """Another stage failed or was interrupted: this one stops too."""


class _Flow:
    """The three stages and the queues between them. The first error in any stage stops all
    of them and is raised here; a file whose transaction was open is rolled back whole."""

    def __init__(self, folders: list[IndexFolder], parts: list[IngestReport], encoder: Encoder,
                 files: list[Path], report: IngestReport, batch_passages: int,
                 names: Mapping[Path, str], reader: FileReader = DOCUMENTS) -> None:
        self.folders, self.parts, self.encoder, self.files = folders, parts, encoder, files
        self.report, self.batch, self.names, self.reader = report, batch_passages, names, reader
        # a few batches in flight per queue: enough to keep every stage busy, no more
        self.to_embed: queue.Queue[Piece | None] = queue.Queue(maxsize=4)
        self.to_commit: queue.Queue[Piece | None] = queue.Queue(maxsize=4)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self, bar: tqdm) -> None:  # type: ignore[type-arg]
        reader = threading.Thread(target=self._guard, args=(self._read,), name="ragline-read")
        committer = threading.Thread(target=self._guard, args=(self._commit, bar),
                                     name="ragline-commit")
        reader.start()
        committer.start()
        try:
            self._embed()
        except BaseException as e:  # KeyboardInterrupt too: the other stages must stop
            self._fail(e)
        finally:
            if self.error is not None:
                self.stop.set()
            self._put(self.to_commit, None, force=True)
            committer.join()
            self.stop.set()  # the reader may wait on a full queue nobody empties now
            reader.join()
        if self.error is not None:
            raise self.error

    def _guard(self, stage: Any, *args: Any) -> None:
        try:
            stage(*args)
        except _Stop:
            pass
        except BaseException as e:
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        if self.error is None and not isinstance(e, _Stop):
            self.error = e
        self.stop.set()

    def _put(self, q: queue.Queue[Piece | None], item: Piece | None,
             force: bool = False) -> None:
        while True:
            if self.stop.is_set() and not force:
                raise _Stop
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if force and self.stop.is_set():
                    return  # the consumer is gone too

    def _get(self, q: queue.Queue[Piece | None]) -> Piece | None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    # ------------------------------------------------------------ stage 1: read

    def _read(self) -> None:
        try:
            claimed: dict[str, str] = {}  # doc id → source, for documents read in this run
            for f in self.files:
                for piece in self._pieces(f, claimed):
                    self._put(self.to_embed, piece)
        finally:
            for folder in self.folders:
                folder.store.close_reader()
            self._put(self.to_embed, None, force=True)

    def _pieces(self, f: Path, claimed: dict[str, str]) -> Iterator[Piece]:
        """A file's pieces: for each folder that does not hold this version of it, the
        documents routed there (the last piece of each with `last`, possibly empty)."""
        report, folders = self.report, self.folders
        source = source_key(f)
        try:  # hashed as it is read: a large file is never held whole for it
            with f.open("rb") as fh:
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
                size = os.fstat(fh.fileno()).st_size
        except OSError as e:
            report.skipped.append((display_path(f), f"cannot read ({e.strerror})"))
            return
        rec = SourceRecord(path=source, sha256=sha, size=size)
        olds = [folder.store.source(source) for folder in folders]
        need = [i for i, old in enumerate(olds) if old is None or old.sha256 != rec.sha256]
        if not need:
            report.unchanged.append(source)
            return
        docs = Reading(f, report, self.reader)  # a large table streams through
        name = self.names.get(f)
        pieces: dict[int, Piece] = {}
        own: dict[int, set[str]] = {}
        yielded: set[int] = set()  # shards with a piece of this file on its way
        for i in need:
            file = SourceFile(rec, replacing=olds[i] is not None, name=name)
            pieces[i] = Piece(file, [], [], [], last=False, shard=i)
            own[i] = set(folders[i].store.document_ids_of_source(source))
        for d in docs:
            i = shard_of(d.id, len(folders)) if len(folders) > 1 else 0
            piece = pieces.get(i)
            if piece is None:  # that shard holds this version of the file already
                continue
            store = folders[i].store
            d = Document(id=d.id, source=source, text=d.text, title=d.title,
                         meta=d.meta if name is None else {**d.meta, "filename": name})
            other = claimed.get(d.id)
            if other is None and d.id not in own[i] and store.has_document(d.id):
                other = (store.document(d.id) or d).source
            if other is not None:
                log.info("%s: document %s duplicates one from %s; kept once", f, d.id, other)
                report.duplicates.append((source, d.id))
                piece.shared.append(d.id)
                continue
            claimed[d.id] = source
            passages = chunk_document(d, folders[i].chunk_words)
            piece.append(d, passages, [tokenize(p.embed_text) for p in passages])
            if piece.n >= self.batch:
                yield piece
                yielded.add(i)
                pieces[i] = Piece(piece.file, [], [], [], last=False, shard=i)
        if docs.failed:  # skipped and reported; shards that began the file roll it back
            for i in yielded:
                yield Piece(pieces[i].file, [], [], [], last=True, shard=i, abort=True)
            return
        record = [i for i in need if i not in yielded and not pieces[i].docs
                  and not pieces[i].shared]
        ends = [pieces[i] for i in need if i not in record]
        if record:
            ends.append(Piece(pieces[record[0]].file, [], [], [], last=True, shard=record[0],
                              record_only=[(i, pieces[i].file.replacing) for i in record]))
        for piece in ends:
            piece.last = True
        ends[-1].file_done = True
        yield from ends

    # ------------------------------------------------------------ stage 2: embed

    def _embed(self) -> None:
        """Embed pieces in groups of about `batch` passages across files. The encoder sorts a
        group by length to pad little, so a group waits to fill: the reader is far faster."""
        done = False
        while not done:
            first = self._get(self.to_embed)
            if first is None:
                return
            group, size = [first], first.n
            while size < self.batch:
                nxt = self._get(self.to_embed)
                if nxt is None:
                    done = True
                    break
                group.append(nxt)
                size += nxt.n
            texts = [p.embed_text for piece in group for ps in piece.passages for p in ps]
            vecs = (self.encoder.encode_passages(texts, batch_size=32) if texts
                    else np.zeros((0, self.encoder.spec.dim), np.float32))
            used = 0
            for piece in group:
                piece.vectors = vecs[used:used + piece.n]
                used += piece.n
                self._put(self.to_commit, piece)

    # ------------------------------------------------------------ stage 3: commit

    def _commit(self, bar: tqdm) -> None:  # type: ignore[type-arg]
        committers = [FileCommitter(f, r) for f, r in zip(self.folders, self.parts, strict=True)]
        files_done = 0
        try:
            while True:
                piece = self._get(self.to_commit)
                if piece is None:
                    return
                if piece.record_only:
                    for i, replacing in piece.record_only:
                        committers[i].put(Piece(
                            replace(piece.file, replacing=replacing), [], [], [], last=True,
                            shard=i, vectors=piece.vectors))
                else:
                    committers[piece.shard].put(piece)
                bar.update(piece.n)
                if piece.file_done:
                    files_done += 1
                    bar.set_postfix(files=files_done, refresh=False)
        finally:
            for c in committers:
                c.close()


class FileCommitter:
    """Writes embedded pieces into a folder, a file per transaction: a file's pieces are
    added as they come (visible to searches at once, dropped by them until the commit) and
    committed with its last piece. `close` rolls back a file left open (the store and the
    in-memory indexes), so a stop mid-file leaves that file as it was."""

    def __init__(self, folder: IndexFolder, report: IngestReport) -> None:
        self.folder, self.report = folder, report
        self.added: list[int] = []    # row ids of the open file, in the in-memory indexes
        self.removed: list[int] = []
        self.n_docs = self.n_passages = self.files_done = 0
        self.opened = False
        self.lost = False  # a shared document of the open file could not be referenced

    def put(self, piece: Piece) -> None:
        folder, store = self.folder, self.folder.store
        if piece.abort:
            self.close(keep_reader=True)
            return
        assert piece.vectors is not None
        source = piece.file.record.path
        if not self.opened:
            store.begin()
            self.opened = True
            self.removed, _ = store.delete_source(source)
            self.added, self.n_docs, self.n_passages = [], 0, 0
            self.lost = False
        ids: list[int] = []
        vectors, tokens_added = [], []
        offset = 0
        for doc, passages, tokens in zip(piece.docs, piece.passages, piece.tokens, strict=True):
            n = len(passages)
            if store.holds(doc.id):  # this file's old document, which another file holds too
                store.add_reference(doc.id, source, piece.file.name)
            else:
                ids += store.add_document(doc, passages, piece.vectors[offset:offset + n],
                                          tokens)
                vectors.append(piece.vectors[offset:offset + n])
                tokens_added += tokens
            offset += n
        for doc_id in piece.shared:
            if store.holds(doc_id):
                store.add_reference(doc_id, source, piece.file.name)
            else:  # the other copy is gone (its file failed): read this file again next time
                log.warning("%s: document %s was to be shared with another file that no longer "
                            "holds it; index the file again to add it", source, doc_id)
                self.lost = True
        # in the in-memory indexes before the commit: a search that meets these ids
        # meanwhile drops them (the store has no such passage yet), so a file is never
        # seen half-in
        if ids:
            folder.apply([], ids, np.concatenate(vectors), tokens_added)
        self.added += ids
        self.n_docs += len(piece.docs)
        self.n_passages += offset
        if piece.last:
            if not self.lost:
                store.upsert_source(piece.file.record)
            store.commit()
            self.opened = False
            folder.apply(self.removed)
            self._report(piece.file)
            self.files_done += 1

    def close(self, keep_reader: bool = False) -> None:
        if self.opened:  # stopped mid-file: the file stays as it was, in the store and in memory
            self.folder.store.rollback()
            self.folder.apply(self.added)
            self.opened = False
        if not keep_reader:
            self.folder.store.close_reader()

    def _report(self, file: SourceFile) -> None:
        self.report.added.append(file.record.path)
        if file.replacing:
            self.report.replaced.append(file.record.path)
        self.report.documents += self.n_docs
        self.report.passages += self.n_passages


