"""The loader registry: one entry per file type (its suffixes, the function that reads it,
the library it reads with), and the functions that pick one for a file.

    docs = load_file(Path("report.pdf"))        # one Document, page offsets in meta
    docs = load_file(Path("corpus.jsonl"))      # one Document per row, ids kept
    FORMATS                                     # docs/reference/formats.md is made from it

A file whose type has no entry is read as text when its bytes are text (README, LICENSE,
Makefile, changelog.Debian); otherwise it is unsupported. Every failure is an IngestError
subclass with a one-line message that says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ragline.errors import (
    IngestError,
    ModelUnavailableError,
    UnreadableFileError,
    UnsupportedFileError,
)
from ragline.ingest import archive, code, mail, ocr, office, pdf, tables, text_formats
from ragline.ingest.blob import Blob, ReadOptions, decode_text, looks_like_text
from ragline.ingest.tables import TABLE_SUFFIXES
from ragline.types import Document

__all__ = ["FORMATS", "LOADERS", "TABLE_SUFFIXES", "Format", "can_read", "decode_text",
           "iter_documents", "load_file", "read_blob", "supported_suffixes", "unsupported"]

log = logging.getLogger(__name__)

Loader = Callable[[Blob], Iterable[Document]]


@dataclass(frozen=True)
class Format:
    """A file type: what it is, its suffixes, its loader, and the library it reads with
    (`extra`: the pip extra that installs it; "" when ragline always has it)."""

    name: str
    suffixes: tuple[str, ...]
    load: Loader
    library: str
    extra: str = ""


FORMATS: tuple[Format, ...] = (
    Format("plain text", (".txt", ".text", ".log"), text_formats.load_txt, "charset-normalizer"),
    Format("markup and config as text",
           (".rst", ".tex", ".org", ".adoc", ".asciidoc", ".yaml", ".yml", ".toml", ".ini",
            ".cfg", ".conf"), text_formats.load_txt, "(read as text)"),
    Format("Markdown", (".md", ".markdown"), text_formats.load_markdown, "markdown-it-py"),
    Format("HTML", (".html", ".htm", ".xhtml"), text_formats.load_html, "selectolax"),
    Format("subtitles (with times)", (".srt", ".vtt"), text_formats.load_subtitles,
           "(ragline)"),
    Format("JSON (keys kept)", (".json",), text_formats.load_json, "json"),
    Format("XML (element names kept)", (".xml",), text_formats.load_xml, "defusedxml"),
    Format("JSONL rows as documents", (".jsonl",), tables.load_jsonl, "json"),
    Format("CSV/TSV: rows as documents, or a table", (".csv", ".tsv"), tables.load_csv, "csv"),
    Format("Excel workbook", (".xlsx", ".xlsm"), tables.load_xlsx, "openpyxl", "office"),
    Format("Excel 97 / OpenDocument spreadsheet", (".xls", ".ods"), tables.load_calamine,
           "python-calamine", "office"),
    Format("PDF (ruled tables by rows; OCR for pages without text)", (".pdf",), pdf.load_pdf,
           "pypdf; pdfplumber (tables); pypdfium2 + RapidOCR (scans)", "pdf"),
    Format("Word", (".docx",), office.load_docx, "python-docx", "docx"),
    Format("PowerPoint (slides, speaker notes)", (".pptx",), office.load_pptx, "python-pptx",
           "office"),
    Format("OpenDocument text", (".odt",), office.load_odt, "defusedxml", "office"),
    Format("RTF", (".rtf",), office.load_rtf, "striprtf", "office"),
    Format("EPUB (chapters)", (".epub",), office.load_epub, "ebooklib", "office"),
    Format("mail message", (".eml",), mail.load_eml, "email"),
    Format("mailbox", (".mbox",), mail.load_mbox, "email"),
    Format("Outlook message", (".msg",), mail.load_msg, "extract-msg", "office"),
    Format("Jupyter notebook", (".ipynb",), code.load_notebook, "json"),
    Format("source code (by definitions)", tuple(code.GRAMMARS), code.load_code,
           "tree-sitter grammars", "code"),
    Format("source code (by lines)", code.OTHER_CODE, code.load_code, "(read as text)"),
    Format("images (OCR)", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"),
           ocr.load_image, "RapidOCR (PP-OCRv4, ONNX)", "ocr"),
    Format("compressed (any type inside)", (".gz", ".bz2", ".xz", ".lzma"),
           archive.load_compressed, "gzip, bz2, lzma"),
    Format("ZIP archive (members as files)", (".zip",), archive.load_zip, "zipfile"),
    Format("tar archive (members as files; `.tar.gz` too)", (".tar", ".tgz", ".tbz2", ".txz"),
           archive.load_tar, "tarfile"),
)

LOADERS: dict[str, Loader] = {s: f.load for f in FORMATS for s in f.suffixes}
_TEXT = Format("text (no known extension)", (), text_formats.load_txt, "charset-normalizer")


def supported_suffixes() -> list[str]:
    return sorted(LOADERS)


def _format_of(name: str) -> Format | None:
    suffix = Path(name).suffix.lower()
    return next((f for f in FORMATS if suffix in f.suffixes), None)


def can_read(path: Path | str, head: bytes | None = None) -> bool:
    """Whether ragline reads this file: a known type, or (given its first bytes) text."""
    if Path(path).suffix.lower() in LOADERS:
        return True
    return head is not None and looks_like_text(head)


def unsupported(name: str) -> UnsupportedFileError:
    """The error for a file ragline has no loader for and whose bytes are not text."""
    suffix = Path(name).suffix
    return UnsupportedFileError(
        f"{name}: no loader for '{suffix or '(no extension)'}' and it is not text; "
        f"supported: {' '.join(supported_suffixes())}")


def iter_documents(blob: Blob) -> Iterator[Document]:
    """The file's documents as its loader reads them (a large table streams). Raises an
    IngestError with a one-line message for a file that cannot be read, whatever its
    library raised; a file with no documents at all is an error too."""
    fmt = _format_of(blob.name)
    if fmt is None:
        head = blob.read()[:8192] if blob.data is not None else _head(blob)
        if not looks_like_text(head):
            raise unsupported(blob.name)
        fmt = _TEXT
    n = 0
    try:
        for doc in fmt.load(blob):
            n += 1
            yield doc
    except ModelUnavailableError as e:  # the reader's extra is missing
        raise UnsupportedFileError(f"{blob.name}: {e}") from None
    except IngestError:
        raise
    except RecursionError:
        raise UnreadableFileError(f"{blob.name}: nested too deeply to parse") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # a parser's own failure on a malformed file
        log.debug("%s: loader failed", blob.name, exc_info=True)
        kind = Path(blob.name).suffix.lstrip(".").upper() or "file"
        first = (str(e).strip().split("\n", 1)[0] or "no details")[:200]
        name = type(e).__name__
        name = f"{type(e).__module__}.{name}" if name.islower() else name
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable {kind} "
                                  f"({name}: {first})") from None
    if n == 0:
        raise UnreadableFileError(f"{blob.name}: no text")


def _head(blob: Blob) -> bytes:
    with blob.open() as f:
        return f.read(8192)


def read_blob(blob: Blob, name: str | None = None) -> list[Document]:
    """All of a file's documents (a member of an archive, an attachment). `name`: what the
    errors call it when not its own name (a compressed file's inner name)."""
    try:
        return list(iter_documents(blob))
    except IngestError as e:
        if name is None:
            raise
        raise type(e)(f"{name}: {str(e).split(': ', 1)[-1]}") from None


def load_file(path: Path, data: bytes | None = None,
              options: ReadOptions | None = None) -> list[Document]:
    """Load one file into Documents; `data` may be passed when the bytes are already read."""
    if not path.is_file() and data is None:
        raise UnreadableFileError(f"{path}: cannot read (no such file)")
    if data is not None and not data and path.suffix.lower() not in LOADERS:
        raise UnreadableFileError(f"{path}: file is empty")
    blob = Blob(str(path), path=None if data is not None else path, data=data,
                options=options or ReadOptions())
    return list(iter_documents(blob))
