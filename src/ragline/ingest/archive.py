"""Compressed files and archives: `.gz`, `.bz2`, `.xz` around any supported type
(`changelog.gz`, `data.csv.gz`), and `.zip` and tar archives (`.tar`, `.tgz`, `.tar.gz`…)
read as folders of their members. Nothing is unpacked past `MAX_UNPACKED_BYTES` (a bomb is
skipped with the reason) and nothing is written to disk: no member's path can leave the
archive, and a tar's links and devices are not followed.

    docs = load_compressed(Blob("changelog.gz", path=Path("changelog.gz")))
    docs = load_zip(Blob("docs.zip", path=Path("docs.zip")))   # members placed by their path
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import posixpath
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import PurePosixPath
from typing import IO, Any

from ragline.errors import IngestError, UnreadableFileError
from ragline.ingest.blob import MAX_UNPACKED_BYTES, Blob, too_big
from ragline.ingest.mail import _placed
from ragline.types import Document

_OPENERS: dict[str, Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".lzma": lzma.open}
_ERRORS = (OSError, EOFError, lzma.LZMAError, ValueError, zipfile.BadZipFile)


def _bounded(stream: IO[bytes], name: str) -> bytes:
    data = stream.read(MAX_UNPACKED_BYTES + 1)
    if len(data) > MAX_UNPACKED_BYTES:
        raise too_big(name, "stopped there")
    return data


def load_compressed(blob: Blob) -> list[Document]:
    """The file inside, read by its own type (the name less the compression suffix)."""
    from ragline.ingest.loaders import read_blob  # the registry imports this module

    inner = blob.name[: -len(blob.suffix)]
    try:
        with _OPENERS[blob.suffix](blob.open()) as f:
            data = _bounded(f, blob.name)
    except UnreadableFileError:
        raise
    except _ERRORS as e:
        raise UnreadableFileError(f"{blob.name}: corrupt {blob.suffix.lstrip('.')} data "
                                  f"({type(e).__name__}: {str(e)[:120]})") from None
    if not data.strip():
        raise UnreadableFileError(f"{blob.name}: unpacks to an empty file")
    return read_blob(blob.inner(inner, data), name=blob.name)


def load_zip(blob: Blob) -> Iterator[Document]:
    """Every member of a supported type (archives inside followed a few levels deep), each
    document placed at its member path; members that cannot be read go to the notes."""
    try:
        archive = zipfile.ZipFile(blob.open())
    except _ERRORS as e:
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable ZIP "
                                  f"({type(e).__name__})") from None
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir()]
        declared = sum(i.file_size for i in members)
        if declared > MAX_UNPACKED_BYTES:
            raise too_big(blob.name, f"{declared / 2**20:.0f} MB declared")
        yield from _read_members(blob, ((i.filename, partial(archive.open, i))
                                        for i in members))


def load_tar(blob: Blob) -> Iterator[Document]:
    """A tar archive (`.tar`, `.tgz`, `.tar.gz` through load_compressed…) like a ZIP: its
    regular files as members; links, devices and folders are not followed."""
    try:
        archive = tarfile.open(fileobj=blob.open(), mode="r:*")
    except (*_ERRORS, tarfile.TarError) as e:
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable tar archive "
                                  f"({type(e).__name__})") from None

    def members() -> Iterator[tuple[str, Callable[[], IO[bytes] | None]]]:
        declared = 0
        try:
            for info in archive:
                if info.issym() or info.islnk():
                    blob.notes.append((f"{blob.name}/{info.name}", "a link: not followed"))
                elif info.isfile():
                    declared += info.size
                    if declared > MAX_UNPACKED_BYTES:
                        raise too_big(blob.name, f"over {MAX_UNPACKED_BYTES / 2**20:.0f} MB "
                                                 "declared")
                    yield info.name, partial(archive.extractfile, info)
        except (*_ERRORS, tarfile.TarError) as e:
            raise UnreadableFileError(f"{blob.name}: corrupt tar archive "
                                      f"({type(e).__name__})") from None

    with archive:
        yield from _read_members(blob, members())


def _read_members(blob: Blob, members: Iterable[tuple[str, Callable[[], IO[bytes] | None]]],
                  ) -> Iterator[Document]:
    """The documents of an archive's members: (name, opener) pairs, read in order up to
    MAX_UNPACKED_BYTES in all; a member that cannot be read goes to the notes."""
    from ragline.ingest.loaders import can_read, read_blob  # the registry imports this module

    read = 0
    for name, open_member in members:
        path = _member_path(name)
        if path is None:
            blob.notes.append((f"{blob.name}/{name}", "its path leaves the archive: not read"))
            continue
        if PurePosixPath(path).name.startswith("."):
            continue
        if not can_read(path):
            continue
        where = f"{blob.name}/{path}"
        try:
            stream = open_member()
            if stream is None:
                continue
            with stream as f:
                data = _bounded(f, where)
        except UnreadableFileError as e:
            blob.notes.append((where, str(e).split(": ", 1)[-1]))
            continue
        except (*_ERRORS, RuntimeError, tarfile.TarError) as e:  # a bad member, an encrypted one
            blob.notes.append((where, f"unreadable member ({type(e).__name__})"))
            continue
        read += len(data)
        if read > MAX_UNPACKED_BYTES:
            raise too_big(blob.name, "its members together")
        try:
            docs = read_blob(blob.inner(where, data))
        except IngestError as e:
            blob.notes.append((where, str(e).split(": ", 1)[-1]))
            continue
        for d in docs:
            yield _placed(d, blob.name, path, path)


def _member_path(name: str) -> str | None:
    """A member's path inside the archive, or None for one that would leave it (absolute,
    `..`): such a member is never read."""
    name = name.replace("\\", "/")
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm.startswith("..") or norm in (".", ""):
        return None
    return norm
