"""Uploaded files: checked, stored under their content hash, indexed, removed with their last
document.

A client's file name is never used as a path. It is reduced to a display name (no folders, no
control characters, at most 200 characters), its extension picks the loader, and the bytes are
stored as `<index>/uploads/<sha256><ext>`, so the same file uploaded twice is indexed once.

    store = UploadStore(index, max_bytes=32 << 20)
    result = store.add("report.pdf", data)        # {"status": "added", "documents": [...]}
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from pathlib import Path
from typing import Any

from ragline.errors import (
    DocumentNotFoundError,
    PayloadTooLargeError,
    UnreadableFileError,
    UnsupportedFileError,
)
from ragline.index.atomic import atomic_write_bytes
from ragline.index.index import Index
from ragline.index.store import source_key
from ragline.index.upkeep import UPLOADS
from ragline.ingest.blob import looks_like_text
from ragline.ingest.loaders import supported_suffixes, unsupported


def display_name(raw: str | None) -> str:
    """The last path component of a client's file name, printable, at most 200 characters."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    return name[-200:] or "upload"


def suffix_of(name: str) -> str:
    """The loader's extension for a display name (with the type inside a compressed file:
    `.csv.gz`; "" for a name with none, read as text when it is), or UnsupportedFileError."""
    suffix = Path(name).suffix.lower()
    if suffix in (".gz", ".bz2", ".xz", ".lzma"):
        inner = Path(name[: -len(suffix)]).suffix.lower()
        return (inner if inner in supported_suffixes() else "") + suffix
    if suffix and suffix not in supported_suffixes():
        raise UnsupportedFileError(
            f"{name}: no loader for '{suffix or '(no extension)'}'; supported: "
            f"{' '.join(supported_suffixes())}")
    return suffix


def too_large(max_bytes: int) -> str:
    """What an upload over the limit is told (here and by the body limit, server.limits)."""
    return (f"the file is larger than the server's limit of {max_bytes / 2**20:g} MB "
            "(server.max_upload_mb)")


class UploadStore:
    def __init__(self, index: Index, max_bytes: int) -> None:
        self.index = index
        self.max_bytes = max_bytes
        self.folder = index.path / UPLOADS
        # one upload or deletion at a time: a deletion must not unlink a file that a
        # concurrent upload of the same bytes is indexing
        self._lock = threading.Lock()

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise PayloadTooLargeError(too_large(self.max_bytes))

    def add(self, raw_name: str | None, data: bytes) -> dict[str, Any]:
        """Store and index one uploaded file. Raises on an unsupported, empty or unreadable
        file; the index is unchanged then."""
        name = display_name(raw_name)
        suffix = suffix_of(name)
        self.check_size(len(data))
        if not data:
            raise UnreadableFileError(f"{name}: the file is empty")
        if not suffix and not looks_like_text(data[:8192]):
            raise unsupported(name)  # a name with no extension is read only when it is text
        path = self.folder / f"{hashlib.sha256(data).hexdigest()}{suffix}"
        # under the index's writer lock, so that an open in another process never takes the
        # file for a leftover of a killed upload between its writing and its commit
        with self._lock, self.index.write_lock():
            self.folder.mkdir(exist_ok=True)
            existed = path.exists()
            try:
                if not existed:
                    atomic_write_bytes(path, data)
                report = self.index.add([path], names={path: name})
                if report.skipped:
                    raise UnreadableFileError(f"{name}: {report.skipped[0][1]}")
            except BaseException:
                if not existed:  # a failed upload leaves nothing behind
                    path.unlink(missing_ok=True)
                raise
            shared = {doc_id for _, doc_id in report.duplicates}
            docs = self.index.documents(source=source_key(path))
            if not [d for d in docs if d.id not in shared]:
                # every document of it is already indexed from another file
                self.index.remove(str(path))
                path.unlink(missing_ok=True)
                return {"name": name, "status": "duplicate", "documents": [], "passages": 0,
                        "duplicate_of": sorted(shared)}
        status = "added" if report.added else "unchanged"
        return {"name": name, "status": status, "documents": [d.to_dict() for d in docs],
                "passages": sum(d.passages for d in docs)}

    def remove(self, doc_id: str) -> dict[str, Any]:
        """Remove a document by id; its uploaded file goes with its last document."""
        with self._lock:
            source = self.index.document_source(doc_id)
            if source is None:
                raise DocumentNotFoundError(f"no document '{doc_id}' in the index; "
                                            "GET /v1/documents lists them")
            self.index.remove_documents([doc_id])
            path = Path(source)
            if path.parent == self.folder.resolve() and not self.index.documents(source):
                path.unlink(missing_ok=True)
        return {"deleted": [doc_id]}
