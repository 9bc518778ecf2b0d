import json
from pathlib import Path

import pytest

from ragline.errors import UnreadableFileError, UnsupportedFileError
from ragline.ingest.loaders import load_file

from docgen import make_docx, make_pdf


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


def test_txt_utf8_bom_and_crlf(tmp_path: Path) -> None:
    [doc] = load_file(_write(tmp_path, "a.txt", b"\xef\xbb\xbfHello\r\nworld"))
    assert doc.text == "Hello\nworld"
    assert doc.source.endswith("a.txt") and len(doc.id) == 16


def test_txt_gb18030_is_detected(tmp_path: Path) -> None:
    text = "长城是中国古代的军事防御工程，东西绵延上万里，因此又称作万里长城。" * 3
    [doc] = load_file(_write(tmp_path, "gbk.txt", text.encode("gb18030")))
    assert doc.text == text


def test_markdown_loses_markup_keeps_title(tmp_path: Path) -> None:
    md = "# My Title\n\nSome *emphasis* and a [link](http://x.org).\n\n```\ncode()\n```\n"
    [doc] = load_file(_write(tmp_path, "a.md", md))
    assert doc.title == "My Title"
    assert "Some emphasis and a link." in doc.text
    assert "*" not in doc.text and "http" not in doc.text and "code()" in doc.text


def test_html_drops_scripts_navigation_and_tags(tmp_path: Path) -> None:
    html = ("<html><head><title>T</title><script>var x=1;</script><style>p{}</style></head>"
            "<body><nav>Home | About</nav><h1>Head</h1><p>Para <b>bold</b> text.</p>"
            "<footer>(c) 2024</footer></body></html>")
    [doc] = load_file(_write(tmp_path, "a.html", html))
    assert doc.title == "T"
    assert doc.text == "Head\n\nPara bold text."


def test_pdf_pages_and_running_headers(tmp_path: Path) -> None:
    pages = ["Alpha page text about owls.", "Beta page text about cats.", "Gamma page on dogs."]
    pdf = make_pdf(pages, header="ACME Corp Confidential", title="Report")
    [doc] = load_file(_write(tmp_path, "r.pdf", pdf))
    assert doc.title == "Report"
    assert "ACME" not in doc.text  # header repeated on every page is removed
    for page in pages:
        assert page in doc.text
    assert doc.text.split("\n\n")[0] == pages[0]  # the page number line is gone too
    starts = doc.meta["page_starts"]
    assert len(starts) == 3 and doc.text[starts[1]:].startswith("Beta")


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    data = make_docx(["First paragraph.", "Second one."], title="Doc Title",
                     table=[["a", "b"], ["c", "d"]])
    [doc] = load_file(_write(tmp_path, "a.docx", data))
    assert doc.title == "Doc Title"
    assert "First paragraph." in doc.text and "a | b" in doc.text


def test_jsonl_rows_keep_ids_and_skip_bad_rows(tmp_path: Path) -> None:
    rows = [{"_id": "d1", "title": "One", "text": "first text"},
            {"_id": "d2", "text": ["sentence one.", "sentence two."]},
            {"_id": "d3", "title": "no text"}]
    body = "\n".join(json.dumps(r) for r in rows) + "\n{not json\n"
    docs = load_file(_write(tmp_path, "c.jsonl", body))
    assert [d.id for d in docs] == ["d1", "d2"]
    assert docs[1].text == "sentence one. sentence two."


def test_csv_rows(tmp_path: Path) -> None:
    docs = load_file(_write(tmp_path, "c.csv", "title,text\nA,alpha text\nB,beta text\n"))
    assert [(d.title, d.text) for d in docs] == [("A", "alpha text"), ("B", "beta text")]


@pytest.mark.parametrize("name,data,message", [
    ("empty.txt", b"", "empty"),
    ("blank.md", b"  \n\n ", "empty"),
    ("bin.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", "PDF"),
    ("broken.docx", b"PK\x03\x04 not really a zip", "DOCX"),
    ("rows.jsonl", b'{"title": "x"}\n', "no rows with text"),
])
def test_bad_files_raise_one_line_errors(tmp_path: Path, name: str, data: bytes,
                                          message: str) -> None:
    with pytest.raises(UnreadableFileError, match=message) as e:
        load_file(_write(tmp_path, name, data))
    assert "\n" not in str(e.value) and name in str(e.value)


def test_undecodable_text(tmp_path: Path) -> None:
    noise = bytes(range(128, 256)) * 8
    with pytest.raises(UnreadableFileError, match="UTF-8"):
        load_file(_write(tmp_path, "noise.txt", noise))


def test_unknown_binary_type_lists_supported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFileError, match=r"'\.xyz'.*supported: .*\.pdf"):
        load_file(_write(tmp_path, "report.xyz", b"\x00\x01\x02binary"))


def test_unknown_type_that_is_text_is_read_as_text(tmp_path: Path) -> None:
    [doc] = load_file(_write(tmp_path, "README.Debian", "Notes for Debian users.\n"))
    assert doc.text == "Notes for Debian users."
