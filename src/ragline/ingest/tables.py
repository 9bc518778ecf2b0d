"""Tables: files whose rows are documents (a BEIR corpus in JSONL or CSV), and spreadsheets
(CSV without a text column, .xlsx, .xls, .ods) read as tables.

A table is read in blocks of rows, each under its header row, so that a passage never holds
a row without its column names; it streams, so a 200 MB sheet never sits in memory whole.

    docs = list(load_spreadsheet(Blob("budget.xlsx", path=Path("budget.xlsx"))))
    docs[0].meta["sections"][0]   # [start, end, "", "Sheet1 · rows 2–14"]
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

from ragline.errors import UnreadableFileError, missing_extra
from ragline.ingest.blob import Blob, check_zip, decode_text, open_text
from ragline.text import count_words, scrub
from ragline.types import Document

log = logging.getLogger(__name__)

# formats whose rows may be separate documents (a citation names the row's document id)
TABLE_SUFFIXES = (".jsonl", ".csv", ".tsv")
TABLE_WORDS = 100       # rows gathered under their header into passages of about this size
DOCUMENT_ROWS = 1000    # rows per document: a sheet of a million rows is a thousand of them


_ID_KEYS = ("_id", "id", "doc_id", "docid")
_TEXT_KEYS = ("text", "contents", "content", "body", "abstract", "passage")
_TITLE_KEYS = ("title", "name", "heading")


def _row_to_document(row: dict[str, Any], name: str, line: int) -> Document | None:
    text_val = next((row[k] for k in _TEXT_KEYS if row.get(k)), None)
    if isinstance(text_val, list):
        text_val = " ".join(str(t).strip() for t in text_val)
    if not isinstance(text_val, str) or not text_val.strip():
        return None
    # JSON may escape lone surrogates ("\\udcff"), which no tokenizer or SQLite column takes
    text_val = scrub(text_val)
    title = scrub(next((str(row[k]) for k in _TITLE_KEYS if row.get(k)), ""))
    doc_id = next((scrub(str(row[k])) for k in _ID_KEYS if row.get(k) not in (None, "")), None)
    text = " ".join(text_val.split()) if "\n" not in text_val.strip() else text_val.strip()
    doc = Document.from_text(text, source=name, title=title.strip(), meta={"row": line})
    if doc_id is not None:
        doc = Document(id=doc_id, source=name, text=doc.text, title=doc.title, meta=doc.meta)
    return doc


def _rows_to_documents(rows: Iterable[tuple[int, Any]], name: str) -> list[Document]:
    docs: list[Document] = []
    seen: set[str] = set()
    bad: list[int] = []
    for line, row in rows:
        doc = _row_to_document(row, name, line) if isinstance(row, dict) else None
        if doc is None or doc.id in seen:
            bad.append(line)
            continue
        seen.add(doc.id)
        docs.append(doc)
    if bad:
        log.warning("%s: skipped %d row(s) without text, malformed or with a duplicate id "
                    "(first at line %d)", name, len(bad), bad[0])
    if not docs:
        raise UnreadableFileError(
            f"{name}: no rows with text; each row needs a 'text' field (and optionally 'title', 'id')"
        )
    return docs


def load_jsonl(blob: Blob) -> list[Document]:
    name = blob.name
    text = decode_text(blob.read(), name)

    def rows() -> Iterable[tuple[int, Any]]:
        for i, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except (ValueError, RecursionError):  # malformed, or nested past the stack
                    yield i, None

    return _rows_to_documents(rows(), name)




def load_csv(blob: Blob) -> Iterable[Document]:
    """CSV/TSV: a corpus (one document per row) when a column is named text, contents, body…;
    otherwise a table. Streams: the file is decoded as it is read."""
    delimiter = "\t" if blob.suffix == ".tsv" else ","
    stream = open_text(blob)
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UnreadableFileError(f"{blob.name}: file is empty")
        keys = [h.strip().lower() for h in header]
        if any(k in _TEXT_KEYS for k in keys):
            rows = ((i, dict(zip(keys, r, strict=False))) for i, r in enumerate(reader, 2))
            yield from _rows_to_documents(rows, blob.name)
        else:
            yield from table_documents(blob.name, "", _numbered(header, reader))
    except csv.Error as e:
        raise UnreadableFileError(f"{blob.name}: malformed CSV ({e})") from None
    finally:
        stream.close()


def _numbered(header: list[str], rows: Iterator[list[str]]) -> Iterator[tuple[int, list[Any]]]:
    yield 1, header
    yield from enumerate(rows, 2)


def load_xlsx(blob: Blob) -> Iterable[Document]:
    """Excel .xlsx/.xlsm, every sheet, streamed (openpyxl's read-only mode)."""
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise missing_extra("openpyxl", "office") from None
    # openpyxl's read-only mode streams the sheets (it holds the shared strings and styles)
    check_zip(blob, "XLSX", streamed=lambda member: member.startswith("xl/worksheets/"))
    try:
        book = _read_only_workbook(blob.open())
    except Exception as e:  # noqa: BLE001 - openpyxl raises anything on a bad file
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable XLSX "
                                  f"({type(e).__name__}: {str(e)[:120]})") from None
    try:
        found = False
        for sheet in book.worksheets:
            rows = enumerate(sheet.iter_rows(values_only=True), sheet.min_row or 1)
            for doc in table_documents(blob.name, sheet.title, rows, named=True):
                found = True
                yield doc
        if not found:
            raise UnreadableFileError(f"{blob.name}: every sheet is empty")
    finally:
        book.close()


class CompactStrings:
    """A workbook's shared strings (Excel stores each distinct text once, in a table the
    cells point into) in one UTF-8 buffer with an array of offsets: their UTF-8 size and 8
    bytes each, where openpyxl's list of Python strings takes about 60 bytes more each. With
    the rows let go (_prune_finished_rows), reading a 30 MB sheet of 1.4 million distinct
    strings peaks at 162 MB instead of openpyxl's 264 MB."""

    def __init__(self, strings: Iterable[str]) -> None:
        self._buf = bytearray()
        self._ends = array("Q")
        for text in strings:
            self._buf += text.encode("utf-8")
            self._ends.append(len(self._buf))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        if i < 0:  # a cell names its string by a number counted from 0
            raise IndexError(i)
        start = self._ends[i - 1] if i > 0 else 0
        return self._buf[start:self._ends[i]].decode("utf-8")


def _read_only_workbook(f: Any) -> Any:
    """openpyxl's read-only workbook (rows stream), its shared strings kept compact."""
    from openpyxl.cell.text import Text
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS
    from openpyxl.xml.functions import iterparse

    tag = f"{{{SHEET_MAIN_NS}}}si"

    def table(src: Any) -> Iterator[str]:
        # openpyxl.reader.strings.read_string_table, one string at a time, each <si> let go
        root = None
        for event, node in iterparse(src, events=("start", "end")):
            if root is None:
                root = node
            elif event == "end" and node.tag == tag:
                yield Text.from_tree(node).content.replace("x005F_", "")
                root.clear()

    class Reader(ExcelReader):  # type: ignore[misc]
        def read_strings(self) -> None:
            ct = self.package.find(SHARED_STRINGS)
            if ct is not None:
                with self.archive.open(ct.PartName[1:]) as src:
                    self.shared_strings = CompactStrings(table(src))

    _prune_finished_rows()
    reader = Reader(f, read_only=True, data_only=True)
    reader.read()
    return reader.wb


def _prune_finished_rows() -> None:
    """Make openpyxl's sheet parser let go of the rows it has read. It clears each <row>
    element after reading it, but leaves it in <sheetData>, about 80 bytes a row: reading
    the 1.4 million rows of a 30 MB sheet grew from 137 to 250 MB, and a 200 MB one peaked
    near 1 GB. The same events reach it; a finished row is taken out of its parent."""
    from openpyxl.worksheet import _reader

    parse = _reader.iterparse
    if hasattr(parse, "__wrapped__"):
        return

    def iterparse(source: Any, events: Any = None, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        wanted = set(events or ("end",))
        open_elements: list[Any] = []
        for event, element in parse(source, events=("start", "end"), **kwargs):
            if event == "start":
                open_elements.append(element)
            else:
                open_elements.pop()
            if event in wanted:
                yield event, element
            if event == "end" and element.tag == _reader.ROW_TAG and open_elements:
                open_elements[-1].remove(element)

    iterparse.__wrapped__ = parse  # type: ignore[attr-defined]
    _reader.iterparse = iterparse


def load_calamine(blob: Blob) -> Iterable[Document]:
    """Excel 97 .xls and OpenDocument .ods, every sheet (python-calamine)."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:
        raise missing_extra("python-calamine", "office") from None
    kind = blob.suffix.lstrip(".").upper()
    if blob.suffix == ".ods":
        check_zip(blob, kind)
    try:
        book = CalamineWorkbook.from_filelike(blob.buffer())
        found = False
        for name in book.sheet_names:
            sheet = book.get_sheet_by_name(name)
            rows = enumerate(sheet.iter_rows(), sheet.start[0] + 1 if sheet.start else 1)
            for doc in table_documents(blob.name, name, rows, named=True):
                found = True
                yield doc
    except UnreadableFileError:
        raise
    except Exception as e:  # noqa: BLE001 - calamine raises its own errors on a bad file
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable {kind} "
                                  f"({type(e).__name__}: {str(e)[:120]})") from None
    if not found:
        raise UnreadableFileError(f"{blob.name}: every sheet is empty")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return " ".join(scrub(str(value)).split()).replace("|", "/")


def table_documents(name: str, sheet: str, rows: Iterable[tuple[int, Any]],
                    named: bool = False) -> Iterator[Document]:
    """A table's documents: blocks of `DOCUMENT_ROWS` rows, each cut into passages of rows
    under the header row (the first non-empty one), placed by sheet and row numbers."""
    header: str | None = None
    width = 0
    parts: list[str] = []
    sections: list[list[Any]] = []
    block: list[tuple[int, str]] = []
    pos = n_rows = 0
    where = f"{sheet} · " if named and sheet else ""

    def close_section() -> None:
        nonlocal pos
        if not block:
            return
        text = f"{header}\n" + "\n".join(line for _, line in block)
        first, last = block[0][0], block[-1][0]
        rows_at = f"row {first}" if first == last else f"rows {first}–{last}"
        sections.append([pos, pos + len(text), "", where + rows_at])
        parts.append(text)
        pos += len(text) + 2
        block.clear()

    def document() -> Document:
        nonlocal pos, n_rows
        doc = Document.from_text("\n\n".join(parts), source=name, title=sheet,
                                 meta={"sections": list(sections), "whole_sections": True,
                                       **({"sheet": sheet} if named else {})})
        parts.clear()
        sections.clear()
        pos = n_rows = 0
        return doc

    words, header_words, total = 0.0, 0.0, 0
    for number, raw in rows:
        cells = [_cell(v) for v in raw]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        if header is None:
            width = len(cells)
            header = " | ".join(cells)
            header_words = count_words(header)
            continue
        line = " | ".join(cells[:max(width, len(cells))])
        n = count_words(line)
        if block and words + n > TABLE_WORDS:
            close_section()
        if not block:
            words = header_words
        block.append((number, line))
        words += n
        n_rows += 1
        total += 1
        if n_rows >= DOCUMENT_ROWS:
            close_section()
            yield document()
    close_section()
    if parts:
        yield document()
    elif header is not None and total == 0:  # a header alone: the table's only text
        yield Document.from_text(header, source=name, title=sheet)
