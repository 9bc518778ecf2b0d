"""The SQLite store: documents, passages and their vectors. The source of truth of an index.

Dense and BM25 indexes are derived from it and can always be rebuilt from it: each passage row
keeps its vector and its BM25 tokens. Every change happens in one transaction and bumps
`generation`, which the derived indexes record so a stale one is detected on open.

    store = Store(path); store.open()
    with store.transaction():
        store.add_document(doc, passages, vectors, tokens)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ragline.errors import IndexCorruptError
from ragline.index.schema import FILL_REFERENCES, SCHEMA, add_passage_places
from ragline.text import display_path
from ragline.types import Document, DocumentInfo, Passage

_PASSAGE_COLS = ('p.rowid, p.id, p.doc_id, p.text, COALESCE(p.title, d.title), p.start, '
                 'p."end", p.position, d.source, p.page, p.location')


@dataclass(frozen=True)
class SourceRecord:
    path: str
    sha256: str
    size: int


def source_key(path: Path) -> str:
    """How the store names a source file: its resolved path as `display_path` writes it
    (SQLite text must be UTF-8)."""
    try:
        full = path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop has no resolved path
        full = path.absolute()
    return display_path(full)


def _row_to_passage(r: sqlite3.Row | tuple) -> tuple[int, Passage]:  # type: ignore[type-arg]
    return r[0], Passage(id=r[1], doc_id=r[2], text=r[3], title=r[4], start=r[5], end=r[6],
                         position=r[7], source=r[8], page=r[9], location=r[10] or "")


def _select_in(con: sqlite3.Connection, sql: str, ids: Sequence[Any]) -> Iterator[Any]:
    """The rows of `sql` for every id, its `{marks}` an IN list 500 ids long at most (SQLite's
    bound-parameter limit)."""
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        yield from con.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)


def _display_name(source: str, meta: str) -> str:
    """The name an upload was given (kept in meta), else the source's file name."""
    return json.loads(meta).get("filename") or Path(source).name


class Store:
    """`con` is the writer's connection. The query path (passages and vectors by row id,
    counts, the document list) reads through `reader`, one connection per thread, so a search
    running beside a write sees the last committed state, never the writer's open transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            raise RuntimeError("Store.open() was not called")
        return self._con

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (WAL: a committed snapshot per statement)."""
        con = getattr(self._local, "con", None)
        if con is None:
            if self._con is None:
                raise RuntimeError("Store.open() was not called")
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                  check_same_thread=False)  # closed by close(), from any thread
            con.execute("PRAGMA query_only=1")
            with self._readers_lock:
                self._readers.append(con)
            self._local.con = con
        return con

    def close_reader(self) -> None:
        """Close this thread's read connection (a worker thread's, before it ends)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            with self._readers_lock:
                self._readers.remove(con)
            con.close()
            self._local.con = None

    def open(self, create: bool = False) -> None:
        """Open the store; only `create` may make a new one. An existing index whose store is
        missing, empty or not a ragline store is damaged (IndexCorruptError), never silently
        replaced by an empty store: it holds the documents, nothing else can restore them."""
        if not create and not self.path.is_file():
            raise IndexCorruptError(
                f"{self.path} is missing: it holds the index's documents and passages, and the "
                f"search indexes beside it cannot restore them. {self._recover}")
        try:
            # mode=rw: never create the file by accident; the schema is checked before any write
            con = sqlite3.connect(f"file:{quote(str(self.path))}?mode={'rwc' if create else 'rw'}",
                                  uri=True, timeout=30, isolation_level=None,
                                  check_same_thread=False)
            try:
                if not create:
                    self._check_schema(con)
                con.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a crash
                con.execute("PRAGMA foreign_keys=ON")
                con.executescript(SCHEMA)
                add_passage_places(con)
                if con.execute("SELECT 1 FROM meta WHERE key='references'").fetchone() is None:
                    con.executescript(f"BEGIN IMMEDIATE;{FILL_REFERENCES}COMMIT;")
            except BaseException:
                con.close()
                raise
        except sqlite3.DatabaseError as e:
            raise IndexCorruptError(f"{self.path}: not a readable ragline store ({e}). "
                                    f"{self._recover}") from None
        self._con = con

    def _check_schema(self, con: sqlite3.Connection) -> None:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"meta", "sources", "documents", "passages"} - tables
        if missing:
            what = "empty" if not tables else f"lacks the table(s) {', '.join(sorted(missing))}"
            raise IndexCorruptError(f"{self.path} is {what}: it should hold the index's "
                                    f"documents and passages. {self._recover}")

    @property
    def _recover(self) -> str:
        return (f"Restore {self.path.name} from a backup, or move {self.path.parent} away and "
                "index your files again")

    def close(self) -> None:
        with self._readers_lock:
            for con in self._readers:
                con.close()
            self._readers.clear()
        self._local = threading.local()
        if self._con is not None:
            self._con.close()
            self._con = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: a crash inside leaves the store as it was before."""
        self.begin()
        try:
            yield
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def begin(self) -> None:
        """Open a transaction by hand (one that spans calls, like a file's pieces in the
        ingestion pipeline); `commit` or `rollback` ends it."""
        self.con.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._bump_generation()
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        self.con.execute("ROLLBACK")

    # ------------------------------------------------------------ meta

    def _bump_generation(self) -> None:
        self.con.execute(
            "INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    @property
    def generation(self) -> int:
        row = self.con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def committed_generation(self) -> int:
        """The generation as committed (from any thread; the writer's open transaction is
        not seen): what a search compares to the one its indexes caught up with."""
        row = self.reader.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------ writes

    def upsert_source(self, rec: SourceRecord) -> None:
        self.con.execute(
            "INSERT INTO sources(path, sha256, size, added) VALUES(?,?,?,?) ON CONFLICT(path) "
            "DO UPDATE SET sha256=excluded.sha256, size=excluded.size, added=excluded.added",
            (rec.path, rec.sha256, rec.size, time.time()))

    def add_document(self, doc: Document, passages: Sequence[Passage], vectors: np.ndarray,
                     tokens: Sequence[list[str]]) -> list[int]:
        """Insert a document and its passages; returns their row ids (the dense-index ids)."""
        self.con.execute(
            "INSERT INTO documents(id, source, title, text, meta, added) VALUES(?,?,?,?,?,?)",
            (doc.id, doc.source, doc.title, doc.text, json.dumps(doc.meta), time.time()))
        self.add_reference(doc.id, doc.source, doc.meta.get("filename"))
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        rowids = []
        for p, v, toks in zip(passages, vecs, tokens, strict=True):
            cur = self.con.execute(
                'INSERT INTO passages(id, doc_id, position, start, "end", page, text, tokens, '
                "vector, title, location) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (p.id, p.doc_id, p.position, p.start, p.end, p.page, p.text,
                 "\t".join(toks), v.tobytes(), None if p.title == doc.title else p.title,
                 p.location or None))
            rowids.append(int(cur.lastrowid or 0))
        return rowids

    def add_reference(self, doc_id: str, source: str, name: str | None = None) -> None:
        """Record that `source` holds the document too (its content is stored once)."""
        self.con.execute("INSERT OR IGNORE INTO document_sources(doc_id, source, name) "
                         "VALUES(?,?,?)", (doc_id, source, name))

    def holds(self, doc_id: str) -> bool:
        """Whether the document is stored, as the writer sees it (its open transaction
        included)."""
        return self.con.execute("SELECT 1 FROM documents WHERE id=?",
                                (doc_id,)).fetchone() is not None

    def delete_documents(self, doc_ids: Sequence[str]) -> list[int]:
        """Delete documents and their passages, whatever files hold them; returns the removed
        passage row ids."""
        removed: list[int] = []
        for doc_id in doc_ids:
            removed += [r[0] for r in self.con.execute(
                "SELECT rowid FROM passages WHERE doc_id=?", (doc_id,))]
            self.con.execute("DELETE FROM passages WHERE doc_id=?", (doc_id,))
            self.con.execute("DELETE FROM documents WHERE id=?", (doc_id,))
            self.con.execute("DELETE FROM document_sources WHERE doc_id=?", (doc_id,))
        return removed

    def forget_sources_of(self, doc_ids: Sequence[str]) -> None:
        """Drop the file records of every file that holds these documents, so that indexing
        such a file again re-reads it instead of calling it unchanged (its other documents
        stay until then)."""
        for doc_id in doc_ids:
            self.con.execute("DELETE FROM sources WHERE path IN "
                             "(SELECT source FROM document_sources WHERE doc_id=?)", (doc_id,))

    def delete_source(self, path: str) -> tuple[list[int], list[str]]:
        """Take a file out: the documents only it held are deleted, those another file also
        holds stay (named by that file from now on). Returns the removed passage row ids and
        the deleted documents' ids."""
        held = [r[0] for r in self.con.execute(
            "SELECT doc_id FROM document_sources WHERE source=?", (path,))]
        self.con.execute("DELETE FROM document_sources WHERE source=?", (path,))
        self.con.execute("DELETE FROM sources WHERE path=?", (path,))
        orphans = []
        for doc_id in held:
            other = self.con.execute(
                "SELECT source, name FROM document_sources WHERE doc_id=? ORDER BY source "
                "LIMIT 1", (doc_id,)).fetchone()
            if other is None:
                orphans.append(doc_id)
                continue
            meta = json.loads(self.con.execute("SELECT meta FROM documents WHERE id=?",
                                               (doc_id,)).fetchone()[0])
            meta.pop("filename", None)
            if other[1]:
                meta["filename"] = other[1]
            self.con.execute("UPDATE documents SET source=?, meta=? WHERE id=? AND source=?",
                             (other[0], json.dumps(meta), doc_id, path))
        return self.delete_documents(orphans), orphans

    # ------------------------------------------------------------ reads

    def source(self, path: str) -> SourceRecord | None:
        r = self.reader.execute("SELECT path, sha256, size FROM sources WHERE path=?",
                             (path,)).fetchone()
        return SourceRecord(*r) if r else None

    def document_ids_of_source(self, path: str) -> list[str]:
        """The documents a file holds (some may be held by other files too)."""
        return [r[0] for r in self.reader.execute(
            "SELECT doc_id FROM document_sources WHERE source=?", (path,))]

    def has_document(self, doc_id: str) -> bool:
        return self.reader.execute("SELECT 1 FROM documents WHERE id=?", (doc_id,)).fetchone() is not None

    def document(self, doc_id: str) -> Document | None:
        r = self.reader.execute("SELECT id, source, text, title, meta FROM documents WHERE id=?",
                             (doc_id,)).fetchone()
        return Document(id=r[0], source=r[1], text=r[2], title=r[3], meta=json.loads(r[4])) if r else None

    def documents(self, source: str | None = None) -> list[DocumentInfo]:
        """Every document (or those of one source) with its passage count, by source."""
        where, args = (("WHERE d.id IN (SELECT doc_id FROM document_sources WHERE source = ?)",
                        (source,)) if source is not None else ("", ()))
        return [DocumentInfo(id=r[0], source=r[1], title=r[2], passages=r[3],
                             name=_display_name(r[1], r[4]), added=r[5])
                for r in self.reader.execute(
                    "SELECT d.id, d.source, d.title, COUNT(p.rowid), d.meta, d.added "
                    f"FROM documents d LEFT JOIN passages p ON p.doc_id = d.id {where} "
                    "GROUP BY d.id ORDER BY d.source, d.id", args)]

    def names(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """Display names of documents (see DocumentInfo.name), by id."""
        return {doc_id: _display_name(source, meta) for doc_id, source, meta in _select_in(
            self.reader, "SELECT id, source, meta FROM documents WHERE id IN ({marks})",
            list(dict.fromkeys(doc_ids)))}

    def counts(self) -> dict[str, int]:
        q = self.reader.execute
        return {"documents": q("SELECT COUNT(*) FROM documents").fetchone()[0],
                "passages": q("SELECT COUNT(*) FROM passages").fetchone()[0],
                "sources": q("SELECT COUNT(*) FROM sources").fetchone()[0]}

    def passage_window(self, passage_id: str, neighbours: int) -> list[Passage] | None:
        """A passage with up to `neighbours` passages of its document on each side, in order
        (None: no such passage)."""
        r = self.reader.execute("SELECT doc_id, position FROM passages WHERE id=?",
                                (passage_id,)).fetchone()
        if r is None:
            return None
        return [_row_to_passage(row)[1] for row in self.reader.execute(
            f"SELECT {_PASSAGE_COLS} FROM passages p JOIN documents d ON d.id = p.doc_id "
            "WHERE p.doc_id = ? AND p.position BETWEEN ? AND ? ORDER BY p.position",
            (r[0], r[1] - neighbours, r[1] + neighbours))]

    def passages_by_rowid(self, rowids: Sequence[int]) -> dict[int, tuple[Passage, np.ndarray]]:
        out: dict[int, tuple[Passage, np.ndarray]] = {}
        for r in _select_in(self.reader, f"SELECT {_PASSAGE_COLS}, p.vector FROM passages p JOIN "
                            "documents d ON d.id = p.doc_id WHERE p.rowid IN ({marks})",
                            [int(i) for i in rowids]):
            rowid, passage = _row_to_passage(r)
            out[rowid] = (passage, np.frombuffer(r[11], dtype=np.float32))
        return out

    def vectors_by_rowid(self, rowids: Sequence[int]) -> dict[int, np.ndarray]:
        return {rowid: np.frombuffer(vec, dtype=np.float32) for rowid, vec in _select_in(
            self.reader, "SELECT rowid, vector FROM passages WHERE rowid IN ({marks})",
            [int(i) for i in rowids])}

    def _column_batches(self, column: str, batch: int) -> Iterator[list[tuple[int, Any]]]:
        """(row id, column) of every passage, in row-id order, `batch` rows at a time (as
        the writer sees them: a rebuild inside its transaction includes what it added)."""
        last = -1
        while True:
            rows = self.con.execute(f"SELECT rowid, {column} FROM passages WHERE rowid > ? "
                                    "ORDER BY rowid LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            yield rows
            last = int(rows[-1][0])

    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row ids, vectors) of every passage, in row-id order, `batch` rows at a time."""
        for rows in self._column_batches("vector", batch):
            yield (np.array([r[0] for r in rows], dtype=np.int64),
                   np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def n_passages(self) -> int:
        """Passages as the writer sees them (its open transaction included)."""
        return int(self.con.execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def rowids(self) -> np.ndarray:
        """Row ids of every passage, ascending: what the derived indexes must hold."""
        # no ORDER BY: SQLite then reads a covering index (tens of MB at 1M passages), not
        # the table with every passage's text and vector (GBs, seconds from a cold disk)
        return np.sort(np.fromiter((r[0] for r in self.con.execute(
            "SELECT rowid FROM passages")), dtype=np.int64))

    def vectors_of(self, rowids: np.ndarray) -> np.ndarray:
        """(len(rowids), dim) vectors of these passages, in the order given."""
        found = self.vectors_by_rowid(rowids.tolist())
        return np.stack([found[int(i)] for i in rowids])

    def tokens_of(self, rowids: np.ndarray) -> list[list[str]]:
        """The BM25 tokens of these passages, in the order given."""
        found = dict(_select_in(self.con, "SELECT rowid, tokens FROM passages WHERE rowid IN "
                                "({marks})", [int(i) for i in rowids]))
        return [found[int(i)].split("\t") if found[int(i)] else [] for i in rowids]

    def iter_token_batches(self, batch: int) -> Iterator[tuple[np.ndarray, list[list[str]]]]:
        """(row ids, token lists) of every passage, in row-id order, `batch` rows at a time."""
        for rows in self._column_batches("tokens", batch):
            yield (np.array([r[0] for r in rows], dtype=np.int64),
                   [r[1].split("\t") if r[1] else [] for r in rows])

    def vector_bytes(self) -> int | None:
        """The byte length of a stored vector (4·dim), or None when the store holds none."""
        row = self.con.execute("SELECT length(vector) FROM passages LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def source_paths(self) -> set[str]:
        """The committed source files (from any thread, as `counts` reads them)."""
        return {r[0] for r in self.reader.execute("SELECT path FROM sources")}
