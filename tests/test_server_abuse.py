"""Hostile HTTP requests get a 4xx with the JSON error shape, never a 500; a failed upload
leaves nothing behind; nothing indexed is lost. bench/break_it.py sends hundreds more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragline import RAG
from ragline.config import ServerConfig
from ragline.server import create_app

from conftest import CONCAT, THREE_DOCS, ScriptedGenerator, write_docs
from mutants import file_mutants

LONG = "why " * 2000  # 8,000 characters

# (method, path, keyword arguments of the request) → each must be a 4xx
BAD_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/ask", {"json": {"question": "caf\udcff river"}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "k": 10**9}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "k": 10**30}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "k": -1}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "k": "many"}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "k": 1.5}}),
    ("POST", "/v1/ask", {"json": {"question": LONG}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "max_tokens": 10**9}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "temperature": -1}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "temperature": float("inf")}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "model": "rag-token", "k": 500}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "mode": "../../etc"}}),
    ("POST", "/v1/ask", {"json": {"question": None}}),
    ("POST", "/v1/ask", {"json": {"question": ["a", "b"]}}),
    ("POST", "/v1/ask", {"json": ["question"]}),
    ("POST", "/v1/ask", {"json": "question"}),
    ("POST", "/v1/ask", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/ask", {"content": b"\xff\xfe\x00", "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/ask", {"content": b"question=x", "headers": {"content-type": "text/plain"}}),
    ("POST", "/v1/ask", {"json": {"question": "x", "stream": "maybe"}}),
    ("POST", "/v1/ask", {"json": {"question": "x" * 5000, "stream": True}}),
    ("POST", "/v1/ask", {"json": {"question": "caf\udcff", "stream": True}}),
    ("GET", "/v1/search", {"params": {"q": "x", "k": 10**9}}),
    ("GET", "/v1/search", {"params": {"q": "x", "k": 0}}),
    ("GET", "/v1/search", {"params": {"q": ""}}),
    ("GET", "/v1/search", {"params": {"q": LONG}}),
    ("GET", "/v1/search", {"params": {"q": "x", "mode": "magic"}}),
    ("GET", "/v1/search", {"params": {"q": "x", "rerank": "perhaps"}}),
    ("GET", "/v1/search", {}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "messages": []}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline",
                                               "messages": [{"role": "system", "content": "x"}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "gpt-4", "messages": [
        {"role": "user", "content": "x"}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "n": 3, "messages": [
        {"role": "user", "content": "x"}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "k": 10**9, "messages": [
        {"role": "user", "content": "x"}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "messages": [
        {"role": "user", "content": LONG}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "max_tokens": 10**9,
                                               "messages": [{"role": "user", "content": "x"}]}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "messages": [
        {"role": "user", "content": "caf\udcff"}], "stream": True}}),
    ("POST", "/v1/chat/completions", {"json": {"messages": "hello"}}),
    ("DELETE", "/v1/documents/nothing-here", {}),
    ("DELETE", "/v1/documents/..%2F..%2Fetc%2Fpasswd", {}),
    ("DELETE", "/v1/documents/caf%FF", {}),
    ("POST", "/v1/documents", {"data": {"x": "1"}}),
    ("POST", "/v1/documents", {"files": {"file": ("a.exe", b"MZ")}}),
    ("POST", "/v1/documents", {"files": {"file": ("", b"hello")}}),
    ("POST", "/v1/documents", {"files": {"file": ("x.txt", b"")}}),
    ("POST", "/v1/documents", {"files": {"file": ("\x00\n.txt", b"\x00\x01")}}),
    ("POST", "/v1/documents", {"content": b"--x\r\nbroken", "headers": {
        "content-type": "multipart/form-data; boundary=x"}}),
    ("POST", "/v1/documents", {"content": b"data", "headers": {"content-length": "-5"}}),
    ("GET", "/v1/nowhere", {}),
    ("PUT", "/v1/ask", {}),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    RAG.build(tmp_path / "idx", paths=[docs], encoder="hash").close()
    rag = RAG.open(tmp_path / "idx", generator=ScriptedGenerator("Paris is the capital [1]."))
    with TestClient(create_app(rag), raise_server_exceptions=False) as c:
        yield c
    rag.close()


def assert_4xx(r: Any) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    err = r.json()["error"]
    assert err["code"] == r.status_code and err["message"] and err["type"], r.text
    assert "Traceback" not in r.text


def assert_nothing_lost(client: TestClient) -> None:
    for q, name in (("capital of France", "france.txt"), ("Brandenburg Gate", "germany.txt")):
        hit = client.get("/v1/search", params={"q": q, "k": 1, "mode": "bm25"}).json()
        assert hit["passages"][0]["name"] == name


def send(client: TestClient, method: str, path: str, kwargs: dict[str, Any]) -> Any:
    if "json" in kwargs:  # encoded here: httpx refuses lone surrogates, a hostile client need not
        kwargs = {"content": json.dumps(kwargs["json"]).encode(),
                  "headers": {"content-type": "application/json"}}
    return client.request(method, path, **kwargs)


def test_bad_requests_are_4xx_never_500(client: TestClient) -> None:
    for method, path, kwargs in BAD_REQUESTS:
        assert_4xx(send(client, method, path, kwargs))  # a stream too: before its status line
    assert client.get("/health").json()["generation"]["completed"] == 0  # nothing was queued
    assert_nothing_lost(client)


def test_mutated_uploads_are_indexed_or_refused_and_leave_nothing_behind(
        client: TestClient, tmp_path: Path) -> None:
    statuses = []
    for m in file_mutants(seed=1, per_kind=1):
        r = client.post("/v1/documents", files={"file": (m.name, m.data)})
        statuses.append(r.status_code)
        if r.status_code != 201:
            assert_4xx(r)
    assert 201 in statuses and 422 in statuses
    known = {d["source"] for d in client.get("/v1/documents").json()["documents"]}
    for f in (tmp_path / "idx" / "uploads").iterdir():  # only files whose documents exist
        assert f"uploads/{f.name}" in known, f.name
    assert_nothing_lost(client)


def test_a_document_id_with_slashes_can_be_deleted(client: TestClient) -> None:
    rows = b'{"id": "reports/2024/q1", "text": "Quarterly numbers rose."}\n'
    [doc] = client.post("/v1/documents", files={"file": ("r.jsonl", rows)}).json()["documents"]
    assert doc["id"] == "reports/2024/q1"
    r = client.delete("/v1/documents/reports%2F2024%2Fq1")
    assert r.status_code == 200 and r.json() == {"deleted": ["reports/2024/q1"]}
    assert "reports/2024/q1" not in {d["id"] for d in client.get("/v1/documents").json()[
        "documents"]}
    assert client.delete("/v1/documents/reports/2024/q1").status_code == 404  # gone


def test_an_upload_that_fails_inside_indexing_leaves_no_file(client: TestClient, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import ragline.server.uploads as uploads

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uploads.Index, "add", broken)
    r = client.post("/v1/documents", files={"file": ("spain.txt", b"Madrid is in Spain.")})
    assert r.status_code == 500 and "server log" in r.json()["error"]["message"]
    assert list((tmp_path / "idx" / "uploads").iterdir()) == []


def test_an_upload_whose_text_is_already_indexed_is_a_duplicate_and_leaves_no_file(
        client: TestClient, tmp_path: Path) -> None:
    first = client.post("/v1/documents", files={"file": ("a.txt", b"Lisbon is in Portugal.")})
    [doc] = first.json()["documents"]
    again = client.post("/v1/documents", files={"file": ("b.md", b"Lisbon is in Portugal.")})
    assert again.status_code == 201
    assert again.json() | {"name": "b.md"} == {"name": "b.md", "status": "duplicate",
                                               "documents": [], "passages": 0,
                                               "duplicate_of": [doc["id"]]}
    assert [f.name for f in (tmp_path / "idx" / "uploads").iterdir()] == [Path(doc["source"]).name]


def test_no_response_shows_the_servers_own_paths(tmp_path: Path) -> None:
    from ragline.tm import TranslationMemory

    docs = tmp_path / "secret-home" / "docs"
    (tmp_path / "secret-home").mkdir()
    write_docs(docs, {"paris.txt": "Paris is the capital of France."})
    write_docs(docs / "sub", {"rome.txt": "Rome is the capital of Italy."})
    RAG.build(tmp_path / "idx", paths=[docs], encoder="hash").close()
    tsv = tmp_path / "secret-home" / "g.tsv"
    tsv.write_text("en\tde\nOpen the file\tDatei öffnen\n", encoding="utf-8")
    with TranslationMemory.open_or_create(tmp_path / "tm", files=[tsv], encoder="hash") as tm:
        tm.add([tsv])
    rag = RAG.open(tmp_path / "idx", config=CONCAT, generator=ScriptedGenerator("Rome [1]"))
    memory = TranslationMemory.open(tmp_path / "tm")
    with TestClient(create_app(rag, ServerConfig(), memory=memory)) as c:
        up = c.post("/v1/documents", files={"file": ("berlin.txt", b"Berlin is in Germany.")})
        responses = [up, c.get("/v1/documents"),
                     c.get("/v1/search", params={"q": "capital", "k": 5}),
                     c.post("/v1/ask", json={"question": "capital of Italy?"}),
                     c.post("/v1/translate", json={"text": "Open the file"}),
                     c.post("/v1/chat/completions", json={"model": "ragline", "messages": [
                         {"role": "user", "content": "capital of Italy?"}]})]
    memory.close()
    for r in responses:
        assert r.status_code in (200, 201), r.text
        assert str(tmp_path) not in r.text, r.request.url
    sources = {d["source"] for d in responses[1].json()["documents"]}
    assert {"paris.txt", "sub/rome.txt"} < sources
    assert any(s.startswith("uploads/") for s in sources)
    assert responses[4].json()["translations"][0]["matches"][0]["origin"] == "g.tsv"
