"""Office and e-book files: Word (.docx), PowerPoint (.pptx, slide by slide with speaker
notes), OpenDocument text (.odt), RTF and EPUB (chapters as sections).

    [deck] = load_pptx(Blob("slides.pptx", path=Path("slides.pptx")))
    deck.meta["sections"][2]    # [start, end, "Results", "slide 3"]
"""

from __future__ import annotations

import zipfile
from typing import Any

from ragline.errors import UnreadableFileError, missing_extra
from ragline.ingest.blob import Blob, check_zip, decode_text, require_text
from ragline.ingest.text_formats import html_to_text
from ragline.types import Document


def _sectioned(name: str, title: str, parts: list[tuple[str, str, str]],
               pages: bool = False) -> Document:
    """One document of titled parts: `(title, location, text)` each, as sections (and as
    pages when `pages`: a slide's number is its page)."""
    texts: list[str] = []
    sections: list[list[Any]] = []
    starts: list[int] = []
    pos = 0
    for sec_title, location, text in parts:
        text = text.strip()
        if not text:
            continue
        sections.append([pos, pos + len(text), sec_title, location])
        starts.append(pos)
        texts.append(text)
        pos += len(text) + 2
    body = require_text("\n\n".join(texts), name, "document has no text")
    meta: dict[str, Any] = {"sections": sections}
    if pages:
        meta["page_starts"] = starts
    return Document.from_text(body, source=name, title=title, meta=meta)


# ---------------------------------------------------------------- Word


def load_docx(blob: Blob) -> list[Document]:
    try:
        import docx
    except ImportError:
        raise missing_extra("python-docx", "docx") from None
    name = blob.name
    check_zip(blob, "DOCX")
    try:
        d = docx.Document(blob.buffer())
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise UnreadableFileError(f"{name}: corrupt or unreadable DOCX ({type(e).__name__})") from None
    blocks: list[str] = []
    title = (d.core_properties.title or "").strip()
    for para in d.paragraphs:
        t = para.text.strip()
        if not t:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        if not title and style.startswith(("Title", "Heading")):
            title = t
        blocks.append(t)
    for table in d.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells]
            blocks.append(" | ".join(c for c in cells if c))
    text = require_text("\n\n".join(blocks), name, "document has no text")
    return [Document.from_text(text, source=name, title=title)]




# ---------------------------------------------------------------- PowerPoint


def load_pptx(blob: Blob) -> list[Document]:
    """Each slide a section placed at "slide N" (its number is the passage's page): the
    slide's text, its tables row by row, then its speaker notes."""
    try:
        from pptx import Presentation
    except ImportError:
        raise missing_extra("python-pptx", "office") from None
    check_zip(blob, "PPTX")
    try:
        deck = Presentation(blob.buffer())
        parts: list[tuple[str, str, str]] = []
        for number, slide in enumerate(deck.slides, 1):
            title_shape = slide.shapes.title
            title = " ".join((title_shape.text if title_shape is not None else "").split())
            lines = [line for shape in slide.shapes for line in _shape_lines(shape)]
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text.strip()
                if notes:
                    lines.append(f"Notes: {notes}")
            parts.append((title, f"slide {number}", "\n".join(lines)))
        deck_title = (deck.core_properties.title or "").strip()
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, AttributeError) as e:
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable PPTX "
                                  f"({type(e).__name__})") from None
    first = next((t for t, _, text in parts if t), "")
    return [_sectioned(blob.name, deck_title or first, [(t or deck_title or first, loc, text)
                                                        for t, loc, text in parts],
                       pages=True)]


def _shape_lines(shape: Any) -> list[str]:
    lines: list[str] = []
    if getattr(shape, "shapes", None) is not None:  # a group
        for inner in shape.shapes:
            lines += _shape_lines(inner)
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        lines += [p.strip() for p in shape.text_frame.text.split("\n") if p.strip()]
    if getattr(shape, "has_table", False) and shape.has_table:
        for row in shape.table.rows:
            cells = [" ".join(c.text.split()) for c in row.cells]
            lines.append(" | ".join(cells))
    return lines


# ---------------------------------------------------------------- OpenDocument text

_ODF_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_ODF_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


def load_odt(blob: Blob) -> list[Document]:
    """OpenDocument text: paragraphs and tables in order, each heading opening a section.
    Its content.xml is parsed by defusedxml (no entities, no DTDs)."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    check_zip(blob, "ODT")
    try:
        with zipfile.ZipFile(blob.buffer()) as z:
            root = fromstring(z.read("content.xml"))
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable ODT "
                                  f"({type(e).__name__})") from None
    except (ParseError, DefusedXmlException) as e:
        raise UnreadableFileError(f"{blob.name}: refused or malformed ODT content "
                                  f"({type(e).__name__})") from None
    parts: list[tuple[str, str, str]] = []
    title = ""
    lines: list[str] = []

    def walk(el: Any) -> None:
        nonlocal title, lines
        for child in el:
            tag = child.tag
            if tag == f"{{{_ODF_TEXT}}}h":
                if lines:
                    parts.append((title, "", "\n".join(lines)))
                title = _odf_text(child)
                lines = [title]
            elif tag == f"{{{_ODF_TEXT}}}p":
                text = _odf_text(child)
                if text:
                    lines.append(text)
            elif tag == f"{{{_ODF_TABLE}}}table-row":  # its cells' paragraphs go with it
                cells = [_odf_text(c) for c in child if c.tag == f"{{{_ODF_TABLE}}}table-cell"]
                if any(cells):
                    lines.append(" | ".join(cells))
            else:
                walk(child)

    walk(root)
    parts.append((title, "", "\n".join(lines)))
    doc_title = next((t for t, _, _ in parts if t), "")
    return [_sectioned(blob.name, doc_title, parts)]


def _odf_text(el: Any) -> str:
    return " ".join("".join(el.itertext()).split())


# ---------------------------------------------------------------- RTF


def load_rtf(blob: Blob) -> list[Document]:
    try:
        from striprtf.striprtf import rtf_to_text
    except ImportError:
        raise missing_extra("striprtf", "office") from None
    source = decode_text(blob.read(), blob.name)
    if not source.lstrip().startswith("{\\rtf"):
        raise UnreadableFileError(f"{blob.name}: not an RTF file (it does not start with "
                                  "'{\\rtf')")
    text = require_text(rtf_to_text(source, errors="ignore"), blob.name, "document has no text")
    return [Document.from_text(text, source=blob.name, meta={})]


# ---------------------------------------------------------------- EPUB


def load_epub(blob: Blob) -> list[Document]:
    """An e-book: its chapters in reading order, each a section titled by its heading."""
    try:
        from ebooklib import ITEM_DOCUMENT, epub
    except ImportError:
        raise missing_extra("ebooklib", "office") from None
    check_zip(blob, "EPUB")
    try:
        book = epub.read_epub(blob.buffer(), options={"ignore_ncx": True})
        ids = [i[0] if isinstance(i, tuple) else i for i in book.spine]
        items = [book.get_item_with_id(i) for i in ids]
        items = [i for i in items if i is not None and i.get_type() == ITEM_DOCUMENT] or \
            list(book.get_items_of_type(ITEM_DOCUMENT))
        parts: list[tuple[str, str, str]] = []
        for n, item in enumerate(items, 1):
            text, heading = html_to_text(decode_text(item.get_content(), blob.name))
            parts.append((heading, f"chapter {n}", text))
        meta_title = book.get_metadata("DC", "title")
    except UnreadableFileError:
        raise
    except Exception as e:  # noqa: BLE001 - ebooklib raises anything on a bad book
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable EPUB "
                                  f"({type(e).__name__}: {str(e)[:120]})") from None
    title = str(meta_title[0][0]).strip() if meta_title else ""
    return [_sectioned(blob.name, title, parts)]
