"""Which files an ingestion reads, how it reads one, and what it reports.

    report = IngestReport()
    files = discover([Path("docs/")], report)      # regular files of supported types
    docs = read_documents(path, data, report)      # None when skipped (the reason is reported)

Documents are read by type (ragline.ingest.loaders); another `FileReader` reads other files
into Documents (translation memories: ragline.tm).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ragline.errors import IngestError
from ragline.ingest.loaders import LOADERS, load_file
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
    """What an ingestion reads: the suffixes it takes from folders, and how it turns one
    file's bytes into Documents (an IngestError skips the file and reports why)."""

    suffixes: Collection[str]
    load: Callable[[Path, bytes], list[Document]]


DOCUMENTS = FileReader(frozenset(LOADERS), load_file)


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
             suffixes: Collection[str] = DOCUMENTS.suffixes) -> list[Path]:
    """Regular files named, and those of `suffixes` under folders named (recursively, hidden
    ones skipped). Anything else (pipes, devices, broken links, link loops) is skipped and
    reported."""
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
                    if f.suffix.lower() in suffixes:
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


def read_documents(f: Path, data: bytes, report: IngestReport,
                   reader: FileReader = DOCUMENTS) -> list[Document] | None:
    """The file's documents, or None (skipped and reported) when it cannot be read."""
    try:
        return reader.load(Path(display_path(f)), data)
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
