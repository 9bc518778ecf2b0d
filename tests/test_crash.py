"""Killing a writer at any moment leaves the last committed index usable and loses nothing."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ragline import RAG

from killer import run_killed, signal_at


def _run_and_kill(script: str, tmp_path: Path) -> int:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode


def _consistent(rag: RAG) -> None:
    n = rag.index.folder.store.counts()["passages"]
    assert rag.index.folder.dense is not None and rag.index.folder.dense.ntotal == n
    assert rag.index.folder.sparse is not None and rag.index.folder.sparse.ntotal == n


def test_kill_while_embedding_keeps_old_index(hash_rag: RAG, tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()
    (new / "spain.txt").write_text("Madrid is the capital of Spain.")
    rc = _run_and_kill(f"""
        import os, signal
        from ragline import RAG
        rag = RAG.open({str(hash_rag.index.folder.path)!r})
        def die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)
        rag.index.encoder.encode_passages = die
        rag.add([{str(new)!r}])
    """, tmp_path)
    assert rc == -signal.SIGKILL
    with RAG.open(hash_rag.index.folder.path) as rag:
        assert rag.index.folder.store.counts()["documents"] == 3
        assert rag.search("Paris", k=1)[0].passage.source.endswith("france.txt")
        _consistent(rag)


def test_kill_after_commit_before_index_files_rebuilds_on_open(hash_rag: RAG,
                                                                tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()
    (new / "spain.txt").write_text("Madrid is the capital of Spain.")
    rc = _run_and_kill(f"""
        import os, signal
        from ragline import RAG
        rag = RAG.open({str(hash_rag.index.folder.path)!r})
        rag.index.folder.persist = lambda: os.kill(os.getpid(), signal.SIGKILL)
        rag.add([{str(new)!r}])
    """, tmp_path)
    assert rc == -signal.SIGKILL
    with RAG.open(hash_rag.index.folder.path) as rag:  # the committed document is not lost
        assert rag.index.folder.store.counts()["documents"] == 4
        assert rag.search("Madrid Spain", k=1)[0].passage.source.endswith("spain.txt")
        _consistent(rag)


def test_cli_index_killed_midway_leaves_usable_index(hash_rag: RAG, tmp_path: Path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"f{i:04d}.txt").write_text(f"Document {i} talks about topic {i % 17}. " * 20)
    # killed while committing the 1,500th file: the kill lands there on every machine
    assert run_killed("commit", 1500, ["-q", "index", str(many), "--index",
                                       str(hash_rag.index.folder.path)]) == -signal.SIGKILL
    with RAG.open(hash_rag.index.folder.path) as rag:
        assert rag.search("capital of France Paris", k=1)[0].passage.source.endswith("france.txt")
        _consistent(rag)
        before = rag.index.folder.store.counts()["documents"]
    # running it again finishes the job; files committed before the kill are skipped
    with RAG.open(hash_rag.index.folder.path) as rag:
        report = rag.add([many])
        assert rag.index.folder.store.counts()["documents"] == 3 + 3000
        assert len(report.unchanged) == before - 3
        _consistent(rag)


def test_ctrl_c_exits_130_and_keeps_the_old_index(hash_rag: RAG, tmp_path: Path) -> None:
    import json

    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(40000):
            f.write(json.dumps({"id": f"r{i}", "text": f"Row {i} is about subject {i % 97}. " * 8}) + "\n")
    # Ctrl-C in the middle of embedding (its 3rd batch), inside the command, on every machine
    proc = signal_at("embed", 3, ["-q", "index", str(big), "--index",
                                  str(hash_rag.index.folder.path)], signal.SIGINT)
    err = proc.stderr
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with RAG.open(hash_rag.index.folder.path) as rag:
        assert rag.index.folder.store.counts()["documents"] == 3  # the big file was not half-added
        _consistent(rag)


def test_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    import json

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"Common words and item {i}."}) + "\n"
                            for i in range(600)))
    RAG.build(tmp_path / "i", paths=[rows], encoder="hash").close()
    # many lines of output, of which the reader takes two and leaves
    proc = subprocess.Popen(f"{sys.executable} -m ragline.cli search {tmp_path / 'i'} "
                            "'common words' -k 600 | head -n 2", shell=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert out.startswith("[1] ") and out.count("\n") == 2  # the command really ran
    assert "Traceback" not in err and "BrokenPipe" not in err
