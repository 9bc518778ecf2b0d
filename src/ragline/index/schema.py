"""The store's SQLite schema, and what tells a blank store (a creation killed before it)
from a ragline one. Tables: meta (the generation, schema markers), sources (a file's hash and
size), documents, passages (text, BM25 tokens, vector), document_sources (every file that
holds a document)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

__all__ = ["FILL_REFERENCES", "SCHEMA", "add_passage_places", "is_blank"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL,
    meta TEXT NOT NULL, added REAL NOT NULL);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
-- AUTOINCREMENT: a row id is never reused, so a stale dense index can never point a
-- vector id at a different passage.
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    page INTEGER, text TEXT NOT NULL, tokens TEXT NOT NULL, vector BLOB NOT NULL,
    -- a section's own title (a function's name, a slide's title; NULL: the document's) and
    -- where in its file the passage lies ("slide 3", "Sheet1 · rows 2–41", "lines 10–45")
    title TEXT, location TEXT);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc_id);
-- every source file that holds a document (two files may hold the same content, which is
-- stored once): a document lives while one of them does. `name`: an upload's own name.
CREATE TABLE IF NOT EXISTS document_sources (
    doc_id TEXT NOT NULL, source TEXT NOT NULL, name TEXT, PRIMARY KEY (doc_id, source));
CREATE INDEX IF NOT EXISTS document_sources_source ON document_sources(source);
"""
# stores made before document_sources held one source per document: documents.source
FILL_REFERENCES = """
INSERT OR IGNORE INTO document_sources(doc_id, source, name)
    SELECT id, source, json_extract(meta, '$.filename') FROM documents;
INSERT INTO meta(key, value) VALUES('references', '1');
"""


def add_passage_places(con: sqlite3.Connection) -> None:
    """Stores made before passages had their own title and location get the two columns
    (NULL: the document's title, no location)."""
    columns = {r[1] for r in con.execute("PRAGMA table_info(passages)")}
    for column in ("title", "location"):
        if column not in columns:
            con.execute(f"ALTER TABLE passages ADD COLUMN {column} TEXT")


def is_blank(path: Path) -> bool:
    """An empty file, or an SQLite database without tables (a store killed at its creation)."""
    try:
        if path.stat().st_size == 0:
            return True
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            con.close()
    except (OSError, sqlite3.DatabaseError):
        return False
