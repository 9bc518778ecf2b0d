"""What a loader reads: a `Blob` (a file on disk, an upload, a member of an archive) and the
checks every loader shares — text decoding, size bounds, and what a file's bytes look like.

    blob = Blob("notes/changelog.gz", path=Path("notes/changelog.gz"))
    text = decode_text(blob.read(), blob.name)
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ragline.errors import UnreadableFileError

log = logging.getLogger(__name__)

# The most bytes one file (or an archive member, once unpacked) may grow to in memory. A
# compressed file that unpacks past it is a bomb or a data dump, not a document: it is
# skipped with the reason, never unpacked further.
MAX_UNPACKED_BYTES = 256 * 2**20
# A member read as a stream may unpack past that bound when it is no denser than this: an
# Excel sheet's XML packs 10–15 times, a bomb's member up to 1,032 times (deflate's limit).
MAX_ZIP_RATIO = 100
# archives inside archives: a zip of zips is followed this deep, no deeper
MAX_ARCHIVE_DEPTH = 3


@dataclass(frozen=True)
class ReadOptions:
    """How files are read: `ocr` runs OCR on images and on PDF pages without a text layer
    (when the `ocr` extra is installed); `progress` shows a bar for long readings (OCR)."""

    ocr: bool = True
    progress: bool = False


@dataclass(frozen=True)
class Blob:
    """One file to read: its `name` (what sources and errors say; its suffixes pick the
    loader) and its bytes, read when asked from `path`, or given as `data` (uploads, archive
    members). `notes` collects what a loader could not read inside the file (an archive's
    bad member, a mail's attachment): `(where, why)`, reported as skipped."""

    name: str
    path: Path | None = None
    data: bytes | None = None
    options: ReadOptions = field(default_factory=ReadOptions)
    depth: int = 0
    notes: list[tuple[str, str]] = field(default_factory=list, compare=False)

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as e:
            raise UnreadableFileError(f"{self.name}: cannot read ({e.strerror})") from None

    def open(self) -> BinaryIO:
        """The bytes as a file, without reading them all (a large spreadsheet streams)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        try:
            return self.path.open("rb")
        except OSError as e:
            raise UnreadableFileError(f"{self.name}: cannot read ({e.strerror})") from None

    def buffer(self) -> io.BytesIO:
        """The bytes in memory as a file, for libraries that seek about and never close."""
        return io.BytesIO(self.read())

    def inner(self, name: str, data: bytes) -> Blob:
        """A file inside this one (an archive member, an attachment), read the same way;
        its notes are this file's notes."""
        if self.depth + 1 > MAX_ARCHIVE_DEPTH:
            raise UnreadableFileError(f"{name}: archives nested more than {MAX_ARCHIVE_DEPTH} "
                                      "deep; unpack the outer ones first")
        return Blob(name, data=data, options=self.options, depth=self.depth + 1,
                    notes=self.notes)


# ---------------------------------------------------------------- text decoding


def decode_text(data: bytes, name: str) -> str:
    """Bytes → str: UTF-8 (with or without BOM), UTF-16 with BOM, else a confident guess
    (GB18030, Latin-1, …). Binary data and undecodable text are errors, never mojibake."""
    if not data.strip():
        raise UnreadableFileError(f"{name}: file is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return normalize_newlines(data.decode("utf-16", errors="replace"))
    if b"\x00" in data[:8192]:
        raise UnreadableFileError(
            f"{name}: looks like a binary file, not text; skip it or convert it to text")
    try:
        return normalize_newlines(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.chaos > 0.2:
        raise UnreadableFileError(
            f"{name}: not valid UTF-8 and the encoding could not be detected; convert it to UTF-8 "
            "(e.g. iconv -f GB18030 -t UTF-8)"
        )
    log.info("%s: decoded as %s", name, best.encoding)
    return normalize_newlines(str(best))


def open_text(blob: Blob) -> io.TextIOWrapper:
    """The file as text, decoded as it is read (a large CSV is never held whole): the
    encoding is told from the first 64 KB as `decode_text` tells it; newlines are kept as
    written (the csv module wants them so)."""
    raw = blob.open()
    head = raw.read(65536)
    raw.seek(0)
    if not head.strip():
        raw.close()
        raise UnreadableFileError(f"{blob.name}: file is empty")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in head[:8192]:
        raw.close()
        raise UnreadableFileError(
            f"{blob.name}: looks like a binary file, not text; skip it or convert it to text")
    else:
        try:
            head.decode("utf-8-sig")
            encoding = "utf-8-sig"
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 3:  # a character cut at the end of the 64 KB
                encoding = "utf-8-sig"
            else:
                from charset_normalizer import from_bytes

                best = from_bytes(head).best()
                if best is None or best.chaos > 0.2:
                    raw.close()
                    raise UnreadableFileError(
                        f"{blob.name}: not valid UTF-8 and the encoding could not be detected;"
                        " convert it to UTF-8 (e.g. iconv -f GB18030 -t UTF-8)") from None
                encoding = best.encoding
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def require_text(text: str, name: str, why: str = "no text") -> str:
    text = text.strip()
    if not text:
        raise UnreadableFileError(f"{name}: {why}")
    return text


def looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes (a few KB) are text: a BOM, or no NUL byte and few
    control characters. What a file with no extension (README, LICENSE) is read by."""
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    if not head or b"\x00" in head:
        return False
    control = sum(b < 32 and b not in (9, 10, 12, 13) for b in head)
    return control <= len(head) // 100


# ---------------------------------------------------------------- bounds


def too_big(name: str, size: int | str) -> UnreadableFileError:
    return UnreadableFileError(
        f"{name}: unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MB ({size}); a "
        "compression bomb or a data dump: skipped, not unpacked")


def check_zip(blob: Blob, kind: str, streamed: Callable[[str], bool] | None = None) -> None:
    """An Office, OpenDocument or EPUB file is a zip: refuse one whose members unpack past
    the bound before its library inflates them (the sizes a zip declares are the most its
    reader will return). `streamed`: the members its reader streams (an Excel sheet, read
    row by row), which may unpack past the bound as long as they are no denser than
    ordinary data (MAX_ZIP_RATIO): a 20 MB workbook's sheet unpacks to 230 MB, a bomb's
    member to a thousand times its size."""
    try:
        with zipfile.ZipFile(blob.open()) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable {kind} "
                                  f"(not a zip file: {e})") from None
    held = sum(i.file_size for i in members if streamed is None or not streamed(i.filename))
    if held > MAX_UNPACKED_BYTES:
        raise too_big(blob.name, f"{held / 2**20:.0f} MB declared")
    for i in members:
        if streamed is not None and streamed(i.filename) and \
                i.file_size > MAX_UNPACKED_BYTES and i.file_size > MAX_ZIP_RATIO * i.compress_size:
            raise UnreadableFileError(
                f"{blob.name}: {i.filename} unpacks to {i.file_size / 2**20:,.0f} MB, "
                f"{i.file_size / max(1, i.compress_size):,.0f} times its packed size; a "
                "compression bomb: skipped, not unpacked")
