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
    pages = _strip_running_lines([normalize_newlines(p) for p in pages])
    parts: list[str] = []
    page_starts: list[int] = []
    pos = 0
    for page in pages:
        page = _clean_pdf_page(page)
        page_starts.append(pos)
        parts.append(page)
        pos += len(page) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        raise UnreadableFileError(f"{name}: PDF has no text, and OCR found none")
    meta: dict[str, Any] = {"page_starts": page_starts}
    if scanned:
        meta["ocr_pages"] = scanned
    return [Document.from_text(text, source=name, title=str(meta_title).strip(), meta=meta)]


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


