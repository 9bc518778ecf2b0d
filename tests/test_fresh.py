"""A long-lived reader (the server, a `RAG` object kept open) sees what another process
commits to the same index: the next search catches up with the store's generation, and a
write of the reader's own process keeps what the other wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragline import RAG
from ragline.config import ServerConfig
from ragline.server import create_app
from ragline.testing import ScriptedGenerator
from ragline.tm import TranslationMemory

from conftest import CONCAT, THREE_DOCS, write_docs

NEW = "The okapi is a giraffid mammal of the Ituri rainforest in Congo."


def ragline(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (what a user's shell beside the server is)."""
    proc = subprocess.run([sys.executable, "-m", "ragline.cli", "-q", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def index(tmp_path: Path) -> Path:
    RAG.build(tmp_path / "idx", paths=[write_docs(tmp_path / "docs", THREE_DOCS)],
              encoder="hash").close()
    return tmp_path / "idx"


def found(client: TestClient, query: str, mode: str) -> list[str]:
    r = client.get("/v1/search", params={"q": query, "k": 5, "mode": mode})
    assert r.status_code == 200, r.text
    return [p["text"] for p in r.json()["passages"]]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_the_server_sees_another_process_add_and_remove(index: Path, tmp_path: Path,
                                                        mode: str) -> None:
    more = tmp_path / "more.txt"
    more.write_text(NEW, encoding="utf-8")
    rag = RAG.open(index, config=CONCAT, generator=ScriptedGenerator("okapi [1]"))
    with TestClient(create_app(rag, ServerConfig())) as c:
        assert not any("okapi" in t for t in found(c, "okapi rainforest", mode))
        ragline("index", str(more), "--index", str(index))
        assert any("okapi" in t for t in found(c, "okapi rainforest", mode))
        ask = c.post("/v1/ask", json={"question": "Where does the okapi live?"}).json()
        assert any("okapi" in p["text"] for p in ask["passages"])
        ragline("rm", str(index), str(more))
        assert not any("okapi" in t for t in found(c, "okapi rainforest", mode))


def test_an_open_rag_sees_another_process_and_its_own_write_keeps_it(index: Path,
                                                                     tmp_path: Path) -> None:
    more, mine = tmp_path / "more.txt", tmp_path / "mine.txt"
    more.write_text(NEW, encoding="utf-8")
    mine.write_text("The quokka is a small wallaby of Rottnest Island.", encoding="utf-8")
    with RAG.open(index, config=CONCAT, generator=ScriptedGenerator("x")) as rag:
        rag.search("okapi", k=3)  # loaded, and looked once
        ragline("index", str(more), "--index", str(index))
        rag.add([mine])  # this process's write, after the other's
        texts = [h.passage.text for h in rag.search("okapi rainforest", k=3, mode="bm25")]
        assert any("okapi" in t for t in texts)
        assert rag.index.counts()["documents"] == 5
    with RAG.open(index, config=CONCAT, generator=ScriptedGenerator("x")) as rag:  # as saved
        for q in ("okapi rainforest", "quokka wallaby"):
            assert any(q.split()[0] in h.passage.text
                       for h in rag.search(q, k=3, mode="dense"))
        assert len({h.passage.id for h in rag.search("okapi", k=10, mode="dense")}) == \
            len(rag.search("okapi", k=10, mode="dense"))  # nothing added twice


def test_the_server_translates_with_what_another_process_imported(tmp_path: Path) -> None:
    first, later = tmp_path / "first.tsv", tmp_path / "later.tsv"
    first.write_text("en\tde\nOpen the file\tDatei öffnen\n", encoding="utf-8")
    later.write_text("en\tde\nClose the window\tFenster schließen\n", encoding="utf-8")
    TranslationMemory.open_or_create(tmp_path / "tm", files=[first],
                                     encoder="hash").close()
    ragline("tm", "import", str(tmp_path / "tm"), str(first))
    rag = RAG.open(tmp_path / "tm", config=CONCAT, generator=ScriptedGenerator("MT"))
    with TestClient(create_app(rag, ServerConfig())) as c:
        r = c.post("/v1/translate", json={"text": "Close the window"}).json()
        assert r["translations"][0]["exact"] is False
        ragline("tm", "import", str(tmp_path / "tm"), str(later))
        r = c.post("/v1/translate", json={"text": "Close the window"}).json()
        assert r["translations"][0]["exact"] is True
        assert r["translations"][0]["translation"] == "Fenster schließen"


def test_a_server_and_another_process_both_write_and_both_writes_stay(index: Path,
                                                                     tmp_path: Path) -> None:
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text(NEW, encoding="utf-8")
    two.write_text("The quokka is a small wallaby of Rottnest Island.", encoding="utf-8")
    rag = RAG.open(index, config=CONCAT, generator=ScriptedGenerator("x"))
    with TestClient(create_app(rag, ServerConfig())) as c:
        ragline("index", str(one), "--index", str(index))
        up = c.post("/v1/documents", files={"file": ("lynx.txt", b"The lynx hunts hares.")})
        assert up.status_code == 201, up.text
        ragline("index", str(two), "--index", str(index))
        for q in ("okapi rainforest", "quokka wallaby", "lynx hares"):
            assert any(q.split()[0] in t for t in found(c, q, "hybrid")), q
        assert c.get("/health").json()["index"]["documents"] == 6
    ragline("info", str(index))
    with RAG.open(index, config=CONCAT, generator=ScriptedGenerator("x")) as rag:
        assert rag.index.counts()["documents"] == 6
        for q in ("okapi", "quokka", "lynx"):
            assert q in rag.search(q, k=1, mode="bm25")[0].passage.text.lower()
