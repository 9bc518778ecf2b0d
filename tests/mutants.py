"""Bad inputs, made at run time from a seed (no binary fixtures): mutated files of every
supported type, odd file names and kinds, and damaged index parts.

Shared by tests/test_fuzz.py (a fast subset) and bench/break_it.py (hundreds of mutants).

    for m in file_mutants(seed=0, per_kind=4): m.write(folder)
    for d in INDEX_DAMAGE: d.apply(index_folder)
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import sqlite3
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from docgen import (
    make_docx,
    make_eml,
    make_epub,
    make_ods,
    make_odt,
    make_pdf,
    make_pptx,
    make_xls,
    make_xlsx,
)

TEXT = ("The lighthouse keeper logged every passing ship in a leather book. "
        "Storms in the winter of 1893 kept him awake for eleven nights.")


def valid_files() -> dict[str, bytes]:
    """One well-formed file per supported type, all about the same made-up lighthouse."""
    return {
        "seed.txt": TEXT.encode(),
        "seed.md": f"# Lighthouse\n\n{TEXT}\n\n- one\n- two\n".encode(),
        "seed.html": f"<html><head><title>Lighthouse</title></head><body><p>{TEXT}</p>"
                     "<script>var x = 1;</script></body></html>".encode(),
        "seed.pdf": make_pdf([TEXT, TEXT.upper()], title="Lighthouse"),
        "seed.docx": make_docx([TEXT, "A second paragraph."], title="Lighthouse",
                               table=[["year", "ships"], ["1893", "212"]]),
        "seed.jsonl": "".join(json.dumps({"id": f"r{i}", "title": "Lighthouse", "text": TEXT})
                              + "\n" for i in range(3)).encode(),
        "seed.csv": f'id,title,text\nr1,Lighthouse,"{TEXT}"\nr2,Keeper,"{TEXT}"\n'.encode(),
        **other_files(),
    }


def other_files() -> dict[str, bytes]:
    """The types beyond text, pages and rows: Office, e-books, mail, notebooks, code,
    subtitles, data files and archives (images are left out: OCR is slow for a fuzz run)."""
    rows = [["year", "ships"], ["1893", "212"], ["1894", "198"]]
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Lighthouse\n", TEXT]},
                    {"cell_type": "code", "source": "ships = 212", "outputs": []}]}
    return {
        "seed.pptx": make_pptx([("Lighthouse", TEXT, "speaker notes"), ("Ships", "212", "")]),
        "seed.xlsx": make_xlsx({"Log": rows}),
        "seed.xls": make_xls(rows),
        "seed.ods": make_ods(rows),
        "seed.odt": make_odt("Lighthouse", [TEXT]),
        "seed.epub": make_epub("Lighthouse", [("Winter", TEXT)]),
        "seed.eml": make_eml("Lighthouse", TEXT, {"ships.csv": b"year,ships\n1893,212\n"}),
        "seed.mbox": b"From keeper Mon Jan  2 10:00:00 1893\n" + make_eml("Log", TEXT),
        "seed.ipynb": json.dumps(nb).encode(),
        "seed.py": f'def keeper():\n    """{TEXT}"""\n    return 1893\n'.encode(),
        "seed.srt": f"1\n00:00:01,000 --> 00:00:04,000\n{TEXT}\n".encode(),
        "seed.json": json.dumps({"lighthouse": {"log": TEXT, "ships": [212, 198]}}).encode(),
        "seed.xml": f"<log><entry year='1893'>{TEXT}</entry></log>".encode(),
        "seed.rtf": ("{\\rtf1\\ansi " + TEXT + "\\par}").encode(),
        "seed.gz": gzip.compress(TEXT.encode()),
        "seed.zip": _zip_of({"a.md": f"# A\n\n{TEXT}".encode(), "b.csv": b"year,ships\n1893,2\n"}),
        "seed.tgz": _tar_of({"a.md": f"# A\n\n{TEXT}".encode(), "b.txt": TEXT.encode()}),
    }


def archive_mutants() -> Iterator[Mutant]:
    """Archives and XML made to hurt: bombs, paths that leave the archive, nesting past the
    bound, entity expansion."""
    big = _zip_of({"a.txt": b"x" * 1000})
    yield Mutant("declared-bomb.zip", big.replace((1000).to_bytes(4, "little"),
                                                  (2**31).to_bytes(4, "little")), "zip: 2 GB declared")
    yield Mutant("deflate-bomb.gz", gzip.compress(b"\0" * (300 * 2**20), compresslevel=9),
                 "gz: 300 MB of zeros")
    yield Mutant("escape.zip", _zip_of({"../../etc/evil.txt": TEXT.encode(),
                                        "/abs.txt": TEXT.encode()}), "zip: paths leave it")
    nested = TEXT.encode()
    for depth in range(6):
        nested = _zip_of({f"d{depth}.zip" if depth else "deep.txt": nested})
    yield Mutant("nested.zip", nested, "zip: six archives deep")
    yield Mutant("escape.tgz", _tar_of({"../../etc/evil.txt": TEXT.encode(),
                                        "/abs.txt": TEXT.encode()}), "tar: paths leave it")
    yield Mutant("links.tar", _tar_of({}, links={"passwd.txt": "/etc/passwd",
                                                 "up.txt": "../../secret.txt"}, mode="w"),
                 "tar: links out of it")
    yield Mutant("laughs.xml", (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">'
                                b'<!ENTITY b "&a;&a;&a;&a;">]><l>&b;</l>'), "xml: entities")
    yield Mutant("deep.json", b"[" * 100_000 + b"]" * 100_000, "json: nested 100k deep")
    yield Mutant("garbage.gz", b"\x1f\x8b\x08\x00garbage", "gz: bad stream")
    yield Mutant("nocues.srt", b"just words, no times", "srt: no cues")
    yield Mutant("notnb.ipynb", b'{"cells": 5}', "ipynb: cells not a list")
    yield Mutant("fake.rtf", b"plain words", "rtf: no header")
    yield Mutant("notmbox.mbox", b"Subject: x\n\nbody", "mbox: no From line")


@dataclass(frozen=True)
class Mutant:
    name: str          # the file name it is written under (its suffix picks the loader)
    data: bytes
    how: str           # what was done to it, for reports

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        path.write_bytes(self.data)
        return path


# ---------------------------------------------------------------- byte-level mutations


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    n = rng.randrange(1, max(2, len(data)))
    return data[:n], f"truncated to {n} bytes"


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    flips = rng.randrange(1, 16)
    for _ in range(flips):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b), f"{flips} random bytes"


def _splice(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return data[:at] + junk + data[at:], f"{len(junk)} bytes inserted at {at}"


def _zero(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    n = rng.randrange(1, 256)
    return data[:at] + b"\x00" * n + data[at + n:], f"{n} zero bytes at {at}"


def _duplicate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    a, b = sorted(rng.randrange(len(data)) for _ in range(2))
    return data[:b] + data[a:b] + data[b:], f"bytes {a}:{b} repeated"


BYTE_MUTATIONS: list[Callable[[bytes, random.Random], tuple[bytes, str]]] = [
    _truncate, _flip, _splice, _zero, _duplicate]


# ---------------------------------------------------------------- structure-aware mutations


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def _tar_of(members: dict[str, bytes], links: dict[str, str] | None = None,
            mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for n, d in members.items():
            info = tarfile.TarInfo(n)
            info.size = len(d)
            t.addfile(info, io.BytesIO(d))
        for n, target in (links or {}).items():
            info = tarfile.TarInfo(n)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buf.getvalue()


def docx_mutants(docx: bytes, rng: random.Random) -> Iterator[Mutant]:
    members = _zip_members(docx)
    xml = members["word/document.xml"]
    cut = rng.randrange(len(xml) // 4, len(xml))
    yield Mutant("truncated-xml.docx", _zip_of({**members, "word/document.xml": xml[:cut]}),
                 "document.xml truncated")
    yield Mutant("no-body.docx", _zip_of({k: v for k, v in members.items()
                                          if k != "word/document.xml"}), "document.xml missing")
    yield Mutant("bad-xml.docx", _zip_of({**members, "word/document.xml": b"<w:document>&bogus;"}),
                 "document.xml not XML")
    yield Mutant("no-types.docx", _zip_of({k: v for k, v in members.items()
                                           if k != "[Content_Types].xml"}), "no content types")
    yield Mutant("deep-xml.docx", _zip_of({**members, "word/document.xml":
                                           b"<a>" * 100_000 + b"</a>" * 100_000}),
                 "document.xml nested 100,000 deep")
    # a member's compressed bytes damaged: zlib errors or a CRC mismatch on reading
    raw = bytearray(docx)
    z = zipfile.ZipFile(io.BytesIO(docx))
    info = z.getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start, start + min(info.compress_size, 64), 3):
        raw[i] ^= 0x5A
    yield Mutant("bad-deflate.docx", bytes(raw), "document.xml's deflate stream damaged")
    # "version needed to extract" set past what zipfile supports → NotImplementedError
    raw = bytearray(docx)
    raw[info.header_offset + 4:info.header_offset + 6] = (99).to_bytes(2, "little")
    cd = docx.rfind(b"PK\x01\x02" + docx[4:4])  # last central directory entry is enough
    if cd > 0:
        raw[cd + 6:cd + 8] = (99).to_bytes(2, "little")
    yield Mutant("zip-version.docx", bytes(raw), "zip version 9.9 needed")
    yield Mutant("not-a-zip.docx", b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200)),
                 "zip signature, then noise")
    yield Mutant("bzip2.docx", _zip_of(members, zipfile.ZIP_BZIP2), "members bzip2-compressed")


def pdf_mutants(pdf: bytes, rng: random.Random) -> Iterator[Mutant]:
    yield Mutant("no-eof.pdf", pdf.replace(b"%%EOF", b""), "no %%EOF marker")
    yield Mutant("bad-xref.pdf", pdf.replace(b"xref", b"xxxx"), "xref table renamed")
    yield Mutant("bad-startxref.pdf", pdf.replace(b"startxref\n", b"startxref\n99999999"),
                 "startxref points past the end")
    yield Mutant("header-only.pdf", b"%PDF-1.7\n", "header only")
    yield Mutant("loop.pdf", pdf.replace(b"/Parent 2 0 R", b"/Parent 5 0 R"), "page tree loop")
    yield Mutant("huge-length.pdf", pdf.replace(b"/Length ", b"/Length 9999999", 1),
                 "stream length past the end")
    yield Mutant("encrypted.pdf", pdf.replace(b"trailer\n<<", b"trailer\n<< /Encrypt 1 0 R"),
                 "claims encryption")
    yield Mutant("text-only.pdf", TEXT.encode(), "plain text named .pdf")


def html_mutants(rng: random.Random) -> Iterator[Mutant]:
    yield Mutant("nested.html", b"<div>" * 20_000 + b"deep text" + b"</div>" * 20_000,
                 "20,000 nested divs")
    yield Mutant("unclosed.html", b"<html><body>" + b"<p><b><i>open " * 2000, "2,000 unclosed tags")
    yield Mutant("script-only.html", b"<script>" + b"x" * 5000 + b"</script>", "script only")
    yield Mutant("attr.html", b'<p title="' + b"a" * 500_000 + b'">hi there</p>',
                 "a 500 KB attribute")
    yield Mutant("nul.html", b"<p>text\x00with nul</p>" * 50, "NUL bytes")
    yield Mutant("comment.html", b"<!--" + b"-" * 10_000, "an unterminated comment")


def jsonl_mutants(rng: random.Random) -> Iterator[Mutant]:
    yield Mutant("deep.jsonl", b"[" * 200_000 + b"\n" + json.dumps({"text": TEXT}).encode(),
                 "a row of 200,000 '['")
    yield Mutant("surrogate.jsonl", b'{"id": "s\\udcff", "title": "\\ud800", "text": "caf\\udcff '
                 b'river and more words"}\n', "lone surrogate escapes")
    yield Mutant("types.jsonl", b'[1,2]\n"text"\nnull\n{"text": 5}\n{"text": ["a", 1, null]}\n'
                 b'{"text": {"x": 1}}\n{"id": {"a": 1}, "text": "ok row here"}\n',
                 "rows of every JSON type")
    yield Mutant("bignum.jsonl", b'{"id": 1e999, "text": "big numbers everywhere", "n": '
                 + b"9" * 5000 + b"}\n", "huge numbers")
    yield Mutant("dupe-ids.jsonl", b'{"id": "a", "text": "one"}\n{"id": "a", "text": "two"}\n',
                 "duplicate ids")
    yield Mutant("slash-id.jsonl", b'{"id": "reports/2024/q1", "text": "quarterly numbers"}\n',
                 "an id with slashes")


def csv_mutants(rng: random.Random) -> Iterator[Mutant]:
    yield Mutant("quote.csv", b'id,text\n1,"never closed\n2,ok\n', "an unclosed quote")
    yield Mutant("nul.csv", b"id,text\n1,hello\x00world\n", "a NUL byte")
    yield Mutant("field.csv", b"id,text\n1," + b"x" * 200_000 + b"\n",
                 "a field past csv's size limit")
    yield Mutant("notext.csv", b"a,b,c\n1,2,3\n", "no text column")
    yield Mutant("ragged.tsv", b"id\ttext\n1\n2\tok row\textra\textra\n", "ragged rows")


def encoding_mutants() -> Iterator[Mutant]:
    yield Mutant("utf16-nobom.txt", TEXT.encode("utf-16-le"), "UTF-16 without a BOM")
    yield Mutant("gb18030.txt", "北京是中国的首都，长城很长。".encode("gb18030") * 20, "GB18030")
    yield Mutant("latin1.txt", "café crème brûlée à la française ".encode("latin-1") * 10,
                 "Latin-1")
    yield Mutant("mixed.txt", TEXT.encode() + b"\xff\xfe\xc3\x28" + TEXT.encode(),
                 "invalid UTF-8 in the middle")
    yield Mutant("binary.txt", bytes(range(256)) * 8, "binary bytes")
    yield Mutant("bom-only.txt", b"\xef\xbb\xbf", "a BOM and nothing else")
    yield Mutant("whitespace.md", b"   \n\t\n  ", "whitespace only")
    yield Mutant("long-line.txt", b"word " * 400_000, "one 2 MB line")


def file_mutants(seed: int = 0, per_kind: int = 3) -> list[Mutant]:
    """Structure-aware mutants of every type, plus `per_kind` random byte mutants of each
    valid file. Deterministic for a seed."""
    rng = random.Random(seed)
    seeds = valid_files()
    out = [*docx_mutants(seeds["seed.docx"], rng), *pdf_mutants(seeds["seed.pdf"], rng),
           *html_mutants(rng), *jsonl_mutants(rng), *csv_mutants(rng), *encoding_mutants(),
           *archive_mutants()]
    for name, data in seeds.items():
        stem, suffix = name.split(".")
        for i in range(per_kind):
            mutate = BYTE_MUTATIONS[(i + rng.randrange(len(BYTE_MUTATIONS))) % len(BYTE_MUTATIONS)]
            bad, how = mutate(data, rng)
            out.append(Mutant(f"m{i}-{stem}.{suffix}", bad, f"{suffix}: {how}"))
    return out


# ---------------------------------------------------------------- odd names and kinds


def odd_paths(folder: Path) -> dict[str, Path]:
    """Things that are not plain, nicely named files, made inside `folder`."""
    made: dict[str, Path] = {}
    fifo = folder / "pipe.txt"
    os.mkfifo(fifo)
    made["a FIFO named .txt"] = fifo
    loop = folder / "loop.txt"
    os.symlink(loop.name, loop)
    made["a symlink loop"] = loop
    broken = folder / "broken.md"
    os.symlink("nowhere.md", broken)
    made["a broken symlink"] = broken
    d = folder / "dir.pdf"
    d.mkdir()
    (d / "inner.txt").write_text("A folder named like a PDF holds this text file.")
    made["a folder named x.pdf"] = d
    raw = os.fsencode(folder) + b"/\xff\xfe-name.txt"
    with open(raw, "wb") as f:
        f.write(b"A file whose name is not UTF-8 still holds words about tides.")
    made["a file name that is not UTF-8"] = Path(os.fsdecode(raw))
    nl = folder / "new\nline.txt"
    nl.write_text("A file name with a newline in it, and text about harbours.")
    made["a file name with a newline"] = nl
    long = folder / ("l" * 250 + ".txt")
    long.write_text("The longest file name the file system allows, and text about piers.")
    made["a 254-byte file name"] = long
    made["a zero-byte file"] = folder / "zero.txt"
    made["a zero-byte file"].write_bytes(b"")
    return made


# ---------------------------------------------------------------- damaged index parts


@dataclass(frozen=True)
class Damage:
    """A way to damage an index folder. `repairable`: ragline rebuilds what was lost from the
    store, and every passage is still found; otherwise opening must fail with exit status 1
    and leave the other files as they were."""

    name: str
    apply: Callable[[Path], None]
    repairable: bool


def _manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Edit manifest.json's dict in place."""
    def apply(idx: Path) -> None:
        m = json.loads((idx / "manifest.json").read_text())
        edit(m)
        (idx / "manifest.json").write_text(json.dumps(m))
    return apply


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda idx: (idx / name).write_bytes(data)


def _truncate_file(name: str) -> Callable[[Path], None]:
    def apply(idx: Path) -> None:
        p = idx / name
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return apply


def _in_segment(damage: Callable[..., Callable[[Path], None]], name: str,
                *args: object) -> Callable[[Path], None]:
    """`damage` applied to `name` inside the first BM25 segment the manifest lists."""
    def apply(idx: Path) -> None:
        first = json.loads((idx / "manifest.json").read_text())["sparse"]["segments"][0]
        damage(f"sparse/{first}/{name}".rstrip("/"), *args)(idx)
    return apply


def _delete(name: str) -> Callable[[Path], None]:
    def apply(idx: Path) -> None:
        p = idx / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        for side in ("-wal", "-shm"):
            Path(f"{p}{side}").unlink(missing_ok=True)
    return apply


def _drop_table(idx: Path) -> None:
    con = sqlite3.connect(idx / "store.sqlite")
    con.execute("DROP TABLE passages")
    con.commit()
    con.close()


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            m = m[p]
        m[last] = value
    return edit


def _remove_key(key: str) -> Callable[[dict], None]:
    return lambda m: m.pop(key, None) and None


INDEX_DAMAGE: list[Damage] = [
    Damage("store.sqlite deleted", _delete("store.sqlite"), False),
    Damage("store.sqlite zero bytes", _write("store.sqlite", b""), False),
    Damage("store.sqlite is noise", _write("store.sqlite", b"SQLite format 3\x00" + b"\x01" * 4000),
           False),
    Damage("store.sqlite truncated", _truncate_file("store.sqlite"), False),
    Damage("store.sqlite lost its passages table", _drop_table, False),
    Damage("manifest.json is []", _write("manifest.json", b"[]"), False),
    Damage("manifest.json is null", _write("manifest.json", b"null"), False),
    Damage("manifest.json is {format: 1}", _write("manifest.json", b'{"format": 1}'), False),
    Damage("manifest.json encoder is a string", _manifest(_set("encoder", "minilm")), False),
    Damage("manifest.json dim 999", _manifest(_set("encoder.dim", 999)), False),
    Damage("manifest.json dim is text", _manifest(_set("encoder.dim", "384")), False),
    Damage("manifest.json dense kind unknown", _manifest(_set("dense.kind", "annoy")), False),
    Damage("manifest.json dense refine 0", _manifest(_set("dense.refine", 0)), False),
    Damage("manifest.json chunking missing", _manifest(_remove_key("chunking")), False),
    Damage("manifest.json sparse k1 is text", _manifest(_set("sparse.k1", "x")), False),
    Damage("manifest.json generation is null", _manifest(_set("generation", None)), False),
    Damage("manifest.json format 99", _manifest(_set("format", 99)), False),
    Damage("manifest.json trained is a list", _manifest(_set("trained", [1])), False),
    Damage("manifest.json truncated", _truncate_file("manifest.json"), False),
    Damage("manifest.json deleted", _delete("manifest.json"), False),
    Damage("dense.faiss deleted", _delete("dense.faiss"), True),
    Damage("dense.faiss zero bytes", _write("dense.faiss", b""), True),
    Damage("dense.faiss is noise", _write("dense.faiss", os.urandom(4096)), True),
    Damage("dense.faiss truncated", _truncate_file("dense.faiss"), True),
    Damage("sparse/ deleted", _delete("sparse"), True),
    Damage("a BM25 segment's terms.json is noise", _in_segment(_write, "terms.json", b"{]"), True),
    Damage("a BM25 segment's rowids.npy truncated", _in_segment(_truncate_file, "rowids.npy"),
           True),
    Damage("a BM25 segment deleted", _in_segment(_delete, ""), True),
    Damage("an older BM25 format", _manifest(_set("sparse.kind", "bm25s")), True),
    Damage("manifest generation behind the store", _manifest(_set("generation", 0)), True),
]


def swap_dense(idx: Path, other: Path) -> None:
    """Put another index's dense.faiss (same passage count) in place of this one's."""
    shutil.copyfile(other / "dense.faiss", idx / "dense.faiss")


# ---------------------------------------------------------------- translation memories

_GOOD_PO = ('msgid ""\nmsgstr ""\n"Language: de\\n"\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
            '#: src/main.c:10\nmsgid "Open the file"\nmsgstr "Datei öffnen"\n\n'
            'msgctxt "menu"\nmsgid "Close"\nmsgstr "Schließen"\n\n'
            'msgid "%d file"\nmsgid_plural "%d files"\nmsgstr[0] "%d Datei"\nmsgstr[1] "%d Dateien"\n')
_GOOD_TMX = ('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header srclang="en"/>'
             '<body><tu><tuv xml:lang="en"><seg>Save</seg></tuv><tuv xml:lang="de"><seg>Speichern'
             '</seg></tuv></tu><tu><tuv xml:lang="en"><seg>Quit</seg></tuv><tuv xml:lang="de">'
             '<seg>Beenden</seg></tuv></tu></body></tmx>\n')
_GOOD_TSV = "en\tde\nYes\tJa\nNo\tNein\nCancel\tAbbrechen\n"


def good_memory_files() -> dict[str, bytes]:
    """One valid file of each translation-memory format (English → German)."""
    import polib

    po = polib.pofile(_GOOD_PO)
    return {"good.po": _GOOD_PO.encode(), "good.mo": po.to_binary(), "good.tmx": _GOOD_TMX.encode(),
            "good.tsv": _GOOD_TSV.encode(), "good.csv": _GOOD_TSV.replace("\t", ",").encode()}


def crafted_mo(n: int, size: int) -> bytes:
    """n entries whose msgid and msgstr all point at one `size`-byte string."""
    import struct

    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    table = struct.pack("<2I", size, 28 + 16 * n) * n
    return head + table + table + b"A" * size


def memory_mutants(seed: int = 0, per_kind: int = 5) -> list[Mutant]:
    """Bad and crafted TMX, TSV/CSV, PO and MO files: byte mutations of good ones, and the
    attacks of issue 26 (crafted MO tables, contents naming other files, entity declarations
    past 64 KB or in UTF-16, language codes that are paths, malformed PO lines)."""
    rng = random.Random(seed)
    good = good_memory_files()
    out: list[Mutant] = []
    byte_ops = (_truncate, _flip, _splice, _zero, _duplicate)
    for name, data in good.items():
        for i in range(per_kind):
            mutated, how = rng.choice(byte_ops)(data, rng)
            out.append(Mutant(f"m{i}-{name}", mutated, f"{name}: {how}"))
    for n, size in ((10_000, 100_000), (1000, 1000), (3, 10**6), (1, 0)):
        out.append(Mutant(f"crafted-{n}.mo", crafted_mo(n, size), f"MO: {n} entries on one string"))
    out.append(Mutant("past-end.mo", crafted_mo(5, 100)[:-60], "MO: strings past the end"))
    out.append(Mutant("huge-count.mo", crafted_mo(1, 4)[:8] + (1 << 31).to_bytes(4, "little")
                      + crafted_mo(1, 4)[12:], "MO: a string count of 2^31"))
    for suffix in ("mo", "po", "tmx", "tsv"):
        out.append(Mutant(f"path.{suffix}", b"/etc/passwd", f"{suffix}: its content a path"))
        out.append(Mutant(f"empty.{suffix}", b"", f"{suffix}: empty"))
        out.append(Mutant(f"binary.{suffix}", bytes(range(256)) * 4, f"{suffix}: binary"))
    lines = _GOOD_PO.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(("msgid", "msgstr", '"')):
            for how, bad in (("no closing quote", line.rstrip('"')),
                             ("unquoted", line.replace('"', "")), ("junk after", line + " x")):
                mutated = "\n".join(lines[:i] + [bad] + lines[i + 1:])
                out.append(Mutant(f"po-{i}-{how[:2]}.po", mutated.encode(), f"PO line {i + 1}: {how}"))
    bomb = ('<!DOCTYPE tmx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>')
    xxe = '<!DOCTYPE tmx [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    for what, decl in (("bomb", bomb), ("xxe", xxe)):
        body = _GOOD_TMX.replace("<seg>Save</seg>", "<seg>&b;&x;</seg>")
        head, rest = body.split("\n", 1)
        out.append(Mutant(f"{what}.tmx", f"{head}\n{decl}\n{rest}".encode(), f"TMX: {what}"))
        out.append(Mutant(f"{what}-late.tmx", f"{head}\n<!--{'x' * 70_000}-->\n{decl}\n{rest}"
                          .encode(), f"TMX: {what} after 70 KB"))
        u16 = f"{head}\n{decl}\n{rest}".replace('encoding="UTF-8"', 'encoding="UTF-16"')
        out.append(Mutant(f"{what}-utf16.tmx", u16.encode("utf-16"), f"TMX: {what} in UTF-16"))
    for lang in ("../../etc", "x" * 100_000, "", " ", "en de", "<", "*all*"):
        out.append(Mutant(f"lang-{len(out)}.tmx", _GOOD_TMX.replace('xml:lang="de"', f'xml:lang="{lang}"')
                          .encode(), f"TMX: xml:lang {lang[:12]!r}"))
    for how, text in (("header of codes that is a pair", "Yes\tJa\nNo\tNein\n"),
                      ("a short row", "en\tde\nYes\tJa\nlonely\nNo\tNein\n"),
                      ("an unclosed quote", 'en\tde\n"Yes\tJa\nNo\tNein\n'),
                      ("10,000 columns", "en\tde\n" + "\t".join(["x"] * 10_000) + "\n"),
                      ("a 1 MB cell", "en\tde\n" + "y" * 2**20 + "\tJa\n"),
                      ("header languages that are paths", "../a\t../b\nYes\tJa\n")):
        out.append(Mutant(f"t-{len(out)}.tsv", text.encode(), f"TSV: {how}"))
    return out
