"""Files → index: discover, load, chunk, embed in batches, commit one file at a time.

A file is the unit of atomicity: its documents replace the previous version of that file in
one transaction, so a kill mid-run leaves every file either fully old or fully new.
Re-ingesting an unchanged file (same sha256) is a no-op; a bad file is skipped and reported.

    report = ingest_paths(folder, encoder, [Path("docs/")], progress=True)
    report.added, report.unchanged, report.skipped
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ragline.encode.base import Encoder
from ragline.errors import IngestError
from ragline.index.folder import IndexFolder
from ragline.index.store import SourceRecord, source_key
from ragline.ingest.chunk import chunk_document
from ragline.ingest.loaders import LOADERS, load_file
from ragline.text import CJK_RE, display_path, tokenize
from ragline.types import Document, Passage

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)        # sources indexed (new or changed)
    replaced: list[str] = field(default_factory=list)     # of which: changed files
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    ignored: list[str] = field(default_factory=list)      # files of other types inside folders
    missing: list[str] = field(default_factory=list)      # named paths that do not exist
    # (source, document id): documents already indexed from another file, kept once
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    documents: int = 0
    passages: int = 0

    @property
    def failed(self) -> bool:
        """The command as a whole failed: a named path is missing, or nothing could be read."""
        return bool(self.missing) or (not self.added and not self.unchanged)


@dataclass
class _File:
    """A source file being ingested; its pieces follow each other through the stages."""
    record: SourceRecord
    replacing: bool


@dataclass
class _Piece:
    """Whole documents of one file, with their passages and BM25 tokens: what the stages pass
    on. A file is one or more pieces, the last with `last`; the committer writes a file's
    pieces in one transaction, so the file is in the index whole or not at all."""
    file: _File
    docs: list[Document]
    passages: list[list[Passage]]
    tokens: list[list[list[str]]]
    last: bool
    vectors: np.ndarray | None = None
    n: int = 0  # passages

    def append(self, doc: Document, passages: list[Passage], tokens: list[list[str]]) -> None:
        self.docs.append(doc)
        self.passages.append(passages)
        self.tokens.append(tokens)
        self.n += len(passages)


def _is_index_folder(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "store.sqlite").is_file()


def _not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as a document (a FIFO would block forever, a device never
    ends, a symlink loop has no target), or None for a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"cannot read ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"{kind}, not a regular file"


def discover(paths: Iterable[Path], report: IngestReport) -> list[Path]:
    """Regular files named, and those under folders named (recursively, hidden ones skipped).
    Anything else (pipes, devices, broken links, link loops) is skipped and reported."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                if _is_index_folder(Path(root)):
                    dirs[:] = []  # never ingest a ragline index (this one or another)
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    f = Path(root) / n
                    if n.startswith("."):
                        continue
                    if f.suffix.lower() in LOADERS:
                        files.append(f)
                    else:
                        report.ignored.append(display_path(f))
        elif os.path.lexists(p):
            files.append(p)
        else:
            report.missing.append(display_path(p))
    seen: set[Path] = set()
    unique = []
    for f in files:
        why = _not_a_file(f)
        if why is not None:
            report.skipped.append((display_path(f), why))
            continue
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def cjk_share(paths: Iterable[Path], max_files: int = 20, max_chars: int = 200_000) -> float:
    """The share of CJK characters among the letters of the first files under `paths` (up to
    `max_files` of them, `max_chars` in all): how a new index picks its encoder."""
    cjk = letters = 0
    for f in discover(paths, IngestReport())[:max_files]:
        try:
            docs = load_file(f)
        except Exception:  # noqa: BLE001 - a file ingestion will skip and report anyway
            continue
        for d in docs:
            text = d.text[:max_chars - letters]
            cjk += len(CJK_RE.findall(text))
            letters += sum(ch.isalpha() for ch in text)
        if letters >= max_chars:
            break
    return cjk / letters if letters else 0.0


def ingest_paths(folder: IndexFolder, encoder: Encoder, paths: Iterable[Path],
                 progress: bool = False, batch_passages: int = 1024,
                 names: Mapping[Path, str] | None = None) -> IngestReport:
    """Read, embed and commit as a pipeline: a reading thread loads, chunks and tokenizes
    files; this thread embeds; a committing thread writes the store and the in-memory indexes.
    Bounded queues between them keep memory to a few batches whatever the corpus size, and
    the encoder never waits for CPU work the other stages can do beside it.

    `names` gives files whose own names mean nothing (server uploads, stored under content
    hashes) the name a person knows them by; documents keep it in meta["filename"]."""
    report = IngestReport()
    files = discover(paths, report)
    flow = _Flow(folder, encoder, files, report, batch_passages, names or {})
    # passages are counted as they are committed: how many a file holds is known only once read
    with tqdm(desc="indexing", unit="passage", dynamic_ncols=True,
              disable=not progress or not files) as bar:
        flow.run(bar)
    if report.added or folder.manifest.generation != folder.store.generation:
        folder.persist()
    return report


class _Stop(Exception):
    """Another stage failed or was interrupted: this one stops too."""


class _Flow:
    """The three stages and the queues between them. The first error in any stage stops all
    of them and is raised here; a file whose transaction was open is rolled back whole."""

    def __init__(self, folder: IndexFolder, encoder: Encoder, files: list[Path],
                 report: IngestReport, batch_passages: int, names: Mapping[Path, str]) -> None:
        self.folder, self.encoder, self.files = folder, encoder, files
        self.report, self.batch, self.names = report, batch_passages, names
        # a few batches in flight per queue: enough to keep every stage busy, no more
        self.to_embed: queue.Queue[_Piece | None] = queue.Queue(maxsize=4)
        self.to_commit: queue.Queue[_Piece | None] = queue.Queue(maxsize=4)
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

    def _put(self, q: queue.Queue[_Piece | None], item: _Piece | None,
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

    def _get(self, q: queue.Queue[_Piece | None]) -> _Piece | None:
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
            self.folder.store.close_reader()
            self._put(self.to_embed, None, force=True)

    def _pieces(self, f: Path, claimed: dict[str, str]) -> Iterator[_Piece]:
        store, report = self.folder.store, self.report
        source = source_key(f)
        try:
            data = f.read_bytes()
        except OSError as e:
            report.skipped.append((display_path(f), f"cannot read ({e.strerror})"))
            return
        rec = SourceRecord(path=source, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        old = store.source(source)
        if old is not None and old.sha256 == rec.sha256:
            report.unchanged.append(source)
            return
        docs = _load(f, data, report)
        if docs is None:
            return
        name = self.names.get(f)
        file = _File(rec, replacing=old is not None)
        own = set(store.document_ids_of_source(source))
        piece = _Piece(file, [], [], [], last=False)
        for d in docs:
            d = Document(id=d.id, source=source, text=d.text, title=d.title,
                         meta=d.meta if name is None else {**d.meta, "filename": name})
            other = claimed.get(d.id)
            if other is None and d.id not in own and store.has_document(d.id):
                other = (store.document(d.id) or d).source
            if other is not None:
                log.info("%s: document %s duplicates one from %s; kept once", f, d.id, other)
                report.duplicates.append((source, d.id))
                continue
            claimed[d.id] = source
            passages = chunk_document(d, self.folder.chunk_words)
            piece.append(d, passages, [tokenize(p.embed_text) for p in passages])
            if piece.n >= self.batch:
                yield piece
                piece = _Piece(file, [], [], [], last=False)
        piece.last = True
        yield piece

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
        folder = self.folder
        store = folder.store
        added: list[int] = []   # row ids of the open file, in the in-memory indexes already
        removed: list[int] = []
        n_docs = n_passages = files_done = 0
        opened = False
        try:
            while True:
                piece = self._get(self.to_commit)
                if piece is None:
                    return
                assert piece.vectors is not None
                if not opened:
                    store.begin()
                    opened = True
                    removed = store.delete_source(piece.file.record.path)
                    added, n_docs, n_passages = [], 0, 0
                ids: list[int] = []
                offset = 0
                for doc, passages, tokens in zip(piece.docs, piece.passages, piece.tokens,
                                                 strict=True):
                    n = len(passages)
                    ids += store.add_document(doc, passages, piece.vectors[offset:offset + n],
                                              tokens)
                    offset += n
                # in the in-memory indexes before the commit: a search that meets these ids
                # meanwhile drops them (the store has no such passage yet), so a file is never
                # seen half-in
                folder.apply([], ids, piece.vectors, [t for ts in piece.tokens for t in ts])
                added += ids
                n_docs += len(piece.docs)
                n_passages += offset
                bar.update(offset)
                if piece.last:
                    store.upsert_source(piece.file.record)
                    store.commit()
                    opened = False
                    folder.apply(removed)
                    self._report(piece.file, n_docs, n_passages)
                    files_done += 1
                    bar.set_postfix(files=files_done, refresh=False)
        finally:
            if opened:  # stopped mid-file: the file stays as it was, in the store and in memory
                store.rollback()
                folder.apply(added)
            store.close_reader()

    def _report(self, file: _File, n_docs: int, n_passages: int) -> None:
        self.report.added.append(file.record.path)
        if file.replacing:
            self.report.replaced.append(file.record.path)
        self.report.documents += n_docs
        self.report.passages += n_passages


def _load(f: Path, data: bytes, report: IngestReport) -> list[Document] | None:
    """The file's documents, or None (skipped and reported) when it cannot be read."""
    try:
        return load_file(Path(display_path(f)), data)
    except IngestError as e:  # unsupported, empty, binary, corrupt: skip, report, go on
        report.skipped.append((display_path(f), str(e).split(": ", 1)[-1]))
    except RecursionError:
        report.skipped.append((display_path(f), "nested too deeply to parse"))
    except Exception as e:  # a parser's own failure on a malformed file: skip it, go on
        log.debug("%s: loader failed", f, exc_info=True)
        report.skipped.append((display_path(f), f"corrupt or unreadable "
                               f"{f.suffix.lstrip('.').upper() or 'file'} "
                               f"({_kind(e)}: {_first_line(e)})"))
    return None


def _kind(e: BaseException) -> str:
    """The exception's class name; with its module when the name alone says nothing
    (zlib.error)."""
    name = type(e).__name__
    return f"{type(e).__module__}.{name}" if name.islower() else name


def _first_line(e: BaseException) -> str:
    text = str(e).strip().split("\n", 1)[0]
    return text[:200] if text else "no details"
