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
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
class _Pending:
    record: SourceRecord
    docs: list[Document]
    passages: list[list[Passage]]
    replacing: bool


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
                 progress: bool = False, batch_passages: int = 256,
                 names: Mapping[Path, str] | None = None) -> IngestReport:
    """`names` gives files whose own names mean nothing (server uploads, stored under content
    hashes) the name a person knows them by; documents keep it in meta["filename"]."""
    report = IngestReport()
    files = discover(paths, report)
    store = folder.store
    pending: list[_Pending] = []
    claimed: dict[str, str] = {}  # doc id → source, for documents pending in this run

    for f in tqdm(files, desc="reading", unit="file", disable=not progress or len(files) < 2):
        source = source_key(f)
        try:
            data = f.read_bytes()
        except OSError as e:
            report.skipped.append((display_path(f), f"cannot read ({e.strerror})"))
            continue
        rec = SourceRecord(path=source, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        old = store.source(source)
        if old is not None and old.sha256 == rec.sha256:
            report.unchanged.append(source)
            continue
        try:
            docs = load_file(Path(display_path(f)), data)
        except IngestError as e:  # unsupported, empty, binary, corrupt: skip, report, go on
            report.skipped.append((display_path(f), str(e).split(": ", 1)[-1]))
            continue
        except RecursionError:
            report.skipped.append((display_path(f), "nested too deeply to parse"))
            continue
        except Exception as e:  # a parser's own failure on a malformed file: skip it, go on
            log.debug("%s: loader failed", f, exc_info=True)
            report.skipped.append((display_path(f), f"corrupt or unreadable "
                                   f"{f.suffix.lstrip('.').upper() or 'file'} "
                                   f"({_kind(e)}: {_first_line(e)})"))
            continue
        name = (names or {}).get(f)
        docs = [Document(id=d.id, source=source, text=d.text, title=d.title,
                         meta=d.meta if name is None else {**d.meta, "filename": name})
                for d in docs]
        kept = []
        own = set(store.document_ids_of_source(source))
        for d in docs:
            other = claimed.get(d.id)
            if other is None and d.id not in own and store.has_document(d.id):
                other = (store.document(d.id) or d).source
            if other is not None:
                log.info("%s: document %s duplicates one from %s; kept once", f, d.id, other)
                report.duplicates.append((source, d.id))
                continue
            claimed[d.id] = source
            kept.append(d)
        chunked = [chunk_document(d, folder.chunk_words) for d in kept]
        pending.append(_Pending(rec, kept, chunked, replacing=old is not None))

    total = sum(len(ps) for p in pending for ps in p.passages)
    if pending:
        _embed_and_commit(folder, encoder, pending, total, progress, batch_passages, report)
    if pending or folder.manifest.generation != store.generation:
        folder.rebuild_sparse(progress=False)
        folder.persist()
    return report


def _kind(e: BaseException) -> str:
    """The exception's class name; with its module when the name alone says nothing
    (zlib.error)."""
    name = type(e).__name__
    return f"{type(e).__module__}.{name}" if name.islower() else name


def _first_line(e: BaseException) -> str:
    text = str(e).strip().split("\n", 1)[0]
    return text[:200] if text else "no details"


def _embed_and_commit(folder: IndexFolder, encoder: Encoder, pending: list[_Pending], total: int,
                      progress: bool, batch_passages: int, report: IngestReport) -> None:
    """Embed passages in batches across files; commit each file once all its vectors exist."""
    flat: list[tuple[int, Passage]] = [(i, p) for i, pend in enumerate(pending)
                                       for ps in pend.passages for p in ps]
    vectors: list[np.ndarray] = []
    next_commit = 0
    done = 0
    bar = tqdm(total=total, desc="embedding", unit="passage", disable=not progress,
               dynamic_ncols=True)
    try:
        while next_commit < len(pending):
            if done < len(flat):
                batch = flat[done:done + batch_passages]
                vectors.append(encoder.encode_passages([p.embed_text for _, p in batch],
                                                       batch_size=32))
                done += len(batch)
                bar.update(len(batch))
                # pending files whose passages are all embedded now (or have none)
                ready = flat[done][0] if done < len(flat) else len(pending)
            else:
                ready = len(pending)
            if ready > next_commit:
                allvecs = np.concatenate(vectors) if vectors else np.zeros((0, encoder.spec.dim))
                used = 0
                for pend in pending[next_commit:ready]:
                    n = sum(len(ps) for ps in pend.passages)
                    _commit_source(folder, pend, allvecs[used:used + n], report)
                    used += n
                vectors = [allvecs[used:]]
                next_commit = ready
    finally:
        bar.close()


def _commit_source(folder: IndexFolder, pend: _Pending, vecs: np.ndarray,
                   report: IngestReport) -> None:
    store = folder.store
    added_ids: list[int] = []
    offset = 0
    with store.transaction():
        removed = store.delete_source(pend.record.path)
        for doc, passages in zip(pend.docs, pend.passages, strict=True):
            n = len(passages)
            added_ids += store.add_document(doc, passages, vecs[offset:offset + n],
                                            [tokenize(p.embed_text) for p in passages])
            offset += n
        store.upsert_source(pend.record)
    folder.apply_dense(removed, added_ids, vecs[:offset])
    report.added.append(pend.record.path)
    if pend.replacing:
        report.replaced.append(pend.record.path)
    report.documents += len(pend.docs)
    report.passages += offset
