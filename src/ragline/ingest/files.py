"""Which files an ingestion reads, how it reads one, and what it reports.

    report = IngestReport()
    files = discover([Path("docs/")], report)      # regular files of supported types
    for doc in read_documents(blob, report): ...   # stops, reported, on a file it cannot read

Documents are read by type (ragline.ingest.loaders); another `FileReader` reads other files
into Documents (translation memories: ragline.tm).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragline.errors import IngestError
from ragline.ingest.blob import Blob, ReadOptions, looks_like_text
from ragline.ingest.loaders import LOADERS, iter_documents
from ragline.text import CJK_RE, display_path
from ragline.types import Document

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


@dataclass(frozen=True)
class FileReader:
    """What an ingestion reads: the suffixes it takes from folders (and, with `sniff`, any
    other file that is text), and how it turns one file into Documents (an IngestError skips
    the file and reports why). `options`: how files are read (OCR on or off)."""

    suffixes: Collection[str]
    load: Callable[[Blob], Iterable[Document]]
    sniff: bool = True
    options: ReadOptions = field(default_factory=ReadOptions)

    def takes(self, path: Path) -> bool:
        """Whether a file found in a folder is read: a known suffix, or text."""
        if path.suffix.lower() in self.suffixes:
            return True
        if not self.sniff:
            return False
        try:
            with path.open("rb") as f:
                return looks_like_text(f.read(8192))
        except OSError:
            return False


def document_reader(ocr: bool = True, progress: bool = False) -> FileReader:
    """Documents by type (ragline.ingest.loaders); `ocr`: read scanned pages and images."""
    return FileReader(frozenset(LOADERS), iter_documents,
                      options=ReadOptions(ocr=ocr, progress=progress))


DOCUMENTS = document_reader()


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


def discover(paths: Iterable[Path], report: IngestReport,
             reader: FileReader = DOCUMENTS) -> list[Path]:
    """Regular files named, and those the reader takes under folders named (recursively,
    hidden ones skipped). Anything else (pipes, devices, broken links, link loops) is skipped
    and reported."""
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
                    if f.suffix.lower() in reader.suffixes or (
                            _not_a_file(f) is None and reader.takes(f)):
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
        # lazily: a large table is read only as far as the sample needs
        docs = iter_documents(Blob(display_path(f), path=f, options=ReadOptions(ocr=False)))
        try:
            for d in docs:
                text = d.text[:max_chars - letters]
                cjk += len(CJK_RE.findall(text))
                letters += sum(ch.isalpha() for ch in text)
                if letters >= max_chars:
                    break
        except Exception:  # noqa: BLE001 - a file ingestion will skip and report anyway
            continue
        if letters >= max_chars:
            break
    return cjk / letters if letters else 0.0


class Reading:
    """One file's documents as its reader yields them; a failure midway (an IngestError, or
    whatever a parser raises) ends the iteration, sets `failed` and reports the file as
    skipped. What a loader could not read inside the file (an archive member) is reported
    as skipped too, under its own name."""

    def __init__(self, f: Path, report: IngestReport, reader: FileReader = DOCUMENTS,
                 data: bytes | None = None) -> None:
        self.f, self.report, self.reader, self.data = f, report, reader, data
        self.failed = False

    def __iter__(self) -> Iterator[Document]:
        f, report = self.f, self.report
        blob = Blob(display_path(f), path=f if self.data is None else None, data=self.data,
                    options=self.reader.options)
        try:
            yield from self.reader.load(blob)
        except IngestError as e:  # unsupported, empty, binary, corrupt: skip, report, go on
            self._skip(str(e).split(": ", 1)[-1])
        except RecursionError:
            self._skip("nested too deeply to parse")
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:  # a parser's own failure on a malformed file: skip it, go on
            log.debug("%s: loader failed", f, exc_info=True)
            self._skip(f"corrupt or unreadable {f.suffix.lstrip('.').upper() or 'file'} "
                       f"({_kind(e)}: {_first_line(e)})")
        finally:
            report.skipped += [(where, why) for where, why in blob.notes]

    def _skip(self, why: str) -> None:
        self.failed = True
        self.report.skipped.append((display_path(self.f), why))


def read_documents(f: Path, data: bytes | None, report: IngestReport,
                   reader: FileReader = DOCUMENTS) -> list[Document] | None:
    """The file's documents, or None (skipped and reported) when it cannot be read."""
    reading = Reading(f, report, reader, data)
    docs = list(reading)
    return None if reading.failed else docs


def _kind(e: BaseException) -> str:
    """The exception's class name; with its module when the name alone says nothing
    (zlib.error)."""
    name = type(e).__name__
    return f"{type(e).__module__}.{name}" if name.islower() else name


def _first_line(e: BaseException) -> str:
    text = str(e).strip().split("\n", 1)[0]
    return text[:200] if text else "no details"
