"""PDF: the text layer page by page, headers and footers dropped, pages without text read
by OCR (the `ocr` extra).

    [doc] = load_pdf(Blob("report.pdf", path=Path("report.pdf")))
    doc.meta["page_starts"]      # where each page begins: passages know their page
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragline.errors import UnreadableFileError, missing_extra
from ragline.ingest.blob import Blob, normalize_newlines
from ragline.ingest.ocr import NO_OCR, OCR_OFF, ocr_array, ocr_available
from ragline.text import scrub
from ragline.types import Document

# a page with fewer characters than this has no text layer worth the name (a scan may carry
# a page number or a stray mark)
MIN_PAGE_CHARS = 10


def load_pdf(blob: Blob) -> list[Document]:
    """A PDF's text layer page by page (pypdf); a page without one goes through OCR when the
    `ocr` extra is installed (and OCR is on), else is named in the file's notes. A PDF with
    no text at all and no OCR is skipped with the reason, never indexed as empty."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise missing_extra("pypdf", "pdf") from None
    name = blob.name
    try:
        reader = PdfReader(blob.buffer())
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFileError(f"{name}: PDF is password-protected; decrypt it first")
        pages = [scrub(page.extract_text() or "") for page in reader.pages]
        ruled = {i for i, page in enumerate(reader.pages) if _may_have_rules(page)}
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except UnreadableFileError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise UnreadableFileError(f"{name}: corrupt or unreadable PDF ({type(e).__name__}: {e})") from None
    blank = [i for i, p in enumerate(pages) if len(p.strip()) < MIN_PAGE_CHARS]
    scanned: list[int] = []
    if blank and blob.options.ocr and ocr_available():
        for i, text in _ocr_pages(blob, blank):
            pages[i] = text
            scanned.append(i + 1)
    elif blank:
        why = OCR_OFF if not blob.options.ocr else NO_OCR
        if len(blank) == len(pages):
            raise UnreadableFileError(f"{name}: {why}")
        blob.notes.append((name, f"{len(blank)} of {len(pages)} pages ({_pages(blank)}): {why}"))
    found = _tables(blob, [i for i in sorted(ruled) if i + 1 not in scanned])
    for i, (outside, _) in found.items():
        pages[i] = outside
    pages = _strip_running_lines([normalize_newlines(p) for p in pages])
    parts: list[str] = []
    page_starts: list[int] = []
    sections: list[list[Any]] = []
    pos = 0
    for i, page in enumerate(pages):
        page = _clean_pdf_page(page)
        page_starts.append(pos)
        for k, blocks in enumerate(found.get(i, ("", []))[1], 1):
            for rows_at, block in blocks:
                sections.append([pos + len(page) + 2, pos + len(page) + 2 + len(block), "",
                                 f"page {i + 1} · table {k} · {rows_at}", True])
                page += "\n\n" + block
        parts.append(page)
        pos += len(page) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        raise UnreadableFileError(f"{name}: PDF has no text, and OCR found none")
    meta: dict[str, Any] = {"page_starts": page_starts}
    if sections:
        meta["sections"] = sections
    if scanned:
        meta["ocr_pages"] = scanned
    return [Document.from_text(text, source=name, title=str(meta_title).strip(), meta=meta)]


Block = tuple[str, str]  # ("rows 2–9", the header row and those rows, cells split by " | ")

# a path drawn with a rectangle (re) or a line (l): what a ruled table is made of
_PATH_OPS = re.compile(rb"(?<![A-Za-z])(?:re|l)\s")


def _may_have_rules(page: Any) -> bool:
    """Whether a page may draw the rules of a table: a rectangle or line operator in its
    content, or a form it draws (which may hold them). A page of text only is not handed to
    pdfplumber, which would parse it again (most of a 500-page report's reading time)."""
    try:
        if "/XObject" in (page.get("/Resources") or {}):
            return True
        contents = page.get_contents()
        return contents is not None and _PATH_OPS.search(contents.get_data()) is not None
    except Exception:  # noqa: BLE001 - a page pypdf cannot read again: let pdfplumber try
        return True


def _tables(blob: Blob, pages: list[int]) -> dict[int, tuple[str, list[list[Block]]]]:
    """The ruled tables of the pages that have any (pdfplumber's table finder): for each such
    page, its text outside the tables and each table as blocks of rows under its header row,
    about TABLE_WORDS words each, so that a number is never read apart from its column.
    Without pdfplumber (the `pdf` extra) tables stay in the page's text."""
    try:
        import pdfplumber
    except ImportError:
        return {}
    from ragline.ingest.tables import TABLE_WORDS

    out: dict[int, tuple[str, list[list[Block]]]] = {}
    with pdfplumber.open(blob.buffer()) as pdf:
        for i in pages:
            page = pdf.pages[i]
            if not (page.rects or page.lines):  # no rules, no table the finder can see
                page.close()
                continue
            tables = page.find_tables()
            if tables:
                boxes = [t.bbox for t in tables]

                def outside(obj: dict[str, Any], boxes: list[Any] = boxes) -> bool:
                    x = (obj.get("x0", 0) + obj.get("x1", 0)) / 2
                    y = (obj.get("top", 0) + obj.get("bottom", 0)) / 2
                    return not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)

                text = scrub(page.filter(outside).extract_text() or "")
                out[i] = (text, [_blocks(t.extract(), TABLE_WORDS) for t in tables])
            page.close()
    return out


def _blocks(rows: list[list[str | None]], words: int) -> list[Block]:
    cells = [[" ".join((c or "").split()) for c in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return []
    header, body = " | ".join(cells[0]), cells[1:]
    blocks: list[Block] = []
    group: list[tuple[int, str]] = []
    size = 0
    for n, row in enumerate(body, 2):
        line = " | ".join(row)
        if group and size + len(line.split()) > words:
            blocks.append(_block(header, group))
            group, size = [], 0
        group.append((n, line))
        size += len(line.split())
    if group:
        blocks.append(_block(header, group))
    return blocks or [("row 1", header)]


def _block(header: str, group: list[tuple[int, str]]) -> Block:
    first, last = group[0][0], group[-1][0]
    return (f"row {first}" if first == last else f"rows {first}–{last}",
            header + "\n" + "\n".join(line for _, line in group))


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(str(i + 1) for i in numbers[:5])
    return "page " + shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def _ocr_pages(blob: Blob, pages: list[int]) -> Iterator[tuple[int, str]]:
    """OCR of the PDF's pages `pages` (0-based), each rendered at 200 dpi (pypdfium2), with
    a progress bar by page."""
    try:
        import pypdfium2
    except ImportError:
        raise missing_extra("pypdfium2", "ocr") from None
    from tqdm.auto import tqdm

    with blob.open() as f:
        pdf = pypdfium2.PdfDocument(f)
        try:
            bar = tqdm(pages, desc=f"OCR {Path(blob.name).name}", unit="page", leave=False,
                       disable=not blob.options.progress or len(pages) < 2)
            for i in bar:
                bitmap = pdf[i].render(scale=200 / 72)
                yield i, ocr_array(bitmap.to_numpy()[:, :, :3])
        finally:
            pdf.close()


def _line_key(line: str) -> str:
    return re.sub(r"\d+", "#", line.strip().lower())


def _strip_running_lines(pages: list[str]) -> list[str]:
    """Drop page headers/footers: first/last lines that repeat (digits ignored) on most pages,
    and lines that are only a page number."""
    if len(pages) >= 3:
        edge: Counter[str] = Counter()
        for p in pages:
            lines = [ln for ln in p.split("\n") if ln.strip()]
            edge.update({_line_key(ln) for ln in lines[:2] + lines[-2:]})
        running = {k for k, c in edge.items() if c >= 0.6 * len(pages)}
    else:
        running = set()
    page_no = re.compile(r"^\s*(page\s*)?\d+(\s*(of|/)\s*\d+)?\s*$", re.IGNORECASE)
    return ["\n".join(ln for ln in p.split("\n")
                      if _line_key(ln) not in running and not page_no.match(ln)) for p in pages]


def _clean_pdf_page(page: str) -> str:
    page = re.sub(r"(\w)-\n(\w)", r"\1\2", page)  # words hyphenated across lines
    page = re.sub(r"[ \t]+", " ", page)
    return page.strip()


