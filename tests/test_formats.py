"""Every file type in the loader registry, through one contract: a good file gives passages
that know where they lie in it (page, slide, sheet and rows, lines, cell, time, member), a
bad one is skipped with a one-line reason whatever its library raised, and the documentation's
table lists every type."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ragline.errors import IngestError, UnreadableFileError
from ragline.ingest.blob import MAX_UNPACKED_BYTES, Blob
from ragline.ingest.chunk import chunk_document
from ragline.ingest.files import IngestReport, discover, read_documents
from ragline.ingest.loaders import FORMATS, LOADERS, iter_documents, load_file
from ragline.ingest.ocr import ocr_available
from ragline.types import Passage

from docgen import (
    image_bytes,
    make_eml,
    make_epub,
    make_ods,
    make_odt,
    make_page_image,
    make_pptx,
    make_scanned_pdf,
    make_xls,
    make_xlsx,
)
from mutants import TEXT, valid_files

ROOT = Path(__file__).resolve().parents[1]

CODE = '''"""Tools."""
import sys


def parse_args(argv):
    """Read the command line."""
    return argv[1:]


class Keeper:
    def log(self, ship):
        return ship
'''

SRT = ("1\n00:00:01,000 --> 00:00:04,000\nThe keeper lit the lamp.\n\n"
       "2\n00:01:02,500 --> 00:01:05,000\nA ship passed at dawn.\n")


def _passages(path: Path) -> list[Passage]:
    return [p for d in load_file(path) for p in chunk_document(d)]


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def test_pptx_slides_with_notes_are_pages(tmp_path: Path) -> None:
    deck = make_pptx([("Lighthouse", "The lamp burns oil.", "Say the year."),
                      ("Storms", "Eleven nights awake in 1893.", "")])
    ps = _passages(_write(tmp_path, "talk.pptx", deck))
    assert [(p.page, p.location, p.title) for p in ps] == [
        (1, "slide 1", "Lighthouse"), (2, "slide 2", "Storms")]
    assert "Notes: Say the year." in ps[0].text


def test_spreadsheet_passages_repeat_the_header_row(tmp_path: Path) -> None:
    rows = [["Ship", "Year", "Tons"]] + [[f"Ship {i}", 1890 + i % 9, i * 10.0] for i in range(60)]
    for name, data in [("log.xlsx", make_xlsx({"Ships": rows})), ("log.xls", make_xls(rows)),
                       ("log.ods", make_ods([[str(c) for c in r] for r in rows])),
                       ("log.csv", "\n".join(",".join(str(c) for c in r) for r in rows))]:
        ps = _passages(_write(tmp_path, name, data))
        assert len(ps) > 1, name
        for p in ps:
            assert p.text.startswith("Ship | Year | Tons\n"), (name, p.text[:40])
            assert "rows " in p.location or "row " in p.location
        assert "Ship 0 | 1890 | 0" in ps[0].text, name
        assert ps[0].location.endswith("rows 2–" + ps[0].location.rsplit("–", 1)[-1])
    xlsx = _passages(tmp_path / "log.xlsx")
    assert xlsx[0].location.startswith("Ships · rows 2–")


def test_a_csv_with_a_text_column_stays_a_corpus(tmp_path: Path) -> None:
    docs = load_file(_write(tmp_path, "c.csv", "id,title,text\nr1,A,alpha text\n"))
    assert [(d.id, d.text) for d in docs] == [("r1", "alpha text")]


def test_code_is_cut_along_its_definitions(tmp_path: Path) -> None:
    ps = _passages(_write(tmp_path, "tool.py", CODE))
    titles = [p.title for p in ps]
    assert "tool.py · parse_args" in titles and "tool.py · Keeper" in titles
    fn = next(p for p in ps if p.title == "tool.py · parse_args")
    assert fn.location == "lines 5–7" and fn.text.startswith("def parse_args")
    js = _passages(_write(tmp_path, "app.js", "function greet(name) {\n  return name;\n}\n"
                                              "class Lamp {\n  light() {}\n}\n"))
    assert [p.title for p in js] == ["app.js · greet", "app.js · Lamp"]


def test_notebook_subtitles_json_xml_and_mail_know_their_place(tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Tides\n", "High at noon."]},
                    {"cell_type": "code", "source": "print(1)",
                     "outputs": [{"text": "OUTPUT-NOT-INDEXED"}]}]}
    ps = _passages(_write(tmp_path, "n.ipynb", json.dumps(nb)))
    assert [(p.location, p.title) for p in ps] == [("cell 1", "Tides"), ("cell 2", "Tides")]
    assert all("OUTPUT-NOT-INDEXED" not in p.text for p in ps)
    [sub] = _passages(_write(tmp_path, "talk.srt", SRT))
    assert sub.location == "00:00:01 – 00:01:05" and "ship passed" in sub.text
    [js] = _passages(_write(tmp_path, "d.json", '{"ship": {"name": "Aurora", "tons": 300}}'))
    assert "ship.name: Aurora" in js.text and "ship.tons: 300" in js.text
    [xml] = _passages(_write(tmp_path, "d.xml", '<log><ship tons="300">Aurora</ship></log>'))
    assert "ship@tons: 300" in xml.text and "ship: Aurora" in xml.text
    mail = make_eml("Storm report", TEXT, {"log.csv": b"ship,year\nAurora,1893\n"})
    docs = load_file(_write(tmp_path, "m.eml", mail))
    assert docs[0].title == "Storm report" and docs[0].meta["from"].startswith("Keeper")
    att = [p for p in chunk_document(docs[1])]
    assert att[0].location.startswith("attachment log.csv") and "Aurora | 1893" in att[0].text


def test_odt_rtf_epub_and_text_without_extension(tmp_path: Path) -> None:
    [odt] = load_file(_write(tmp_path, "a.odt", make_odt("Lamp room", [TEXT])))
    assert odt.title == "Lamp room" and "eleven nights" in odt.text
    [rtf] = load_file(_write(tmp_path, "a.rtf", r"{\rtf1\ansi Storms of {\b 1893}.\par}"))
    assert rtf.text == "Storms of 1893."
    book = make_epub("Keeper", [("Spring", "Ships came."), ("Winter", "Storms came.")])
    ps = _passages(_write(tmp_path, "b.epub", book))
    assert [(p.title, p.location) for p in ps if p.location.startswith("chapter")][-2:] == [
        ("Spring", "chapter 2"), ("Winter", "chapter 3")]
    [readme] = load_file(_write(tmp_path, "README", "Read me first.\n"))
    assert readme.text == "Read me first."
    report = IngestReport()
    _write(tmp_path, "dir/Makefile", "all:\n\techo hi\n")
    _write(tmp_path, "dir/blob", b"\x7fELF\x00\x00binary")
    found = discover([tmp_path / "dir"], report)
    assert [f.name for f in found] == ["Makefile"] and report.ignored[0].endswith("blob")


def test_compressed_files_and_zip_members(tmp_path: Path) -> None:
    csv = b"ship,year\nAurora,1893\n"
    for name, data in [("x.csv.gz", gzip.compress(csv)), ("x.csv.bz2", bz2.compress(csv)),
                       ("x.csv.xz", lzma.compress(csv))]:
        [doc] = load_file(_write(tmp_path, name, data))
        assert "Aurora | 1893" in doc.text, name
    [log] = load_file(_write(tmp_path, "changelog.gz", gzip.compress(b"Version 2: fixed.\n")))
    assert log.text == "Version 2: fixed."
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("docs/a.md", "# A\n\nAlpha lamp.")
        z.writestr("../evil.txt", "outside")
        z.writestr("inner.zip", _zip({"b.txt": "Beta lamp."}))
        z.writestr("tool.exe", b"\x00\x01")
    ps = _passages(_write(tmp_path, "pack.zip", out.getvalue()))
    assert {p.location for p in ps} == {"docs/a.md", "inner.zip · b.txt"}
    assert all("outside" not in p.text for p in ps)


def _tar(members: dict[str, str | bytes], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as t:
        for name, data in members.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo("passwd.txt")  # a link to a file outside is never followed
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
        hard = tarfile.TarInfo("hosts.txt")
        hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/hosts"
        t.addfile(hard)
    return out.getvalue()


@pytest.mark.parametrize("name, mode", [("pack.tar.gz", "w:gz"), ("pack.tgz", "w:gz"),
                                        ("pack.tar", "w"), ("pack.tar.xz", "w:xz"),
                                        ("pack.tbz2", "w:bz2")])
def test_tar_archives_are_read_as_folders(tmp_path: Path, name: str, mode: str) -> None:
    data = _tar({"docs/a.md": "# A\n\nAlpha lamp.", "../evil.txt": "outside",
                 "/etc/abs.txt": "absolute", "inner.zip": _zip({"b.txt": "Beta lamp."}),
                 "tool.exe": b"\x00\x01"}, mode)
    ps = _passages(_write(tmp_path, name, data))
    assert {p.location for p in ps} == {"docs/a.md", "inner.zip · b.txt"}
    assert not any(w in p.text for p in ps for w in ("outside", "absolute", "root:"))
    report = IngestReport()
    assert read_documents(tmp_path / name, None, report)
    # a member is named under its archive (pack.tar.gz holds pack.tar)
    why = {re.split(r"/pack\.t[a-z0-9.]*?/", where, maxsplit=1)[1]: reason
           for where, reason in report.skipped}
    assert why == {"../evil.txt": "its path leaves the archive: not read",
                   "/etc/abs.txt": "its path leaves the archive: not read",
                   "passwd.txt": "a link: not followed", "hosts.txt": "a link: not followed"}


def test_a_bad_or_huge_tar_is_skipped_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="corrupt or unreadable tar"):
        load_file(_write(tmp_path, "bad.tar", b"not a tar at all" * 100))
    truncated = _tar({"a.txt": "x" * 5000}, "w")[:1024]
    with pytest.raises(UnreadableFileError, match="tar"):
        list(load_file(_write(tmp_path, "cut.tar", truncated)))
    # sizes are declared in the headers: the bound holds before anything is inflated
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w:gz") as t:
        for i in range(3):
            info = tarfile.TarInfo(f"z{i}.txt")
            info.size = MAX_UNPACKED_BYTES // 2
            t.addfile(info, io.BytesIO(b"\x00" * info.size))
    with pytest.raises(UnreadableFileError, match="compression bomb"):
        load_file(_write(tmp_path, "bomb.tgz", bomb.getvalue()))


def _zip(members: dict[str, str | bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_bombs_are_skipped_with_the_reason_not_unpacked(tmp_path: Path) -> None:
    zeros = b"\x00" * (MAX_UNPACKED_BYTES + 1)
    gz = _write(tmp_path, "bomb.txt.gz", gzip.compress(zeros, compresslevel=1))
    del zeros
    with pytest.raises(UnreadableFileError, match="compression bomb"):
        load_file(gz)
    # a zip that declares more than the bound is refused before anything is inflated
    small = _zip({"a.txt": "x" * 1000})
    big = small.replace((1000).to_bytes(4, "little"), (2**31).to_bytes(4, "little"))
    for name in ("bomb.zip", "bomb.docx", "bomb.xlsx", "bomb.pptx", "bomb.epub", "bomb.odt"):
        with pytest.raises(UnreadableFileError, match="compression bomb|corrupt"):
            load_file(_write(tmp_path, name, big))


def test_a_large_workbook_streams_past_the_bound_but_a_dense_sheet_is_a_bomb(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Excel sheet is read row by row, so it may unpack past the bound (a 20 MB workbook's
    sheet is 230 MB of XML) when it packs like ordinary data; one a hundred times denser is
    a bomb. The bound is made small here so that the workbooks can be."""
    import ragline.ingest.blob as blob_mod

    rows = [["ship", "year"]] + [[f"Aurora {i}", 1850 + i % 70] for i in range(3000)]
    data = make_xlsx({"Ships": rows})
    sheet = zipfile.ZipFile(io.BytesIO(data)).getinfo("xl/worksheets/sheet1.xml")
    monkeypatch.setattr(blob_mod, "MAX_UNPACKED_BYTES", sheet.file_size // 2)
    docs = load_file(_write(tmp_path, "ships.xlsx", data))
    assert "Aurora 2999 | 1909" in docs[-1].text
    dense = make_xlsx({"Ships": [["note"]] + [["x" * 30000]] * 20})  # packs ~1000 times
    with pytest.raises(UnreadableFileError, match="compression bomb"):
        load_file(_write(tmp_path, "dense.xlsx", dense))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_type_skips_a_bad_file_with_one_line(tmp_path: Path, fmt: object) -> None:
    """Garbage under every suffix: an IngestError naming the file, one line, never a raw
    library exception (read_documents reports it as skipped)."""
    for suffix in fmt.suffixes:  # type: ignore[attr-defined]
        for junk in (b"\x00\x01garbage\xff" * 10, b"PK\x03\x04" + b"\x00" * 40):
            path = _write(tmp_path, f"bad{suffix}", junk)
            try:
                docs = load_file(path)
            except IngestError as e:
                assert "\n" not in str(e) and path.name in str(e), str(e)
                report = IngestReport()
                assert read_documents(path, None, report) is None
                assert report.skipped and report.skipped[0][1]
            else:  # a text-like type may read garbage as text; it must say something
                assert docs and all(d.text.strip() for d in docs)


def test_the_documentation_lists_every_type() -> None:
    page = (ROOT / "docs" / "reference" / "formats.md").read_text()
    missing = [s for s in LOADERS if f"`{s}`" not in page]
    assert not missing, f"docs/reference/formats.md lacks {missing}; run scripts/docs_reference.py"


def test_every_valid_seed_file_is_read() -> None:
    for name, data in valid_files().items():
        docs = load_file(Path(name), data)
        assert docs and all(d.text.strip() for d in docs), name


def test_scanned_pdf_without_ocr_says_how_to_read_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import ragline.ingest.pdf as pdf_mod

    path = _write(tmp_path, "scan.pdf", make_scanned_pdf([["The lamp was lit in 1893."]]))
    monkeypatch.setattr(pdf_mod, "ocr_available", lambda: False)
    with pytest.raises(UnreadableFileError, match=r"no text layer: install ragline\[ocr\]"):
        load_file(path)
    from ragline.ingest.blob import ReadOptions

    monkeypatch.undo()
    with pytest.raises(UnreadableFileError, match="OCR is off"):
        load_file(path, options=ReadOptions(ocr=False))


@pytest.mark.skipif(not ocr_available(), reason="the ocr extra is not installed")
def test_ocr_reads_a_scanned_pdf_and_an_image_in_english_and_chinese(tmp_path: Path) -> None:
    path = _write(tmp_path, "scan.pdf", make_scanned_pdf([["Some other page."],
                                                          ["The lamp was lit in 1893."]]))
    [doc] = load_file(path)
    assert doc.meta["ocr_pages"] == [1, 2]
    second = doc.text[doc.meta["page_starts"][1]:]
    assert "lamp was lit in 1893" in second and "other page" not in second
    img = make_page_image(["长城大部分是明朝修建的。"],
                          font="/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    [zh] = load_file(_write(tmp_path, "wall.png", image_bytes(img)))
    assert "明朝" in zh.text


def test_a_pdf_table_keeps_its_rows_and_columns_together(tmp_path: Path) -> None:
    from docgen import make_pdf

    rows = [["Ship", "Year", "Tons"]] + [[f"Aurora {i}", str(1890 + i), str(100 * i)]
                                         for i in range(40)]
    path = _write(tmp_path, "log.pdf", make_pdf(["Harbour log: ships by year.", "The end."],
                                                tables={0: rows}))
    ps = _passages(path)
    table = [p for p in ps if "table 1" in p.location]
    assert len(table) > 1 and all(p.page == 1 for p in table)
    assert all(p.text.startswith("Ship | Year | Tons\n") for p in table)
    assert "Aurora 3 | 1893 | 300" in table[0].text
    assert table[0].location == "page 1 · table 1 · rows 2–" + table[0].location.rsplit("–")[-1]
    assert any("Harbour log" in p.text and "table" not in p.location for p in ps)
    assert sum(p.text.count("Aurora 3 |") for p in ps) == 1  # the table is read once


@pytest.mark.model
@pytest.mark.skipif(not ocr_available(), reason="the ocr extra is not installed")
def test_a_question_only_a_scanned_page_answers_is_answered_from_it(tmp_path: Path) -> None:
    """A scanned PDF (page images, turned and speckled) beside the example documents: the
    answer comes from its OCR'd text, cited with the sentence that holds it."""
    from ragline import RAG

    docs = tmp_path / "docs"
    docs.mkdir()
    for f in (ROOT / "examples" / "docs").iterdir():
        (docs / f.name).write_bytes(f.read_bytes())
    log = ["The lighthouse keeper logged every passing ship.",
           "Storms in the winter of 1893 kept him awake for eleven nights."]
    (docs / "keeper-log.pdf").write_bytes(make_scanned_pdf([["Harbour records, volume two."],
                                                            log], angle=2.0, noise=0.02))
    with RAG.build(tmp_path / "idx", paths=[docs]) as rag:
        answer = rag.ask("In which winter did storms keep the lighthouse keeper awake for "
                         "eleven nights?")
    assert answer.answered and "1893" in answer.text, answer.text
    [cite] = answer.citations
    assert cite.passage.source.endswith("keeper-log.pdf") and "1893" in cite.quote


@pytest.mark.parametrize("line, want", [
    ("Thetowerstands38metresabovetherocksathightide.",
     "The tower stands 38 metres above the rocks at high tide."),
    ("internationalization matters", "internationalization matters"),  # a word of its own
    ("ragline is a tool", "ragline is a tool"),                        # short runs stay
    ("长城大部分是明朝修建的。", "长城大部分是明朝修建的。"),
    ("Serial QX7Z9K2M4P8W1", "Serial QX7Z9K2M4P8W1"),                   # no words inside
    ("Mary counted 214vessels in 1895", "Mary counted 214 vessels in 1895"),
    ("the 49ers and 10km, 3rd, 2ndary", "the 49ers and 10km, 3rd, 2ndary"),  # not words
])
def test_glued_english_words_from_ocr_are_split_again(line: str, want: str) -> None:
    from ragline.ingest.ocr import respace

    assert respace(line) == want


def test_a_workbooks_shared_strings_are_kept_compact_and_read_back() -> None:
    from ragline.ingest.tables import CompactStrings

    words = ["ship", "", "长城", "Zürich", "x" * 1000]
    table = CompactStrings(iter(words))
    assert len(table) == 5 and [table[i] for i in range(5)] == words
    for bad in (5, -1):
        with pytest.raises(IndexError):
            table[bad]


def test_a_workbook_written_as_excel_writes_it_reads_its_shared_strings(tmp_path: Path) -> None:
    rows = [["ship", "port", "tons"], ["Aurora", "Brest", 120], ["长城号", "Brest", 95]]
    f = tmp_path / "ships.xlsx"
    f.write_bytes(make_xlsx({"Ships": rows}, shared=True))
    with zipfile.ZipFile(f) as z:
        assert "xl/sharedStrings.xml" in z.namelist()
        assert b"inlineStr" not in z.read("xl/worksheets/sheet1.xml")
    text = "\n".join(d.text for d in iter_documents(Blob(f.name, path=f)))
    assert "Aurora" in text and "长城号" in text and "120" in text and text.count("Brest") == 2


def test_openpyxl_lets_go_of_the_rows_it_has_read(tmp_path: Path) -> None:
    from openpyxl.worksheet import _reader

    from ragline.ingest.tables import _prune_finished_rows

    rows = [["n", "word"]] + [[i, f"word {i}"] for i in range(50)]
    f = tmp_path / "rows.xlsx"
    f.write_bytes(make_xlsx({"Rows": rows}))

    def left_in_sheet_data(iterparse: Any) -> int:
        with zipfile.ZipFile(f) as z, z.open("xl/worksheets/sheet1.xml") as sheet:
            events = list(iterparse(sheet))
        assert sum(e.tag == _reader.ROW_TAG for _, e in events) == 51  # every row still seen
        return len(next(e for _, e in events if e.tag.endswith("}sheetData")))

    _prune_finished_rows()
    _prune_finished_rows()  # once is enough: it does not wrap itself
    stock = _reader.iterparse.__wrapped__
    assert not hasattr(stock, "__wrapped__")
    assert left_in_sheet_data(stock) == 51  # openpyxl's own parse keeps them all
    assert left_in_sheet_data(_reader.iterparse) == 0


def test_a_file_named_msg_that_is_no_outlook_message_says_so(tmp_path: Path) -> None:
    f = tmp_path / "notes.msg"
    f.write_text("hello, this is not Outlook")
    with pytest.raises(UnreadableFileError, match="notes.msg: not an Outlook message"):
        load_file(f)
