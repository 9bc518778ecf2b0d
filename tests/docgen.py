"""Make small PDF and DOCX files for tests and the bundled examples (no binary fixtures needed)."""

from __future__ import annotations

import io
import re
import textwrap
import zipfile
from pathlib import Path
from typing import BinaryIO


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str], header: str = "", title: str = "",
             tables: dict[int, list[list[str]]] | None = None) -> bytes:
    """A valid PDF with one text page per string (Helvetica, Latin-1), an optional running
    header on every page and a page number at the bottom of each; `tables`: a ruled table
    (rows of cells) drawn below the text of a page (by index)."""
    objects: list[bytes] = []

    def add(body: str | bytes) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("")  # filled in below
    pages_id = add("")
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for n, text in enumerate(pages, 1):
        lines = [header] if header else []
        lines += [""] + [ln for para in text.split("\n") for ln in textwrap.wrap(para, 80) or [""]]
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 760 Td"]
        ops += [f"({_esc(ln)}) Tj T*" for ln in lines]
        ops += ["ET", "BT", "/F1 9 Tf", "300 40 Td", f"({n}) Tj", "ET"]
        for r, row in enumerate((tables or {}).get(n - 1, [])):
            y = 500 - r * 20
            w = min(140, 468 // len(row))  # the table fits between the page's margins
            for c, cell in enumerate(row):
                x = 72 + c * w
                ops += [f"{x} {y} {w} 20 re S", "BT", "/F1 10 Tf", f"{x + 4} {y + 6} Td",
                        f"({_esc(cell)}) Tj", "ET"]
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 612 792] "
                        f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"))
    objects[pages_id - 1] = (f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] "
                             f"/Count {len(kids)} >>").encode()
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
    info = add(f"<< /Title ({_esc(title)}) >>") if title else None

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    trailer = f"<< /Size {len(objects) + 1} /Root {catalog} 0 R"
    trailer += f" /Info {info} 0 R >>" if info else " >>"
    out.write(f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_docx(paragraphs: list[str], title: str = "", table: list[list[str]] | None = None) -> bytes:
    import docx

    d = docx.Document()
    if title:
        d.add_heading(title, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    if table:
        t = d.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                t.cell(r, c).text = cell
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


# ---------------------------------------------------------------- the other types


def make_pptx(slides: list[tuple[str, str, str]]) -> bytes:
    """(title, body, speaker notes) per slide."""
    from pptx import Presentation

    deck = Presentation()
    for title, body, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, list[list[object]]], shared: bool = False) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    if not shared:
        return out.getvalue()
    excel = io.BytesIO()
    share_strings(out, excel)
    return excel.getvalue()


def share_strings(src: Path | BinaryIO, dst: Path | BinaryIO) -> None:
    """Rewrite an openpyxl workbook as Excel and LibreOffice write one: its text cells
    pointing into a shared-string table (openpyxl writes each inline). Streams."""
    cell = re.compile(rb'<c r="([A-Z]+[0-9]+)" t="inlineStr"><is><t>([^<]*)</t></is></c>')
    strings: dict[bytes, int] = {}

    def shared(m: re.Match[bytes]) -> bytes:
        n = strings.setdefault(m[2], len(strings))
        return b'<c r="%s" t="s"><v>%d</v></c>' % (m[1], n)

    ns = "http://schemas.openxmlformats.org"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if not item.filename.startswith("xl/worksheets/"):
                continue
            with zin.open(item) as fin, zout.open(item.filename, "w", force_zip64=True) as out:
                rest = b""
                while chunk := fin.read(1 << 22):
                    data = rest + chunk
                    cut = data.rfind(b"</row>") + len(b"</row>") if b"</row>" in data else 0
                    out.write(cell.sub(shared, data[:cut]))
                    rest = data[cut:]
                out.write(cell.sub(shared, rest))
        for item in zin.infolist():
            if item.filename.startswith("xl/worksheets/"):
                continue
            data = zin.read(item)
            if item.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", (
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
                    b"</Types>"))
            elif item.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", (
                    f'<Relationship Type="{ns}/officeDocument/2006/relationships/sharedStrings"'
                    ' Target="sharedStrings.xml" Id="rIdShared"/></Relationships>').encode())
            zout.writestr(item, data)
        with zout.open("xl/sharedStrings.xml", "w", force_zip64=True) as out:
            out.write(f'<sst xmlns="{ns}/spreadsheetml/2006/main" count="{len(strings)}" '
                      f'uniqueCount="{len(strings)}">'.encode())
            for text in strings:
                out.write(b"<si><t>%s</t></si>" % text)
            out.write(b"</sst>")


def make_xls(rows: list[list[object]], sheet: str = "Sheet1") -> bytes:
    import xlwt

    book = xlwt.Workbook()
    ws = book.add_sheet(sheet)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _odf(mimetype: str, body: str) -> bytes:
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               f'office:version="1.2"><office:body>{body}</office:body></office:document-content>')
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
                '<manifest:file-entry manifest:full-path="content.xml" '
                'manifest:media-type="text/xml"/></manifest:manifest>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", content)
    return out.getvalue()


def make_odt(heading: str, paragraphs: list[str]) -> bytes:
    body = f'<text:h text:outline-level="1">{_esc(heading)}</text:h>' + "".join(
        f"<text:p>{_esc(p)}</text:p>" for p in paragraphs)
    return _odf("application/vnd.oasis.opendocument.text", f"<office:text>{body}</office:text>")


def make_ods(rows: list[list[str]], sheet: str = "Sheet1") -> bytes:
    cells = "".join("<table:table-row>" + "".join(
        f'<table:table-cell office:value-type="string"><text:p>{_esc(c)}</text:p>'
        "</table:table-cell>" for c in row) + "</table:table-row>" for row in rows)
    return _odf("application/vnd.oasis.opendocument.spreadsheet",
                f'<office:spreadsheet><table:table table:name="{sheet}">{cells}</table:table>'
                "</office:spreadsheet>")


def make_epub(title: str, chapters: list[tuple[str, str]]) -> bytes:
    import tempfile

    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("ragline-test")
    book.set_title(title)
    book.set_language("en")
    items = []
    for i, (heading, text) in enumerate(chapters, 1):
        c = epub.EpubHtml(title=heading, file_name=f"c{i}.xhtml", lang="en")
        c.content = f"<html><body><h1>{_esc(heading)}</h1><p>{_esc(text)}</p></body></html>"
        book.add_item(c)
        items.append(c)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/book.epub"
        epub.write_epub(path, book)
        with open(path, "rb") as f:
            return f.read()


def make_eml(subject: str, body: str, attachments: dict[str, bytes] | None = None) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Keeper <keeper@example.org>"
    msg["To"] = "log@example.org"
    msg["Date"] = "Mon, 02 Jan 1893 10:00:00 +0000"
    msg.set_content(body)
    for name, data in (attachments or {}).items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return bytes(msg)


def make_page_image(lines: list[str], font: str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    size: int = 32, angle: float = 0.0, noise: float = 0.0,
                    seed: int = 0) -> object:
    """A PIL image of text lines as a scan shows them (optionally turned and speckled)."""
    import random

    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(font, size)
    width = max(int(face.getlength(line)) for line in lines) + 80
    img = Image.new("L", (width, int(len(lines) * size * 1.8) + 80), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((40, 40 + int(i * size * 1.8)), line, font=face, fill=0)
    if angle:
        img = img.rotate(angle, expand=True, fillcolor=255)
    if noise:
        rng = random.Random(seed)
        px = img.load()
        for _ in range(int(img.width * img.height * noise)):
            px[rng.randrange(img.width), rng.randrange(img.height)] = rng.choice((0, 255))
    return img


def image_bytes(img: object, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)  # type: ignore[attr-defined]
    return out.getvalue()


def make_scanned_pdf(pages: list[list[str]], font: str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                     angle: float = 0.0, noise: float = 0.0) -> bytes:
    """A PDF whose pages are images of text only (no text layer), as a scanner makes."""
    images = [make_page_image(lines, font, angle=angle, noise=noise, seed=n).convert("RGB")  # type: ignore[attr-defined]
              for n, lines in enumerate(pages)]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=100)
    return out.getvalue()
