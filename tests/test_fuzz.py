"""Bad input never ends in a traceback or loses what was indexed: mutated files of every type,
odd file names and kinds, and damaged index parts, through the real CLI (`main`, in process;
a subprocess where a hang is the failure). bench/break_it.py runs hundreds more."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ragline import RAG
from ragline.cli import main

from conftest import THREE_DOCS, write_docs
from mutants import INDEX_DAMAGE, Damage, file_mutants, odd_paths, swap_dense

# what the three fixture documents must still answer after anything below
STILL_FOUND = {"capital of France Paris": "france.txt", "Brandenburg Gate Berlin": "germany.txt",
               "故宫 北京": "china.txt"}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    assert_clean(err)
    return code, out, err


def assert_clean(err: str) -> None:
    """No traceback, no bug report; every line is an error or a log line of its own."""
    assert "Traceback" not in err and "unexpected" not in err, err
    for line in err.splitlines():
        assert line.startswith(("error: ", "ragline: ")), err


def assert_nothing_lost(index: Path) -> None:
    with RAG.open(index) as rag:
        for query, name in STILL_FOUND.items():
            assert rag.search(query, k=1, mode="bm25")[0].passage.source.endswith(name), query
        n = rag.index.folder.store.counts()["passages"]
        assert rag.index.folder.dense is not None and rag.index.folder.dense.ntotal == n
        assert rag.index.folder.sparse is not None and rag.index.folder.sparse.ntotal == n


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("template")
    docs = write_docs(base / "docs", THREE_DOCS)
    RAG.build(base / "idx", paths=[docs], encoder="hash").close()
    return base / "idx"


@pytest.fixture
def index(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "idx")
    return tmp_path / "idx"


def test_mutated_files_are_skipped_and_the_rest_indexed(index: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    mutants = file_mutants(seed=0, per_kind=2)
    for m in mutants:
        m.write(bad)
    (bad / "good.txt").write_text("The lighthouse of Alexandria was one of the seven wonders.")
    code, out, _ = run_cli(capsys, "index", str(bad), "--index", str(index))
    assert code == 0, out
    with RAG.open(index) as rag:  # read: as documents, or as a copy of one already indexed
        indexed = {Path(source).name for source in rag.index.folder.store.source_paths()}
    skipped = {line.strip().split(": ", 1)[0].rsplit("/", 1)[-1] for line in out.splitlines()
               if line.startswith("  ")}
    # every mutant was either read (a harmless mutation) or named in the summary with a reason
    assert {m.name for m in mutants} <= indexed | skipped
    assert "good.txt" in indexed and len(skipped) >= 20
    for name in ("truncated-xml.docx", "bad-deflate.docx", "zip-version.docx", "deep-xml.docx",
                 "header-only.pdf", "binary.txt", "declared-bomb.zip", "deflate-bomb.gz",
                 "escape.zip", "nested.zip", "laughs.xml", "deep.json", "garbage.gz",
                 "nocues.srt", "notnb.ipynb", "fake.rtf", "notmbox.mbox"):
        assert name in skipped and name not in indexed, name
    for name in ("deep.jsonl", "surrogate.jsonl", "nested.html", "slash-id.jsonl"):
        assert name in indexed, name  # their good parts are kept
    assert_nothing_lost(index)
    # and again: every file is now either unchanged or skipped again, nothing duplicated
    code, out, _ = run_cli(capsys, "index", str(bad), "--index", str(index))
    assert code == 0 and "indexed 0 new and 0 changed" in out


def test_odd_file_names_and_kinds_never_hang_or_crash(index: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    made = odd_paths(odd)
    # a subprocess: reading the FIFO would block forever, and a hang must fail the test
    proc = subprocess.run([sys.executable, "-m", "ragline.cli", "-q", "index", str(odd),
                           "--index", str(index)], capture_output=True, timeout=120)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert_clean(err)
    assert "pipe.txt: a named pipe (FIFO), not a regular file" in out
    assert "loop.txt: a symbolic link loop" in out
    assert "broken.md: cannot read" in out and "zero.txt: file is empty" in out
    assert "\\xff\\xfe-name.txt" not in out.split("skipped")[-1]  # indexed, not skipped
    with RAG.open(index) as rag:
        found = {h.passage.source.rsplit("/", 1)[-1]
                 for q in ("tides", "harbours", "piers", "folder named like a PDF")
                 for h in rag.search(q, k=1, mode="bm25")}
    assert found == {"\\xff\\xfe-name.txt", "new\nline.txt", "l" * 250 + ".txt", "inner.txt"}
    assert_nothing_lost(index)
    # named one by one, each odd path is one line, and the command fails only when nothing was read
    for what, path in made.items():
        proc = subprocess.run([sys.executable, "-m", "ragline.cli", "-q", "index", path,
                               "--index", str(index)], capture_output=True, timeout=120)
        assert proc.returncode in (0, 1), (what, proc.stderr)
        assert_clean(proc.stderr.decode())
        proc = subprocess.run([sys.executable, "-m", "ragline.cli", "rm", str(index), path],
                              capture_output=True, timeout=120)
        assert proc.returncode in (0, 1), (what, proc.stderr)
        assert_clean(proc.stderr.decode())
    assert_nothing_lost(index)


def _hashes(index: Path) -> dict[str, str]:
    return {str(p.relative_to(index)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(index.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("damage", INDEX_DAMAGE, ids=[d.name for d in INDEX_DAMAGE])
def test_a_damaged_index_is_repaired_or_refused_never_overwritten(
        index: Path, tmp_path: Path, damage: Damage, capsys: pytest.CaptureFixture[str]) -> None:
    damage.apply(index)
    before = _hashes(index)
    new = tmp_path / "new.txt"
    new.write_text("Madrid is the capital of Spain.")
    runs = [("search", str(index), "capital of France Paris", "-k", "1"),
            ("info", str(index)),
            ("index", str(new), "--index", str(index)),
            ("ask", str(index), "What is the capital of France?")]
    if damage.repairable:
        for argv in runs[:3]:
            code, out, err = run_cli(capsys, *argv)
            assert code == 0, (argv, err)
        assert_nothing_lost(index)
        with RAG.open(index) as rag:
            assert rag.search("Madrid Spain", k=1, mode="bm25")[0].passage.source == str(new)
        return
    for argv in runs:
        code, out, err = run_cli(capsys, *argv)
        assert code == 1, (argv, out, err)
        assert err.count("\n") == 1 and err.startswith("error: ") and str(index) in err, err
        assert any(w in err for w in ("manifest", "store.sqlite", "format")), err
    assert _hashes(index) == before  # nothing was written over what is left


def test_another_index_s_dense_file_is_detected_and_rebuilt(index: Path, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "other", {f"o{i}.txt": f"Other text {i} about rivers {i * 7}."
                                           for i in range(3)})
    RAG.build(tmp_path / "other-idx", paths=[docs], encoder="hash").close()
    swap_dense(index, tmp_path / "other-idx")
    with RAG.open(index) as rag:
        assert rag.index.folder.dense is not None
        for rowid, vecs in rag.index.folder.store.iter_vectors():
            _, ids = rag.index.folder.dense.search(vecs, 1)
            assert ids[:, 0].tolist() == rowid.tolist()  # every stored vector finds itself
    manifest = json.loads((index / "manifest.json").read_text())
    from ragline.index.manifest import matches

    assert matches(manifest["files"]["dense.faiss"], index / "dense.faiss")  # saved repaired


def test_a_missing_store_is_never_replaced_by_an_empty_one(index: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (index / "store.sqlite").unlink()
    dense = (index / "dense.faiss").read_bytes()
    one = tmp_path / "one.txt"
    one.write_text("One more file.")
    code, _, err = run_cli(capsys, "index", str(one), "--index", str(index))
    assert code == 1 and "store.sqlite is missing" in err and "backup" in err
    assert not (index / "store.sqlite").exists() and (index / "dense.faiss").read_bytes() == dense


def test_an_interrupted_creation_is_finished_by_the_next_run(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             corpus: Path) -> None:
    from ragline.index.store import Store

    idx = tmp_path / "fresh"
    idx.mkdir()
    store = Store(idx / "store.sqlite")  # what `create` leaves when killed before its manifest
    store.open(create=True)
    store.close()
    code, _, err = run_cli(capsys, "search", str(idx), "x")
    assert code == 1 and "no ragline index at" in err
    code, out, _ = run_cli(capsys, "index", str(corpus), "--index", str(idx), "--encoder", "hash")
    assert code == 0 and "3 document(s)" in out


def test_queries_that_are_not_valid_text_are_one_line_errors(index: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("search", str(index), "caf\udcff river"),
                 ("ask", str(index), "caf\udcff river?"),
                 ("search", str(index), "x" * 5000),
                 ("search", str(index), "q", "-k", "1000000000"),
                 ("rm", str(index), "caf\udcff.txt")):
        code, _, err = run_cli(capsys, *argv)
        assert code in (1, 2) and err.count("\n") == 1, (argv, err)
    assert_nothing_lost(index)


def test_an_unexpected_exception_is_one_line_without_v(monkeypatch: pytest.MonkeyPatch,
                                                       index: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from ragline.retrieve.searcher import Searcher

    def boom(*a: object, **k: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Searcher, "search_many", boom)
    assert main(["-q", "search", str(index), "Paris"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected ZeroDivisionError: a bug" in err and "-v" in err
    with pytest.raises(ZeroDivisionError):
        main(["-v", "search", str(index), "Paris"])


def test_deeply_nested_html_is_bounded(tmp_path: Path) -> None:
    from ragline.ingest.blob import Blob
    from ragline.ingest.text_formats import MAX_HTML_DEPTH, limit_depth, load_html

    html = "<div>" * 50_000 + "deep words" + "</div>" * 50_000 + "<p>after</p>"
    limited = limit_depth(html)
    assert limited.count("<div>") == MAX_HTML_DEPTH == limited.count("</div>")
    assert "deep words" in limited and "<p>after</p>" in limited
    text = load_html(Blob("deep.html", data=html.encode()))[0].text
    assert "deep words" in text and "after" in text
    normal = "<html><body><div><ul><li>a<li>b</ul><p>x<p>y</div></body></html>"
    assert limit_depth(normal) == normal  # ordinary pages are left alone
    assert limit_depth("<p>" * 5000 + "text") == "<p>" * 5000 + "text"  # implied ends: flat


def test_leftovers_of_killed_writers_are_removed_on_open(index: Path) -> None:
    (index / ".dense.faiss.abc123.tmp").write_bytes(b"half a file")
    (index / ".sparse.tmp").mkdir()
    (index / "uploads").mkdir()
    (index / "uploads" / ("0" * 64 + ".txt")).write_text("an upload killed before its commit")
    (index / "model" / ".step-000002.tmp").mkdir(parents=True)
    (index / "model" / "step-000002").mkdir()  # a checkpoint the manifest never named
    with RAG.open(index) as rag:
        assert rag.index.folder.store.counts()["documents"] == 3
    assert sorted(p.name for p in index.iterdir()) == [
        ".lock", "dense.faiss", "manifest.json", "model", "sparse", "store.sqlite", "uploads"]
    assert list((index / "uploads").iterdir()) == list((index / "model").iterdir()) == []


def test_library_notices_about_a_broken_pdf_stay_quiet(tmp_path: Path, index: Path) -> None:
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4\n1 0 obj << >> endobj\n")  # pypdf warns "EOF marker not found"
    # a process of its own: pytest's log capture would hide what reaches a real terminal
    proc = subprocess.run([sys.executable, "-m", "ragline.cli", "-q", "index", str(bad),
                           "--index", str(index)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "broken.pdf: corrupt or unreadable PDF" in proc.stdout
    assert "EOF marker" not in proc.stderr
    assert proc.stderr.startswith("error: nothing could be read") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("argv", [["search", "idx", "q", "-k", "x"], ["search", "idx", "q",
                                  "--mode", "nope"], ["reindex", "idx", "--nprobe", "0"], [],
                                  ["eval"], ["index", "a.txt"]])
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "--help" in err
