"""Loaders: one file → a list of Documents with clean text.

    docs = load_file(Path("report.pdf"))        # one Document, page offsets in meta
    docs = load_file(Path("corpus.jsonl"))      # one Document per row, ids kept

Every failure is an IngestError subclass with a one-line message that says what to do.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragline.errors import UnreadableFileError, UnsupportedFileError, missing_extra
from ragline.text import scrub
from ragline.types import Document

log = logging.getLogger(__name__)

Loader = Callable[[bytes, str], list[Document]]


# ---------------------------------------------------------------- text decoding


def decode_text(data: bytes, name: str) -> str:
    """Bytes → str: UTF-8 (with or without BOM), UTF-16 with BOM, else a confident guess
    (GB18030, Latin-1, …). Binary data and undecodable text are errors, never mojibake."""
    if not data.strip():
        raise UnreadableFileError(f"{name}: file is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _normalize_newlines(data.decode("utf-16"))
    if b"\x00" in data[:8192]:
        raise UnreadableFileError(
            f"{name}: looks like a binary file, not text; skip it or convert it to text")
    try:
        return _normalize_newlines(data.decode("utf-8-sig"))
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
    return _normalize_newlines(str(best))


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _require_text(text: str, name: str, why: str = "no text") -> str:
    text = text.strip()
    if not text:
        raise UnreadableFileError(f"{name}: {why}")
    return text


# ---------------------------------------------------------------- plain formats


def load_txt(data: bytes, name: str) -> list[Document]:
    text = _require_text(decode_text(data, name), name, "file is empty")
    return [Document.from_text(text, source=name)]


def load_markdown(data: bytes, name: str) -> list[Document]:
    from markdown_it import MarkdownIt

    source = decode_text(data, name)
    title = ""
    m = re.search(r"^#{1,2}\s+(.+?)\s*#*\s*$", source, re.MULTILINE)
    if m:
        title = m.group(1).strip()
    html = MarkdownIt("commonmark").enable("table").render(source)
    text, _ = html_to_text(html)
    text = _require_text(text, name, "file is empty")
    return [Document.from_text(text, source=name, title=title)]


# ---------------------------------------------------------------- HTML

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "nav", "header", "footer",
              "aside", "form", "iframe", "button", "select", "head")
_BLOCK_TAGS = ("p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6",
               "li", "ul", "ol", "table", "tr", "blockquote", "pre", "br", "hr", "dd", "dt",
               "figcaption")


# HTML parsers scan the stack of open elements for many start tags, so a page of nested
# <div>s parses in time quadratic in its depth (1.1 MB of them: 47 s). Browsers cap the tree
# depth (Blink at 512); tags deeper than this are dropped before parsing, their text kept.
MAX_HTML_DEPTH = 256
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
# elements that never hold content, and those whose end tag may be left out (a new one closes
# the last): neither deepens the tree in a parser, so neither is counted
_FLAT_TAGS = frozenset("area base br col embed hr img input link meta source track wbr "
                       "p li dt dd tr td th option optgroup rb rt rp thead tbody tfoot "
                       "colgroup caption".split())


def limit_depth(html: str, max_depth: int = MAX_HTML_DEPTH) -> str:
    """`html` with tags nested deeper than `max_depth` removed (one linear pass)."""
    depth = deepest = 0
    for m in _TAG_RE.finditer(html):  # most pages: measure only, change nothing
        if m.group(2).lower() in _FLAT_TAGS or m.group(3):
            continue
        depth = max(0, depth - 1) if m.group(1) else depth + 1
        deepest = max(deepest, depth)
    if deepest <= max_depth:
        return html
    out: list[str] = []
    last = depth = 0
    dropped: Counter[str] = Counter()  # open tags dropped, by name: their end tags go too
    for m in _TAG_RE.finditer(html):
        name = m.group(2).lower()
        if name in _FLAT_TAGS or m.group(3):
            continue
        if m.group(1):  # an end tag
            if dropped[name]:
                dropped[name] -= 1
            else:
                depth = max(0, depth - 1)
                continue
        elif depth < max_depth:
            depth += 1
            continue
        else:
            dropped[name] += 1
        out.append(html[last:m.start()])
        out.append(" ")
        last = m.end()
    out.append(html[last:])
    return "".join(out)


def html_to_text(html: str) -> tuple[str, str]:
    """(text, title) of an HTML page: no markup, no scripts or navigation, blocks on their own lines."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(limit_depth(html))
    title_node = tree.css_first("title") or tree.css_first("h1")
    title = " ".join(title_node.text().split()) if title_node else ""
    for tag in _DROP_TAGS:
        for node in tree.css(tag):
            node.decompose()
    for node in tree.css(",".join(_BLOCK_TAGS)):
        node.insert_before("\n")
        node.insert_after("\n")
    for node in tree.css("td,th"):
        node.insert_after(" ")
    root = tree.body or tree.root
    raw = root.text(separator="") if root is not None else ""
    lines = (" ".join(line.split()) for line in raw.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, title


def load_html(data: bytes, name: str) -> list[Document]:
    text, title = html_to_text(decode_text(data, name))
    text = _require_text(text, name, "no text in the page")
    return [Document.from_text(text, source=name, title=title)]


# ---------------------------------------------------------------- PDF


def load_pdf(data: bytes, name: str) -> list[Document]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise missing_extra("pypdf", "pdf") from None
    if not data.strip():
        raise UnreadableFileError(f"{name}: file is empty")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFileError(f"{name}: PDF is password-protected; decrypt it first")
        pages = [scrub(page.extract_text() or "") for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except UnreadableFileError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise UnreadableFileError(f"{name}: corrupt or unreadable PDF ({type(e).__name__}: {e})") from None
    pages = _strip_running_lines([_normalize_newlines(p) for p in pages])
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
        raise UnreadableFileError(f"{name}: PDF has no extractable text (scanned? run OCR first)")
    return [Document.from_text(text, source=name, title=str(meta_title).strip(),
                               meta={"page_starts": page_starts})]


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


# ---------------------------------------------------------------- DOCX


def load_docx(data: bytes, name: str) -> list[Document]:
    try:
        import docx
    except ImportError:
        raise missing_extra("python-docx", "docx") from None
    import zipfile

    try:
        d = docx.Document(io.BytesIO(data))
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
    text = _require_text("\n\n".join(blocks), name, "document has no text")
    return [Document.from_text(text, source=name, title=title)]


# ---------------------------------------------------------------- tables of documents

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


def load_jsonl(data: bytes, name: str) -> list[Document]:
    text = decode_text(data, name)

    def rows() -> Iterable[tuple[int, Any]]:
        for i, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except (ValueError, RecursionError):  # malformed, or nested past the stack
                    yield i, None

    return _rows_to_documents(rows(), name)


def load_csv(data: bytes, name: str) -> list[Document]:
    text = decode_text(data, name)
    delimiter = "\t" if name.lower().endswith(".tsv") else ","
    try:
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        rows = [(i, {(k or "").strip().lower(): v for k, v in r.items()})
                for i, r in enumerate(reader, 2)]
    except csv.Error as e:
        raise UnreadableFileError(f"{name}: malformed CSV ({e})") from None
    return _rows_to_documents(rows, name)


# formats whose rows are separate documents (a citation names the row's document id)
TABLE_SUFFIXES = (".jsonl", ".csv", ".tsv")

LOADERS: dict[str, Loader] = {
    ".txt": load_txt, ".text": load_txt,
    ".md": load_markdown, ".markdown": load_markdown,
    ".html": load_html, ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".jsonl": load_jsonl, ".csv": load_csv, ".tsv": load_csv,
}


def supported_suffixes() -> list[str]:
    return sorted(LOADERS)


def loader_for(path: Path) -> Loader:
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise UnsupportedFileError(
            f"{path}: no loader for '{path.suffix or '(no extension)'}'; "
            f"supported: {' '.join(supported_suffixes())}"
        )
    return loader


def load_file(path: Path, data: bytes | None = None) -> list[Document]:
    """Load one file into Documents; `data` may be passed when the bytes are already read."""
    loader = loader_for(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UnreadableFileError(f"{path}: cannot read ({e.strerror})") from None
    return loader(data, str(path))
