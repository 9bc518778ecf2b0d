"""File types: OCR engines compared on rendered pages, scanned PDFs and a question only a
scan answers, PDF tables, ingestion rate per type on a mixed folder, peak memory on a large
CSV, a large workbook and a 500-page PDF, and `ragline index /usr/share/doc`.

    .venv/bin/python bench/formats.py [--only ocr,scanned,tables,mixed,memory,sharedoc]
                                      [--big-mb 200] [--xlsx-mb 200]

OCR pages are rendered here from known sentences (English: DejaVu Sans, Liberation Serif,
DejaVu Sans Mono; Chinese: WenQuanYi Micro Hei and Zen Hei; 24 and 32 px; clean, turned 2°,
speckled, both); the character error rate is the Levenshtein distance over the truth's
length, spaces ignored. Debian's tesseract runs beside RapidOCR when it is installed.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from docgen import (  # noqa: E402
    make_docx,
    make_eml,
    make_epub,
    make_page_image,
    make_pdf,
    make_pptx,
    make_scanned_pdf,
    make_xlsx,
    share_strings,
)

EN = ["The lighthouse keeper logged every passing ship.",
      "Storms in the winter of 1893 kept him awake for eleven nights.",
      "Oil for the lamp arrived by boat each month from the mainland.",
      "His daughter Mary counted 214 vessels in the spring of 1895.",
      "A new lens, ground in Paris, doubled the reach of the beam.",
      "The tower stands 38 metres above the rocks at high tide.",
      "Fog horns replaced the bell after the wreck of the Aurora.",
      "Supplies for six weeks were kept in the cellar below the stairs."]
ZH = ["长城大部分是明朝修建的。", "灯塔看守人记录了每一艘经过的船。",
      "一八九三年冬天的暴风雨持续了十一个夜晚。", "灯油每个月由船从大陆运来。",
      "他的女儿玛丽在春天数了两百一十四艘船。", "一块在巴黎磨制的新透镜使光束的射程加倍。",
      "塔高出涨潮时的礁石三十八米。", "储藏室里存放着六个星期的补给。"]
FONTS = {"DejaVu Sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "Liberation Serif": "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
         "DejaVu Sans Mono": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
         "WenQuanYi Micro Hei": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
         "WenQuanYi Zen Hei": "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"}
LANGUAGES = {"English": (EN, ["DejaVu Sans", "Liberation Serif", "DejaVu Sans Mono"]),
             "Chinese": (ZH, ["WenQuanYi Micro Hei", "WenQuanYi Zen Hei"])}
# the fonts come from Debian packages: fonts-dejavu-core fonts-liberation fonts-wqy-microhei
# fonts-wqy-zenhei; a missing one is left out (and said so)
_MISSING = [name for name, path in FONTS.items() if not Path(path).exists()]
if _MISSING:
    print(f"fonts not installed, left out: {', '.join(_MISSING)}", file=sys.stderr)
    LANGUAGES = {lang: (lines, [f for f in fonts if f not in _MISSING])
                 for lang, (lines, fonts) in LANGUAGES.items()}
CONDITIONS = {"clean": (0.0, 0.0), "turned 2°": (2.0, 0.0), "speckled 2 %": (0.0, 0.02),
              "turned and speckled": (2.0, 0.02)}
RAGLINE = str(ROOT / ".venv" / "bin" / "ragline")


def cer(got: str, truth: str) -> float:
    a, b = "".join(got.split()), "".join(truth.split())
    return Levenshtein.distance(a, b) / max(1, len(b))


def wer(got: str, truth: str) -> float:
    """Word error rate, punctuation aside: what a word search sees (glued words are errors)."""
    a, b = re.findall(r"\w+", got.lower()), re.findall(r"\w+", truth.lower())
    return Levenshtein.distance(a, b) / max(1, len(b))


def _rapidocr(img: object) -> str:
    import numpy as np

    from ragline.ingest.ocr import ocr_array

    return ocr_array(np.asarray(img.convert("RGB")))  # type: ignore[attr-defined]


def _rapidocr_glued(img: object) -> str:
    """RapidOCR as it reads, its glued English words left glued (what ragline.ingest.ocr's
    re-spacing is measured against)."""
    from unittest import mock

    import ragline.ingest.ocr as ocr

    with mock.patch.object(ocr, "respace", lambda line: line):
        return _rapidocr(img)


def _tesseract(img: object) -> str:
    """Debian's tesseract 5 with English and Chinese together: like ragline, it is not told
    the page's language."""
    with tempfile.TemporaryDirectory() as d:
        img.save(f"{d}/page.png")  # type: ignore[attr-defined]
        p = subprocess.run(["tesseract", f"{d}/page.png", "stdout", "-l", "eng+chi_sim",
                            "--psm", "3"], capture_output=True, text=True, check=True)
    return p.stdout


def _engines() -> dict[str, Callable[[object], str]]:
    engines: dict[str, Callable[[object], str]] = {"RapidOCR (ragline)": _rapidocr,
                                                   "RapidOCR, not re-spaced": _rapidocr_glued}
    if shutil.which("tesseract"):
        engines["tesseract 5 eng+chi_sim"] = _tesseract
    else:
        print("(tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-chi-sim "
              "to compare with it)")
    return engines


def _words(lang: str, w: float) -> str:
    return f"{w:.3f}" if lang == "English" else "–"  # Chinese is not written in words


def bench_ocr() -> None:
    """Every engine on the same rendered pages; then a summary per engine and language."""
    engines = _engines()
    rows: list[tuple[str, str, float, float, float]] = []  # engine, language, CER, WER, s
    print("| engine | language | font | px | condition | CER | WER | s/page |")
    print("|---|---|---|---|---|---|---|---|")
    for lang, (lines, fonts) in LANGUAGES.items():
        for font in fonts:
            for size in (24, 32):
                for cond, (angle, noise) in CONDITIONS.items():
                    img = make_page_image(lines, FONTS[font], size, angle, noise)
                    for engine, read in engines.items():
                        t = time.perf_counter()
                        text = read(img)
                        dt = time.perf_counter() - t
                        truth = " ".join(lines)
                        c, w = cer(text, truth), wer(text, truth) if lang == "English" else 0.0
                        rows.append((engine, lang, c, w, dt))
                        print(f"| {engine} | {lang} | {font} | {size} | {cond} | {c:.3f} | "
                              f"{_words(lang, w)} | {dt:.2f} |", flush=True)
    print("\n| engine | language | pages | mean CER | mean WER | pages with CER ≤ 0.02 | pages/s |")
    print("|---|---|---|---|---|---|---|")
    for engine in engines:
        for lang in LANGUAGES:
            mine = [(c, w, dt) for en, la, c, w, dt in rows if en == engine and la == lang]
            print(f"| {engine} | {lang} | {len(mine)} | {statistics.mean(c for c, _, _ in mine):.3f} "
                  f"| {_words(lang, statistics.mean(w for _, w, _ in mine))} "
                  f"| {sum(c <= 0.02 for c, _, _ in mine)} | "
                  f"{len(mine) / sum(dt for _, _, dt in mine):.2f} |")


# scanned pages: each line of each page its own (a line repeated on most pages would be taken
# for a running header and left out, as it should be)
_EN_PEOPLE = ["Mary", "Peter", "Agnes", "Oliver", "Helen", "Simon"]
_EN_PLACES = ["the harbour", "the northern cape", "Brest", "the lighthouse", "Cork", "the bay"]
_ZH_PEOPLE = ["玛丽", "彼得", "艾格尼丝", "奥利弗", "海伦", "西蒙"]
_ZH_PLACES = ["港口", "北角", "布雷斯特", "灯塔", "科克", "海湾"]


def _scan_pages(lang: str) -> list[list[str]]:
    people, places = (_EN_PEOPLE, _EN_PLACES) if lang == "English" else (_ZH_PEOPLE, _ZH_PLACES)
    pages = []
    for n in range(6):
        lines = []
        for i in range(6):
            year, who, where = 1850 + 7 * n + i, people[(n + i) % 6], places[(2 * n + i) % 6]
            ships = 11 * n + 3 * i + 4
            lines.append(f"In {year} {who} counted {ships} ships near {where}."
                         if lang == "English" else f"{year}年{who}在{where}附近数了{ships}艘船。")
        pages.append(lines)
    return pages


def bench_scanned(tmp: Path) -> None:
    """Scanned-style PDFs (page images, no text layer) through ragline's own reading, and a
    question whose answer only a scanned page holds."""
    from ragline.ingest.loaders import load_file

    print("| scanned PDF | pages | mean CER | pages/s |")
    print("|---|---|---|---|")
    for lang, (_, fonts) in LANGUAGES.items():
        if not fonts:
            continue
        pages = _scan_pages(lang)
        for cond in ("clean", "turned and speckled"):
            angle, noise = CONDITIONS[cond]
            data = make_scanned_pdf(pages, FONTS[fonts[0]], angle, noise)
            t = time.perf_counter()
            [doc] = load_file(Path(f"scan-{lang}.pdf"), data)
            dt = time.perf_counter() - t
            starts = [*doc.meta["page_starts"], len(doc.text)]
            errors = [cer(doc.text[a:b], " ".join(truth))
                      for a, b, truth in zip(starts[:-1], starts[1:], pages, strict=True)]
            print(f"| {lang}, {fonts[0]}, {cond} | {len(pages)} | "
                  f"{statistics.mean(errors):.3f} | {len(pages) / dt:.2f} |", flush=True)
    folder = tmp / "scanned"
    folder.mkdir()
    for f in (ROOT / "examples" / "docs").iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "keeper-log.pdf").write_bytes(make_scanned_pdf([EN[:4], EN[4:]],
                                                             angle=2.0, noise=0.02))
    _run(["index", str(folder), "--index", str(tmp / "scanned-idx")])
    for question in ("In which winter did storms keep the lighthouse keeper awake for eleven "
                     "nights?", "How many vessels did Mary count in the spring of 1895?"):
        dt, _, out = _run(["ask", str(tmp / "scanned-idx"), question])
        print(f"\nask: {question}  ({dt:.1f} s)\n{out.strip()}")


def _peak(cmd: list[str]) -> tuple[float, float, str]:
    """Seconds, peak MB (the child's maximum resident set) and output of a command."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t
    *err, peak = p.stderr.strip().split("\n")
    return dt, int(peak) / 1024, p.stdout + "\n".join(err)


def _run(args: list[str]) -> tuple[float, float, str]:
    """Seconds, peak MB and output of a ragline command."""
    return _peak([RAGLINE, "-q", *args])


def bench_tables(tmp: Path) -> None:
    """Ruled tables in PDFs made here (3–5 columns, 8–42 rows over one or two pages, text
    above): the
    share of rows found whole — every cell, in order, apart — in a passage that also holds
    the header row, read with pdfplumber's table finder (ragline) and as the page's running
    text (pypdf alone)."""
    import ragline.ingest.pdf as pdf_mod
    from ragline.ingest.chunk import chunk_document
    from ragline.ingest.loaders import load_file

    # 21 rows and the header fit above the page number (make_pdf draws rows 20 pt apart)
    shapes = [(3, 8), (3, 40), (4, 21), (5, 42), (4, 12), (5, 30)]
    cases = []
    for n, (cols, nrows) in enumerate(shapes):
        header = ["Ship", "Year", "Tons", "Port", "Master"][:cols]
        rows = [[f"Aurora {n}-{r}", str(1850 + r), str(37 * r % 1000), ["Brest", "Cork", "Oslo"][r % 3],
                 f"J. Hale {r}"][:cols] for r in range(nrows)]
        data = make_pdf([f"Harbour log {n}: " + " ".join(EN[:3]), " ".join(EN[3:])],
                        tables={0: [header, *rows[:21]], 1: [header, *rows[21:]] if nrows > 21
                                else []})
        cases.append((header, rows, data))

    def share(read_tables: bool) -> tuple[float, int]:
        whole = total = 0
        saved = pdf_mod._tables
        if not read_tables:
            pdf_mod._tables = lambda blob, pages: {}  # type: ignore[assignment]
        try:
            for n, (header, rows, data) in enumerate(cases):
                [doc] = load_file(Path(f"t{n}.pdf"), data)
                passages = [p.text for p in chunk_document(doc)]
                for row in rows:
                    total += 1
                    whole += any(" | ".join(header) in t and " | ".join(row) in t
                                 for t in passages)
        finally:
            pdf_mod._tables = saved
        return whole / total, total

    print("| PDF tables read | rows | rows whole under their header |")
    print("|---|---|---|")
    for label, flag in (("pdfplumber's table finder (ragline)", True),
                        ("running text only (pypdf)", False)):
        got, total = share(flag)
        print(f"| {label} | {total} | {got:.1%} |", flush=True)


def _text(i: int, n: int) -> str:
    """n sentences of file i's own (files of equal text are one document: ragline keeps
    content once, so a folder of copies would measure one file)."""
    return " ".join(f"{_EN_PEOPLE[(i + j) % 6]} logged ship number {i * 1000 + j} near "
                    f"{_EN_PLACES[(i * 7 + j) % 6]} in {1800 + (i * 31 + j) % 200}."
                    for j in range(n))


def bench_mixed(tmp: Path, per_type: int = 20) -> None:
    """Ingestion by type: `per_type` files of each, each its own text, indexed with the
    default encoder; then all of them together. A run's seconds include starting ragline and
    loading the encoder (the first row: one small text file)."""
    folder = tmp / "mixed"
    folder.mkdir()
    code = (ROOT / "src/ragline/ingest/pipeline.py").read_text()
    for i in range(per_type):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n\n" + _text(i, 60))
        (folder / f"t{i}.py").write_text(f"# module {i}\n" + code.replace("def ", f"def v{i}_"))
        (folder / f"s{i}.pptx").write_bytes(make_pptx([(f"Slide {j}", _text(i * 10 + j, 3),
                                                        f"note {i}") for j in range(10)]))
        (folder / f"b{i}.xlsx").write_bytes(make_xlsx({"Ships": [["ship", "year", "tons"]] + [
            [f"ship {i}-{j}", 1800 + j % 200, i * j] for j in range(500)]}))
        (folder / f"m{i}.eml").write_bytes(make_eml(f"Mail {i}", _text(i, 30)))
        (folder / f"e{i}.epub").write_bytes(make_epub(f"Book {i}", [
            (f"Chapter {j}", _text(i * 5 + j, 15)) for j in range(5)]))
        (folder / f"p{i}.pdf").write_bytes(make_pdf([_text(i * 5 + j, 12) for j in range(5)]))
        (folder / f"d{i}.docx").write_bytes(make_docx([_text(i * 10 + j, 6) for j in range(10)]))
        (folder / f"c{i}.txt.gz").write_bytes(gzip.compress(_text(i, 80).encode()))
        (folder / f"k{i}.ipynb").write_text(json.dumps({"cells": [
            {"cell_type": "markdown", "source": [_text(i * 5 + j, 4)]} for j in range(5)] + [
            {"cell_type": "code", "source": [f"print({i})\n"], "outputs": []}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (tmp / "one").mkdir()
    (tmp / "one" / "a.txt").write_text(_text(0, 1))
    suffixes = (".md", ".py", ".pptx", ".xlsx", ".eml", ".epub", ".pdf", ".docx", ".gz",
                ".ipynb")
    print("| type | files | s | files/s | passages | passages/s |")
    print("|---|---|---|---|---|---|")
    for suffix in ("start", *suffixes, "all"):
        one = tmp / "one" if suffix == "start" else tmp / f"only{suffix}"
        if suffix != "start":
            one.mkdir()
            for f in folder.iterdir():
                if suffix == "all" or f.suffix == suffix:
                    (one / f.name).symlink_to(f)
        files = len(list(one.iterdir()))
        dt, _, out = _run(["index", str(one), "--index", str(tmp / f"i{suffix}"),
                           "--encoder", "minilm"])
        n = json.loads(subprocess.run([RAGLINE, "info", str(tmp / f"i{suffix}"), "--json"],
                                      capture_output=True, text=True).stdout)["counts"]
        label = "one small .txt (start-up)" if suffix == "start" else suffix
        print(f"| {label} | {files} | {dt:.1f} | {files / dt:.1f} | {n['passages']} | "
              f"{n['passages'] / dt:.0f} |", flush=True)


def _big_xlsx(path: Path, mb: int) -> None:
    """A one-sheet workbook of about `mb` MB as Excel and LibreOffice write one: its text in
    a shared-string table (a distinct string a row). openpyxl writes each string inline, so
    the sheet is written row by row by it (write-only mode) and its strings moved out."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Ships")
    sheet.append(["ship", "port", "year", "tons", "cargo"])
    # about 23 bytes a row once compressed, measured on a first build of this sheet
    for i in range(mb * 2**20 // 23):
        sheet.append([f"ship {i}", "Brest", 1850 + i % 70, i % 997, "oil and rope"])
    inline = path.with_suffix(".inline.xlsx")
    book.save(inline)
    share_strings(inline, path)
    inline.unlink()


_READ_ONLY = """
import sys
from pathlib import Path
from ragline.ingest.blob import Blob
from ragline.ingest.chunk import chunk_document
from ragline.ingest.loaders import iter_documents
n = 0
for doc in iter_documents(Blob(sys.argv[1], path=Path(sys.argv[1]))):
    n += len(chunk_document(doc))
print(n)
"""


def bench_memory(tmp: Path, big_mb: int, xlsx_mb: int) -> None:
    """Reading alone (loader and chunker, the passages counted and dropped) shows whether a
    file streams; indexing adds what the index holds (vectors, BM25). The large workbook is
    read only: indexing its 9 million rows would take most of an hour on 2 cores."""
    big = tmp / "big.csv"
    with big.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ship", "port", "year", "tons", "cargo"])
        i = 0
        while f.tell() < big_mb * 2**20:
            w.writerows([f"ship {i + j}", "Brest", 1850 + (i + j) % 70, (i + j) % 997,
                         "oil and rope"] for j in range(10000))
            i += 10000
    pdf = tmp / "long.pdf"
    pdf.write_bytes(make_pdf([f"Page {n}. " + " ".join(EN * 6) for n in range(500)]))
    small, large = tmp / "book-10.xlsx", tmp / f"book-{xlsx_mb}.xlsx"
    _big_xlsx(small, 10)
    _big_xlsx(large, xlsx_mb)
    python = str(ROOT / ".venv" / "bin" / "python")
    print("| file | size | passages | read: s | read: peak | index: s | index: peak |")
    print("|---|---|---|---|---|---|---|")
    for f, index in ((pdf, True), (small, True), (big, True), (large, False)):
        rs, rpeak, out = _peak([python, "-c", _READ_ONLY, str(f)])
        cells = ["–", "–"]
        if index:
            dt, peak, _ = _run(["index", str(f), "--index", str(tmp / f"m-{f.stem}"),
                                "--encoder", "hash"])
            cells = [f"{dt:.0f}", f"{peak:.0f} MB"]
        print(f"| {f.name} | {f.stat().st_size / 2**20:.0f} MB | {int(out.split()[0]):,} | "
              f"{rs:.0f} | {rpeak:.0f} MB | {cells[0]} | {cells[1]} |", flush=True)


def bench_sharedoc(tmp: Path) -> None:
    dt, peak, out = _run(["index", "/usr/share/doc", "--index", str(tmp / "sd"),
                          "--encoder", "hash"])
    print(f"/usr/share/doc: {dt:.0f} s, peak {peak:.0f} MB")
    print("\n".join(line for line in out.split("\n") if not line.startswith("  ")))
    reasons: dict[str, int] = {}
    for line in out.split("\n"):
        if line.startswith("  ") and ": " in line:
            why = line.rsplit(": ", 1)[-1]
            key = why.split(" (")[0][:70]
            reasons[key] = reasons.get(key, 0) + 1
    for why, n in sorted(reasons.items(), key=lambda x: -x[1])[:12]:
        print(f"  {n:5d}  {why}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="ocr,scanned,tables,mixed,memory,sharedoc")
    ap.add_argument("--big-mb", type=int, default=200, help="size of the large CSV")
    ap.add_argument("--xlsx-mb", type=int, default=200, help="size of the large workbook")
    args = ap.parse_args()
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "ocr" in parts:
            bench_ocr()
        if "scanned" in parts:
            bench_scanned(tmp)
        if "tables" in parts:
            bench_tables(tmp)
        if "mixed" in parts:
            bench_mixed(tmp)
        if "memory" in parts:
            bench_memory(tmp, args.big_mb, args.xlsx_mb)
        if "sharedoc" in parts:
            bench_sharedoc(tmp)


if __name__ == "__main__":
    main()
