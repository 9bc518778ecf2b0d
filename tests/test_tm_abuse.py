"""Translation memories tried as a hostile user would: crafted MO tables, file contents that
name other files, malformed PO syntax, entity declarations hidden past the first 64 KB or in
UTF-16, language codes that are paths, headerless tables, over-long segments on every path, a
kill between a memory's creation and its languages, and the server's edges of /v1/translate."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from fastapi.testclient import TestClient

from ragline import RAG
from ragline.cli import main
from ragline.config import IndexConfig, ServerConfig
from ragline.errors import ConfigError, UnreadableFileError
from ragline.index.index import Index
from ragline.server import create_app
from ragline.testing import ScriptedGenerator
from ragline.tm import TranslationMemory, Translator, read_pairs

from killer import count_calls, run_killed
from mutants import crafted_mo


def _mo(entries: list[tuple[bytes, bytes]], lang: bytes = b"de") -> bytes:
    """A well-formed little-endian MO file, built by hand as msgfmt lays it out."""
    entries = [(b"", b"Language: " + lang + b"\nContent-Type: text/plain; charset=UTF-8\n"),
               *entries]
    n = len(entries)
    orig, trans = 28, 28 + 8 * n
    data = 28 + 16 * n
    strings, table_o, table_t = b"", [], []
    for table, side in ((table_o, 0), (table_t, 1)):
        for e in entries:
            table.append((len(e[side]), data + len(strings)))
            strings += e[side] + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, orig, trans, 0, 0)
    return head + b"".join(struct.pack("<2I", *x) for x in table_o + table_t) + strings


def _pairs(path: Path, **kw: str) -> list[tuple[str, str]]:
    pairs, _, _ = read_pairs(path, path.read_bytes(), kw.get("source"), kw.get("target"))
    return [(p.source, p.target) for p in pairs]


# ---------------------------------------------------------------- MO


def test_a_handmade_mo_reads_like_msgfmts(tmp_path: Path) -> None:
    f = tmp_path / "de.mo"
    f.write_bytes(_mo([(b"Open", b"\xc3\x96ffnen"), (b"menu\x04File", b"Datei"),
                       (b"%d file\x00%d files", b"%d Datei\x00%d Dateien")]))
    assert sorted(_pairs(f)) == sorted([("Open", "Öffnen"), ("File", "Datei"),
                                        ("%d file", "%d Datei"), ("%d files", "%d Dateien")])


@pytest.mark.parametrize("data, why", [
    (crafted_mo(10_000, 100_000), "overlap"),
    (crafted_mo(3, 100)[:-50], "outside the file"),
    (struct.pack("<7I", 0x950412DE, 0, 1 << 30, 28, 28, 0, 0), "runs past the end"),
    (b"\x00" * 40, "magic"),
    (b"\xde\x12\x04\x95" + b"\0" * 10, "shorter than its header"),
    (struct.pack("<7I", 0x950412DE, 7 << 16, 0, 28, 28, 0, 0), "revision"),
    (_mo([(b"Open", b"\xff\xfe")]), "not UTF-8"),
])
def test_a_crafted_or_broken_mo_is_refused_before_it_is_decoded(tmp_path: Path, data: bytes,
                                                                 why: str) -> None:
    f = tmp_path / "bad.mo"
    f.write_bytes(data)
    with pytest.raises(UnreadableFileError, match=why):
        _pairs(f, target="de")


def test_importing_crafted_mo_files_stays_small(tmp_path: Path) -> None:
    """The 260 KB file that took 2.7 GB, and a 1.5 MB one that would take > 100 GB: the peak
    memory of a process that imports both stays within a fraction of a GB."""
    files = []
    for n, size in ((10_000, 100_000), (60_000, 500_000)):
        f = tmp_path / f"crafted-{n}.mo"
        f.write_bytes(crafted_mo(n, size))
        files.append(str(f))
    # VmHWM: this process's own peak (ru_maxrss would carry the forking pytest's over exec)
    code = ("import sys\nfrom ragline.cli import main\n"
            "rc = main(['-q', 'tm', 'import', sys.argv[1], *sys.argv[2:], '--from', 'en', "
            "'--to', 'de', '--encoder', 'hash'])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(rc, hwm.split()[1])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tm"), *files],
                          capture_output=True, text=True, timeout=120)
    rc, peak_kb = proc.stdout.split("\n")[-2].split()
    assert rc == "1" and "overlap" in proc.stdout  # skipped, with the reason
    assert int(peak_kb) < 600 * 1024, peak_kb  # the interpreter and its imports, no more


def test_file_contents_are_parsed_never_opened_as_a_path(tmp_path: Path) -> None:
    real = tmp_path / "real.mo"
    real.write_bytes(_mo([(b"Open", b"Offnen")]))
    mo = tmp_path / "naming.mo"
    mo.write_bytes(str(real).encode())
    with pytest.raises(UnreadableFileError, match="MO"):
        _pairs(mo, target="de")
    secret = tmp_path / "secret.po"
    secret.write_text('msgid "Secret"\nmsgstr "Geheim"\n', encoding="utf-8")
    po = tmp_path / "naming.po"
    po.write_text(str(secret), encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="malformed PO file at line 1"):
        _pairs(po, target="de")


# ---------------------------------------------------------------- PO


@pytest.mark.parametrize("line", ['msgid "Open', "msgid Open", 'msgid "a" "b"',
                                  'msgstr "x\\"', 'msgfoo "x"', '"dangling'])
def test_malformed_po_is_skipped_with_its_line(tmp_path: Path, line: str) -> None:
    po = tmp_path / "bad.po"
    po.write_text(f'msgid ""\nmsgstr "Language: de\\n"\n\n{line}\nmsgstr "Offen"\n',
                  encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="line 4"):
        _pairs(po)


def test_a_po_keeps_escapes_comments_and_continuations(tmp_path: Path) -> None:
    po = tmp_path / "ok.po"
    po.write_text('# a comment\n#: src/x.c:1\nmsgid ""\nmsgstr "Language: de\\n"\n\n'
                  'msgid "Say \\"hi\\""\nmsgstr ""\n"Sag "\n"\\"hallo\\""\n\n'
                  '#~ msgid "Old"\n#~ msgstr "Alt"\n', encoding="utf-8")
    assert _pairs(po) == [('Say "hi"', 'Sag "hallo"')]


# ---------------------------------------------------------------- verbatim segments


def test_an_exact_match_returns_the_segment_verbatim(tmp_path: Path) -> None:
    po = polib.POFile()
    po.metadata = {"Language": "de", "Content-Type": "text/plain; charset=UTF-8"}
    po.append(polib.POEntry(msgid="  Indented: %s\n", msgstr="  Eingerückt: %s\n"))
    po.save(str(tmp_path / "de.po"))
    with TranslationMemory.open_or_create(tmp_path / "tm", files=[tmp_path / "de.po"],
                                          config=IndexConfig(encoder="hash")) as tm:
        tm.add([tmp_path / "de.po"])
        gen = ScriptedGenerator("never")
        t = Translator(tm, gen).translate("  Indented: %s\n", k=3)
        assert t.exact and t.translation == "  Eingerückt: %s\n" and not gen.prompts
        loose = Translator(tm, gen).translate("Indented: %s", k=3)  # whitespace aside
        assert loose.exact and loose.translation == "  Eingerückt: %s\n"


# ---------------------------------------------------------------- languages


@pytest.mark.parametrize("code", ["../../etc", "x" * 1_000_000, "e n", "en/../de", "123"])
def test_a_language_code_from_a_file_must_be_a_bcp47_tag(tmp_path: Path, code: str) -> None:
    f = tmp_path / "bad.tmx"
    f.write_text('<tmx version="1.4"><header srclang="en"/><body><tu>'
                 '<tuv xml:lang="en"><seg>Open</seg></tuv>'
                 f'<tuv xml:lang="{code}"><seg>Offen</seg></tuv></tu></body></tmx>',
                 encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="not a language code") as e:
        _pairs(f)
    assert len(str(e.value)) < 300 + len(str(f))  # a long value is cut, never echoed whole


@pytest.mark.parametrize("code", ["", " ", "../x", "en de"])
def test_a_language_given_must_be_a_tag(tmp_path: Path, code: str) -> None:
    tsv = tmp_path / "g.tsv"
    tsv.write_text("Open\tOffen\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a language code"):
        TranslationMemory.open_or_create(tmp_path / "tm", source=code, target="de",
                                         files=[tsv], config=IndexConfig(encoder="hash"))
    assert not (tmp_path / "tm").exists()


@pytest.mark.parametrize("tag", ["zh-Hans-CN", "pt_BR", "sr-Latn", "es-419", "de-CH-1901"])
def test_real_bcp47_tags_are_taken(tmp_path: Path, tag: str) -> None:
    f = tmp_path / "g.tsv"
    f.write_text(f"en\t{tag}\nOpen\tX\n", encoding="utf-8")
    assert read_pairs(f, f.read_bytes(), None, None)[2] == tag.lower().replace("_", "-")


# ---------------------------------------------------------------- tables


def test_a_headerless_table_keeps_a_first_row_that_looks_like_codes(tmp_path: Path) -> None:
    f = tmp_path / "yes.tsv"
    f.write_text("Yes\tJa\nNo\tNein\n", encoding="utf-8")
    assert _pairs(f, source="en", target="de") == [("Yes", "Ja"), ("No", "Nein")]
    with pytest.raises(UnreadableFileError, match="--from"):
        _pairs(f)  # no header, no languages given: it says how to give them


# ---------------------------------------------------------------- XML


@pytest.mark.parametrize("make", [
    lambda bomb: bomb.replace("<tmx", "<!--" + "x" * 70_000 + "-->\n<tmx", 1),
    lambda bomb: bomb.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
    lambda bomb: bomb.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"'),
])
def test_entities_are_refused_by_the_parser_in_any_encoding_or_place(tmp_path: Path,
                                                                     make: object) -> None:
    bomb = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tmx [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<tmx version="1.4">'
            '<header srclang="en"/><body><tu><tuv xml:lang="en"><seg>&b;</seg></tuv>'
            '<tuv xml:lang="de"><seg>x</seg></tuv></tu></body></tmx>')
    data = make(bomb)  # type: ignore[operator]
    f = tmp_path / "bomb.tmx"
    f.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    with pytest.raises(UnreadableFileError, match="entities"):
        _pairs(f)


def test_a_plain_doctype_naming_the_tmx_dtd_is_read(tmp_path: Path) -> None:
    f = tmp_path / "ok.tmx"
    f.write_text('<?xml version="1.0"?>\n<!DOCTYPE tmx SYSTEM "tmx14.dtd">\n<tmx version="1.4">'
                 '<header srclang="en"/><body><tu><tuv xml:lang="en"><seg>Open</seg></tuv>'
                 '<tuv xml:lang="de"><seg>Offen</seg></tuv></tu></body></tmx>', encoding="utf-8")
    assert _pairs(f) == [("Open", "Offen")]


# ---------------------------------------------------------------- creation


def test_a_kill_at_the_memorys_creation_leaves_a_folder_that_becomes_one(tmp_path: Path) -> None:
    tsv = tmp_path / "g.tsv"
    tsv.write_text("en\tde\nOpen\tOffen\nClose\tSchließen\n", encoding="utf-8")
    args = ["-q", "tm", "import", str(tmp_path / "tm"), str(tsv), "--encoder", "hash"]
    target = tmp_path / "tm"
    writes = count_calls("ragline.index.manifest:atomic_write_bytes", args)
    assert writes >= 2  # the creation's, then the import's
    for nth in range(1, writes + 1):
        shutil.rmtree(target)
        rc = run_killed("manifest", nth, args)
        assert rc == -9
        if Index.exists(target):  # the manifest was written: it says it is a memory
            with TranslationMemory.open(target) as tm:
                assert (tm.source, tm.target) == ("en", "de")
        assert main(args) == 0
        with TranslationMemory.open(target) as tm:
            assert tm.index.counts()["documents"] == 2


def test_an_import_of_a_missing_file_leaves_no_folder(tmp_path: Path) -> None:
    assert main(["-q", "tm", "import", str(tmp_path / "new"), str(tmp_path / "none.tmx"),
                 "--from", "en", "--to", "de", "--encoder", "hash"]) == 2
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- translate: length


@pytest.fixture
def memory(tmp_path: Path) -> Path:
    tsv = tmp_path / "g.tsv"
    tsv.write_text("en\tde\nOpen the file\tDatei öffnen\n", encoding="utf-8")
    with TranslationMemory.open_or_create(tmp_path / "tm", files=[tsv],
                                          config=IndexConfig(encoder="hash")) as tm:
        tm.add([tsv])
    return tmp_path / "tm"


class Small(ScriptedGenerator):
    n_ctx = 64  # tokens are words: a 40-word segment with room for its translation cannot fit


@pytest.mark.parametrize("k", [0, 3])
def test_a_segment_longer_than_the_context_is_refused_at_any_k(memory: Path, k: int) -> None:
    gen = Small("x")
    with TranslationMemory.open(memory) as tm:
        with pytest.raises(ConfigError, match="too long to translate"):
            Translator(tm, gen).translate("word " * 40, k=k)
        with pytest.raises(ConfigError, match="segment 2 is too long"):  # all checked first
            Translator(tm, gen).translate_many(["Close it", "word " * 40], k=k)
        assert not gen.prompts
        assert Translator(tm, gen).translate("Open the file", k=k).translation
        assert Translator(tm, Small("x")).translate("Open the file", k=3).exact


def test_the_cli_checks_every_line_of_a_file_first(memory: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "in.txt"
    f.write_text("Open the file\n" + "word " * 5000 + "\n", encoding="utf-8")
    assert main(["translate", str(memory), "--file", str(f)]) == 2
    captured = capsys.readouterr()
    assert "line 2" in captured.err and captured.out == ""
    assert main(["translate", str(memory)]) == 2
    assert "not both" not in capsys.readouterr().err
    assert main(["translate", str(memory), "x" * 5000, "-k", "0"]) == 2
    assert "characters" in capsys.readouterr().err


# ---------------------------------------------------------------- server


def test_translate_over_http_refuses_bad_input_as_json(memory: Path) -> None:
    rag = RAG.open(memory, generator=Small("Übersetzt"))
    with TestClient(create_app(rag, ServerConfig())) as c:
        def post(body: object) -> tuple[int, dict[str, object]]:
            r = c.post("/v1/translate", json=body)
            assert r.headers["content-type"].startswith("application/json"), r.text
            return r.status_code, r.json()

        for k in (True, "3", 2.0, None, -1, 99):
            status, _ = post({"text": "Open", "k": k})
            assert status in (400, 422), k
        status, body = post({"text": "word " * 40, "k": 0})
        assert status == 400 and "too long" in str(body)
        status, body = post({"text": ["Open the file", "word " * 40]})
        assert status == 400 and "segment 2" in str(body)
        r = c.post("/v1/translate", content=b'{"text": "' + b"a" * (9 << 20) + b'"}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == 413
        assert "file" not in r.json()["error"]["message"]
        status, body = post({"text": "Open the file"})
        assert status == 200 and body["translations"][0]["exact"]  # type: ignore[index]


def test_an_empty_memory_says_to_import_not_to_index(tmp_path: Path) -> None:
    from ragline.errors import EmptyIndexError

    with TranslationMemory.open_or_create(tmp_path / "tm", source="en", target="de",
                                          config=IndexConfig(encoder="hash")) as tm:
        with pytest.raises(EmptyIndexError, match="ragline tm import") as e:
            tm.matches("Open", k=3)
        assert "ragline index" not in str(e.value)


def test_write_question_over_the_length_speaks_of_topic_and_answer(tmp_path: Path) -> None:
    from conftest import CONCAT, THREE_DOCS, write_docs

    RAG.build(tmp_path / "idx", paths=[write_docs(tmp_path / "d", THREE_DOCS)],
              encoder="hash").close()
    with RAG.open(tmp_path / "idx", config=CONCAT, generator=ScriptedGenerator("x")) as rag:
        with pytest.raises(ConfigError, match="topic and the answer together"):
            rag.answerer.prepare("t " * 1500, task="question", answer="a " * 1500)


# ---------------------------------------------------------------- fuzz


def test_every_memory_mutant_is_read_or_refused_and_loses_nothing(tmp_path: Path) -> None:
    """Each bad file is imported or skipped with a reason (IngestError), never a traceback;
    the memory keeps every pair it had, and no crafted file costs more than its size."""
    from ragline.errors import IngestError

    from mutants import good_memory_files, memory_mutants

    good = tmp_path / "good"
    good.mkdir()
    for name, data in good_memory_files().items():
        (good / name).write_bytes(data)
    with TranslationMemory.open_or_create(tmp_path / "tm", files=[good / "good.po"],
                                          config=IndexConfig(encoder="hash")) as tm:
        tm.add([good])
        before = tm.index.counts()["documents"]
        bad = tmp_path / "bad"
        bad.mkdir()
        outcomes = {"read": 0, "refused": 0}
        for m in memory_mutants(seed=5, per_kind=4):
            path = m.write(bad)
            try:
                read_pairs(path, m.data, "en", "de")
                outcomes["read"] += 1
            except IngestError:
                outcomes["refused"] += 1
            report = tm.add([path])  # through the index: skipped with the reason, or added
            assert len(report.skipped) + len(report.added) + len(report.unchanged) == 1, m.how
            path.unlink()
        assert outcomes["refused"] > 40 and outcomes["read"] > 5
        for name in good_memory_files():
            assert tm.index.documents(str((good / name).resolve())), name  # none lost
        assert tm.index.counts()["documents"] >= before
