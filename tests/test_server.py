"""The HTTP API on a tiny index (hash encoder, scripted generators): routes, streaming,
uploads, errors, the API key, the generation queue and concurrency."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ragline import RAG
from ragline.config import Config, ServerConfig
from ragline.server import create_app

from conftest import CONCAT, THREE_DOCS, ScriptedGenerator, write_docs
from serving import BrokenGenerator, GatedGenerator, live_server

ANSWER = "Paris is the capital of France."


@pytest.fixture
def index(tmp_path: Path) -> Path:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    RAG.build(tmp_path / "idx", paths=[docs], encoder="hash").close()
    return tmp_path / "idx"


def make_client(index: Path, generator: Any = None, api_key: str | None = None,
                **server: Any) -> TestClient:
    """The server over concat, which streams (the default model answers once it is sure:
    test_ask_with_the_default_reader)."""
    rag = RAG.open(index, config=CONCAT, generator=generator or ScriptedGenerator(ANSWER))
    return TestClient(create_app(rag, ServerConfig(**server), api_key=api_key))


@pytest.fixture
def client(index: Path) -> Iterator[TestClient]:
    with make_client(index) as c:
        yield c


def events(body: str) -> list[tuple[str, Any]]:
    """Server-sent events: (event, parsed data) for each block."""
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def assert_error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["type"] == kind and body["error"]["code"] == status
    assert "Traceback" not in r.text
    return str(body["error"]["message"])


# ---------------------------------------------------------------- reads


def test_health_reports_the_index_and_the_queue(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok"
    assert h["index"] == {"documents": 3, "passages": 3, "sources": 3}
    assert h["generation"]["running"] == 0 and h["generation"]["max_waiting"] == 32


def test_search_returns_ranked_passages_with_names_and_posteriors(client: TestClient) -> None:
    r = client.get("/v1/search", params={"q": "capital of Germany Berlin", "k": 2})
    assert r.status_code == 200
    hits = r.json()["passages"]
    assert [h["name"] for h in hits][0] == "germany.txt"
    assert [h["rank"] for h in hits] == [1, 2]
    assert abs(sum(h["prob"] for h in hits) - 1) < 1e-6
    zh = client.get("/v1/search", params={"q": "中国的首都", "k": 1, "mode": "bm25"}).json()
    assert zh["passages"][0]["name"] == "china.txt"


def test_ask_answers_with_citations_passage_text_and_document_posteriors(
        client: TestClient) -> None:
    r = client.post("/v1/ask", json={"question": "What is the capital of France?", "k": 3})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["answered"] and a["answer"] == ANSWER + " [1]"
    [c] = a["citations"]
    assert c["name"] == "france.txt" and c["quote"] == ANSWER
    assert c["text"] == THREE_DOCS["france.txt"] and c["source"].endswith("france.txt")
    docs = a["documents"]
    assert len(docs) == 3 and abs(sum(d["prob"] for d in docs) - 1) < 1e-6
    assert docs == sorted(docs, key=lambda d: -d["prob"])
    assert a["timings"]["retrieve_s"] > 0 and a["timings"]["total_s"] >= a["timings"]["retrieve_s"]


def test_ask_with_the_default_reader(index: Path) -> None:
    """The default model reads one passage at a time: one answer event, with its confidence;
    a question no passage is sure of is refused with the reason, never a 500."""
    for verdict, answered in ((9.0, True), (-9.0, False)):
        rag = RAG.open(index, generator=ScriptedGenerator(ANSWER, verdict=verdict))
        with TestClient(create_app(rag, ServerConfig())) as c:
            assert c.get("/health").json()["model"] == "per-passage"
            a = c.post("/v1/ask", json={"question": "What is the capital of France?"}).json()
            assert a["answered"] is answered and a["model"] == "per-passage"
            assert 0 <= a["confidence"] <= 1 and (a["confidence"] > 0.5) is answered
            if answered:
                assert a["answer"] == "Paris is the capital of France [1]"
                assert a["citations"][0]["name"] == "france.txt"
            else:
                assert a["reason"] == "low_confidence" and a["citations"] == []
            with c.stream("POST", "/v1/ask", json={"question": "capital of France?",
                                                   "stream": True}) as r:
                kinds = [e for e, _ in events(r.read().decode())]
            assert kinds[:2] == ["passages", "queued"] and kinds[-1] == "answer"
        rag.close()


def test_ask_streams_passages_then_tokens_then_the_answer(client: TestClient) -> None:
    with client.stream("POST", "/v1/ask", json={"question": "capital of France?",
                                                "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        evs = events(r.read().decode())
    kinds = [e for e, _ in evs]
    assert kinds[:2] == ["passages", "queued"] and kinds[-1] == "answer"
    assert set(kinds[2:-1]) == {"token"} and len(kinds) - 3 > 10  # piece by piece
    streamed = "".join(d["text"] for e, d in evs if e == "token")
    final = evs[-1][1]
    assert streamed.strip() == final["answer"] and final["citations"][0]["marker"] == 1
    assert evs[0][1]["passages"][0]["passage_id"] == final["passages"][0]["passage_id"]


@pytest.mark.parametrize("body, needle", [
    ({"question": "x", "k": 0}, "k must be"),
    ({"question": "x", "mode": "fuzzy"}, "unknown retrieval mode"),
    ({"question": "x", "model": "gpt-9"}, "unknown model"),
    ({"question": "   "}, "empty"),
    ({"question": "x", "max_tokens": 0}, "max_tokens"),
])
def test_bad_ask_arguments_are_400_before_anything_is_queued(
        client: TestClient, body: dict[str, Any], needle: str) -> None:
    assert needle in assert_error(client.post("/v1/ask", json=body), 400, "config_error")
    with client.stream("POST", "/v1/ask", json={**body, "stream": True}) as r:
        assert r.status_code == 400  # a stream too fails before its status line
    assert client.get("/health").json()["generation"]["completed"] == 0


def test_malformed_requests_are_422_with_the_same_error_shape(client: TestClient) -> None:
    msg = assert_error(client.post("/v1/ask", json={"k": 3}), 422, "invalid_request_error")
    assert "question" in msg
    assert_error(client.get("/v1/search", params={"q": "x", "k": "many"}), 422,
                 "invalid_request_error")
    assert_error(client.get("/v1/nowhere"), 404, "http_error")


def test_an_empty_index_answers_409_with_what_to_do(tmp_path: Path) -> None:
    RAG.build(tmp_path / "empty", encoder="hash").close()
    with make_client(tmp_path / "empty") as c:
        msg = assert_error(c.get("/v1/search", params={"q": "anything"}), 409,
                           "empty_index_error")
        assert "add documents" in msg
        assert_error(c.post("/v1/ask", json={"question": "anything"}), 409, "empty_index_error")


def test_an_internal_error_is_a_500_without_its_details(index: Path) -> None:
    with make_client(index, generator=BrokenGenerator()) as c:
        r = c.post("/v1/ask", json={"question": "capital of France?"})
        msg = assert_error(r, 500, "internal_error")
        assert "secret" not in r.text and "server log" in msg
        with c.stream("POST", "/v1/ask", json={"question": "capital of France?",
                                               "stream": True}) as s:
            evs = events(s.read().decode())
        assert evs[-1][0] == "error" and evs[-1][1]["error"]["code"] == 500
        assert "secret" not in json.dumps(evs)


# ---------------------------------------------------------------- documents


def test_upload_indexes_the_file_at_once_under_a_safe_name(client: TestClient,
                                                           index: Path) -> None:
    r = client.post("/v1/documents",
                    files={"file": ("../../../etc/Roma notes.md",
                                    b"# Rome\n\nRome is the capital of Italy.")})
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["status"] == "added" and up["name"] == "Roma notes.md" and up["passages"] == 1
    [doc] = up["documents"]
    stored = Path(doc["source"])
    assert stored.parent == Path("uploads") and stored.suffix == ".md"  # no server path
    assert (index / stored).is_file()
    assert "Roma" not in stored.name  # the client's name is never a path
    assert doc["title"] == "Rome"
    listed = {d["name"]: d for d in client.get("/v1/documents").json()["documents"]}
    assert listed["Roma notes.md"]["id"] == doc["id"]
    hit = client.get("/v1/search", params={"q": "capital of Italy", "k": 1}).json()["passages"][0]
    assert hit["name"] == "Roma notes.md"
    again = client.post("/v1/documents", files={"file": ("copy.md", b"# Rome\n\nRome is the "
                                                                     b"capital of Italy.")})
    assert again.json()["status"] == "unchanged"
    assert client.get("/health").json()["index"]["documents"] == 4


def test_deleting_a_document_removes_it_and_its_upload_and_a_reupload_restores_it(
        client: TestClient, index: Path) -> None:
    data = b"Madrid is the capital of Spain."
    doc = client.post("/v1/documents", files={"file": ("spain.txt", data)}).json()["documents"][0]
    assert client.delete(f"/v1/documents/{doc['id']}").json() == {"deleted": [doc["id"]]}
    assert not (index / doc["source"]).exists()
    assert doc["id"] not in {d["id"] for d in client.get("/v1/documents").json()["documents"]}
    assert client.get("/v1/search", params={"q": "Madrid Spain", "k": 1}).json()[
        "passages"][0]["name"] != "spain.txt"
    assert_error(client.delete(f"/v1/documents/{doc['id']}"), 404, "document_not_found_error")
    back = client.post("/v1/documents", files={"file": ("spain.txt", data)}).json()
    assert back["status"] == "added" and back["documents"][0]["id"] == doc["id"]


def test_deleting_one_row_of_a_multi_document_file_keeps_the_others(client: TestClient,
                                                                    index: Path) -> None:
    rows = b'{"title": "A", "text": "Alpha is first."}\n{"title": "B", "text": "Beta is second."}\n'
    docs = client.post("/v1/documents", files={"file": ("ab.jsonl", rows)}).json()["documents"]
    assert len(docs) == 2
    client.delete(f"/v1/documents/{docs[0]['id']}")
    left = [d for d in client.get("/v1/documents").json()["documents"] if d["name"] == "ab.jsonl"]
    assert [d["id"] for d in left] == [docs[1]["id"]]
    assert (index / docs[1]["source"]).exists()  # the file stays while a document of it does


def test_the_api_deletes_by_id_only_never_by_path(client: TestClient, index: Path) -> None:
    source = client.get("/v1/documents").json()["documents"][0]["source"]
    r = client.delete("/v1/documents/" + source.replace("/", "%2F"))
    assert r.status_code == 404
    assert client.get("/health").json()["index"]["documents"] == 3


@pytest.mark.parametrize("name, data, status, kind", [
    ("tool.exe", b"MZ\x90\x00", 415, "unsupported_file_error"),
    ("noext", b"\x00\x01 binary", 415, "unsupported_file_error"),
    ("empty.txt", b"", 422, "unreadable_file_error"),
    ("binary.txt", bytes(range(256)) * 8, 422, "unreadable_file_error"),
    ("broken.pdf", b"%PDF-1.4 this is not really a pdf", 422, "unreadable_file_error"),
])
def test_bad_uploads_are_refused_and_change_nothing(client: TestClient, index: Path, name: str,
                                                    data: bytes, status: int, kind: str) -> None:
    before = client.get("/v1/documents").json()
    assert_error(client.post("/v1/documents", files={"file": (name, data)}), status, kind)
    assert client.get("/v1/documents").json() == before
    assert not any((index / "uploads").glob("*")) if (index / "uploads").exists() else True


def test_uploads_over_the_size_limit_are_413(index: Path) -> None:
    with make_client(index, max_upload_mb=0.01) as c:  # about 10 kB
        r = c.post("/v1/documents", files={"file": ("big.txt", b"word " * 10_000)})
        assert "limit" in assert_error(r, 413, "payload_too_large_error")
        # a body without Content-Length is counted as it is read
        small = c.post("/v1/documents", files={"file": ("ok.txt", b"Lisbon is in Portugal.")})
        assert small.status_code == 201
        assert c.get("/health").json()["index"]["documents"] == 4


def test_upload_without_a_file_is_422(client: TestClient) -> None:
    assert_error(client.post("/v1/documents", data={"x": "1"}), 422, "invalid_request_error")


# ---------------------------------------------------------------- API key


def test_the_api_key_is_required_on_every_route_but_the_page(index: Path) -> None:
    with make_client(index, api_key="s3cret") as c:
        for method, path in [("GET", "/health"), ("GET", "/v1/search?q=x"),
                             ("GET", "/v1/documents"), ("GET", "/v1/models"),
                             ("POST", "/v1/ask"), ("GET", "/openapi.json"), ("GET", "/docs"),
                             ("DELETE", "/v1/documents/x"), ("POST", "/v1/chat/completions")]:
            r = c.request(method, path)
            assert_error(r, 401, "unauthorized_error")
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = c.get("/health", headers={"Authorization": "Bearer s3cre"})
        assert wrong.status_code == 401
        ok = c.get("/health", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "<title>ragline</title>" in page.text
        assert "Paris" not in page.text  # the page itself carries no data


# ---------------------------------------------------------------- concurrency


def test_search_is_not_blocked_by_a_running_generation(index: Path) -> None:
    gen = GatedGenerator(ANSWER, open_=False)
    rag = RAG.open(index, config=CONCAT, generator=gen)
    with live_server(create_app(rag, ServerConfig())) as url:
        result: dict[str, Any] = {}

        def ask() -> None:
            result["r"] = httpx.post(url + "/v1/ask", json={"question": "capital of France?"},
                                     timeout=30)

        t = threading.Thread(target=ask)
        t.start()
        assert gen.started.wait(10)  # the generation is running and holds the only worker
        t0 = time.monotonic()
        s = httpx.get(url + "/v1/search", params={"q": "capital of Germany"}, timeout=10)
        searched_in = time.monotonic() - t0
        health = httpx.get(url + "/health").json()
        gen.gate.set()
        t.join(30)
    assert s.status_code == 200 and searched_in < 5
    assert health["generation"]["running"] == 1
    assert result["r"].status_code == 200 and result["r"].json()["answered"]


def test_a_full_queue_answers_503_with_retry_after(index: Path) -> None:
    gen = GatedGenerator(ANSWER, open_=False)
    rag = RAG.open(index, config=CONCAT, generator=gen)
    with live_server(create_app(rag, ServerConfig(queue_size=1))) as url:
        codes: list[int] = []

        def ask() -> None:
            codes.append(httpx.post(url + "/v1/ask", json={"question": "capital of France?"},
                                    timeout=30).status_code)

        running = threading.Thread(target=ask)
        running.start()
        assert gen.started.wait(10)
        waiting = threading.Thread(target=ask)
        waiting.start()
        deadline = time.monotonic() + 10
        while httpx.get(url + "/health").json()["generation"]["waiting"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        full = httpx.post(url + "/v1/ask", json={"question": "capital of France?"})
        gen.gate.set()
        running.join(30)
        waiting.join(30)
    msg = assert_error(full, 503, "queue_full_error")
    assert "busy" in msg and int(full.headers["retry-after"]) >= 1
    assert sorted(codes) == [200, 200]  # the running and the queued one both complete


def test_a_generation_past_its_time_limit_is_504_and_is_stopped(index: Path) -> None:
    gen = GatedGenerator("x" * 200, delay=0.05)
    with make_client(index, generator=gen, timeout_s=0.5) as c:
        msg = assert_error(c.post("/v1/ask", json={"question": "capital of France?"}), 504,
                           "generation_timeout_error")
        assert "0.5 s" in msg
        assert gen.closed.wait(5)  # the worker stopped it at its next token
        with c.stream("POST", "/v1/ask", json={"question": "capital of France?",
                                               "stream": True}) as s:
            evs = events(s.read().decode())
        assert evs[-1][0] == "error" and evs[-1][1]["error"]["code"] == 504
        assert any(e == "token" for e, _ in evs)  # what came before the limit was streamed


def test_a_request_that_waits_too_long_in_the_queue_gets_503(index: Path) -> None:
    gen = GatedGenerator(ANSWER, open_=False)
    rag = RAG.open(index, config=CONCAT, generator=gen)
    with live_server(create_app(rag, ServerConfig(queue_timeout_s=0.5))) as url:
        first = threading.Thread(target=lambda: httpx.post(
            url + "/v1/ask", json={"question": "capital of France?"}, timeout=30))
        first.start()
        assert gen.started.wait(10)
        late = httpx.post(url + "/v1/ask", json={"question": "capital of France?"}, timeout=30)
        gen.gate.set()
        first.join(30)
    assert_error(late, 503, "queue_timeout_error")
    assert "retry-after" in late.headers


def test_uploads_during_searches_lose_nothing_and_break_no_search(index: Path,
                                                                  tmp_path: Path) -> None:
    rag = RAG.open(index, config=CONCAT, generator=ScriptedGenerator(ANSWER))
    n_uploads = 12
    with live_server(create_app(rag, ServerConfig())) as url:
        stop = threading.Event()
        failures: list[str] = []
        searches = [0]

        def search_loop() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                while not stop.is_set():
                    r = c.get("/v1/search", params={"q": "capital city river", "k": 5})
                    if r.status_code != 200 or not r.json()["passages"]:
                        failures.append(r.text)
                    searches[0] += 1

        def upload(i: int) -> None:
            text = f"City number {i} is the capital of province {i} by the river {i}."
            with httpx.Client(base_url=url, timeout=60) as c:
                r = c.post("/v1/documents", files={"file": (f"city{i}.txt", text.encode())})
                if r.status_code != 201:
                    failures.append(r.text)

        readers = [threading.Thread(target=search_loop) for _ in range(4)]
        writers = [threading.Thread(target=upload, args=(i,)) for i in range(n_uploads)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(60)
        stop.set()
        for t in readers:
            t.join(30)
        names = {d["name"] for d in httpx.get(url + "/v1/documents").json()["documents"]}
        found = httpx.get(url + "/v1/search", params={"q": "City number 7 province 7",
                                                      "k": 1, "mode": "bm25"}).json()
    assert failures == []
    assert searches[0] > 0
    assert {f"city{i}.txt" for i in range(n_uploads)} <= names
    assert found["passages"][0]["name"] == "city7.txt"
    reopened = RAG.open(index)  # and all of it was committed to disk
    assert reopened.index.folder.store.counts()["documents"] == 3 + n_uploads
    assert reopened.index.folder.dense is not None and reopened.index.folder.dense.ntotal == 3 + n_uploads
    reopened.close()


def test_workers_above_one_need_a_remote_generator(index: Path) -> None:
    from ragline.errors import ConfigError

    with pytest.raises(ConfigError, match="workers"):
        create_app(RAG.open(index, config=Config()), ServerConfig(workers=2))


def test_a_chunked_upload_without_content_length_is_stopped_at_the_limit(index: Path) -> None:
    rag = RAG.open(index, config=CONCAT, generator=ScriptedGenerator(ANSWER))
    with live_server(create_app(rag, ServerConfig(max_upload_mb=0.01))) as url:
        boundary = "ragline-test"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode()

        def body() -> Iterator[bytes]:  # a generator: httpx sends it chunked
            yield head
            for _ in range(2000):
                yield b"word " * 200
            yield f"\r\n--{boundary}--\r\n".encode()

        r = httpx.post(url + "/v1/documents", content=body(), timeout=30,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413 and "Traceback" not in r.text
        assert r.json()["error"]["code"] == 413
        assert httpx.get(url + "/health").json()["index"]["documents"] == 3


def test_a_streaming_client_that_goes_away_cancels_its_generation(index: Path) -> None:
    gen = GatedGenerator("z" * 400, delay=0.02)
    rag = RAG.open(index, config=CONCAT, generator=gen)
    with live_server(create_app(rag, ServerConfig())) as url:
        with httpx.stream("POST", url + "/v1/ask", timeout=30,
                          json={"question": "capital of France?", "stream": True}) as r:
            for line in r.iter_lines():
                if line == "event: token":
                    break  # the generation is running: hang up
        assert gen.closed.wait(5)  # stopped long before its 8 s of tokens
        deadline = time.monotonic() + 5
        while httpx.get(url + "/health").json()["generation"]["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_the_openapi_document_lists_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/v1/search", "/v1/ask", "/v1/documents", "/v1/documents/{doc_id}",
            "/v1/chat/completions", "/v1/models"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_a_client_gone_during_the_readers_silent_readings_frees_the_worker(index: Path) -> None:
    """The per-passage reader yields nothing while it reads its passages (a second or more
    each with the real model): a client that hangs up meanwhile stops it before the next."""
    from ragline.generate import cancel
    from ragline.generate.base import Completion

    class SlowReader(ScriptedGenerator):
        def __init__(self) -> None:
            super().__init__("Paris", verdict=-8.0)  # never sure enough: it would read all
            self.reading, self.readings = threading.Event(), 0

        def complete(self, prompt: str, max_tokens: int = 32, stop: Any = ("\n",),
                     head: str = "") -> Completion:
            self.readings += 1
            self.reading.set()
            gone = cancel.current()  # the job's: set once its client has gone
            assert gone is not None and gone.wait(30)
            return super().complete(prompt, max_tokens, stop, head)

    gen = SlowReader()
    rag = RAG.open(index, generator=gen)  # the default model: per-passage, 3 readings
    with live_server(create_app(rag, ServerConfig())) as url:
        with httpx.stream("POST", url + "/v1/ask", timeout=30,
                          json={"question": "capital of France?", "stream": True}) as r:
            for line in r.iter_lines():
                if line == "event: passages":
                    break
            assert gen.reading.wait(10)  # inside the first reading: hang up
        deadline = time.monotonic() + 10
        while httpx.get(url + "/health").json()["generation"]["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert gen.readings == 1  # stopped before the second reading


@pytest.mark.parametrize("path, body", [
    ("/v1/ask", {"question": "capital of France?"}),
    ("/v1/chat/completions", {"model": "ragline", "messages": [
        {"role": "user", "content": "capital of France?"}]}),
])
def test_a_plain_request_whose_client_leaves_cancels_its_generation(index: Path, path: str,
                                                                   body: dict[str, Any]) -> None:
    gen = GatedGenerator("z" * 400, delay=0.02, open_=False)  # 8 s once the gate opens
    rag = RAG.open(index, config=CONCAT, generator=gen)
    with live_server(create_app(rag, ServerConfig())) as url:
        host, port = url.removeprefix("http://").split(":")
        data = json.dumps(body).encode()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                         f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                         + data)
            assert gen.started.wait(10)  # generating, and held: the client gives up
        gen.gate.set()
        assert gen.closed.wait(10)  # stopped at its next token, not after 400 of them
        deadline = time.monotonic() + 10
        while httpx.get(url + "/health").json()["generation"]["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)


# ---------------------------------------------------------------- follow-up questions

TOWERS = {"eiffel.txt": "The Eiffel Tower in Paris is 330 metres tall. It was completed in 1889.",
          "gate.txt": "The Brandenburg Gate in Berlin is 26 metres high. It was built in 1791.",
          "it.txt": "How is it? It is what it is, people say of it."}
HISTORY = [{"role": "system", "content": "Answer in a few words."},
           {"role": "user", "content": "When was the Eiffel Tower completed?"},
           {"role": "assistant", "content": "In 1889 [1]."}]


def _towers_reply(prompt: str) -> str:
    return "the Eiffel Tower" if prompt.endswith('"it" means:') else "330 metres"


@pytest.fixture
def towers(tmp_path: Path) -> Iterator[tuple[TestClient, ScriptedGenerator]]:
    docs = write_docs(tmp_path / "towers", TOWERS)
    RAG.build(tmp_path / "towers-idx", paths=[docs], encoder="hash").close()
    gen = ScriptedGenerator(_towers_reply)
    with make_client(tmp_path / "towers-idx", gen) as c:
        yield c, gen


def test_a_followup_is_answered_about_what_the_conversation_is_about(
        towers: tuple[TestClient, ScriptedGenerator]) -> None:
    client, gen = towers
    r = client.post("/v1/ask", json={"question": "How tall is it?", "history": HISTORY, "k": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["question"] == "How tall is it?"
    assert body["standalone_question"] == "How tall is the Eiffel Tower?"
    assert body["passages"][0]["source"] == "eiffel.txt" and body["answered"]
    assert "rewrite_s" in body["timings"]
    # the system turn is an instruction to concat; the answer prompt asks the standalone question
    assert "Answer in a few words." in gen.prompts[-1]
    assert "How tall is the Eiffel Tower?" in gen.prompts[-1]
    # streamed: the passages event already holds what the standalone question found
    r = client.post("/v1/ask", json={"question": "How tall is it?", "history": HISTORY, "k": 1,
                                     "stream": True})
    got = events(r.text)
    assert got[0][0] == "passages" and got[0][1]["passages"][0]["source"] == "eiffel.txt"
    assert got[-1][1]["standalone_question"] == "How tall is the Eiffel Tower?"
    # without a history, the same words find what they say
    r = client.post("/v1/ask", json={"question": "How tall is it?", "k": 1})
    assert r.json()["passages"][0]["source"] == "it.txt"
    assert r.json()["standalone_question"] is None


@pytest.mark.parametrize("history, status, kind, message", [
    ([{"role": "wizard", "content": "x"}], 400, "config_error",
     "history turn 1: role must be one of"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], 400,
     "config_error", "only text content"),
    ([{"role": "user", "content": "x" * 100_001}], 400, "config_error", "100,000 are allowed"),
    ([{"role": "user", "content": "x"}] * 1001, 422, "invalid_request_error", "history"),
    ({"role": "user"}, 422, "invalid_request_error", "history"),
    ([{"content": "no role"}], 422, "invalid_request_error", "role"),
])
def test_a_bad_history_is_refused_before_the_model_runs(
        towers: tuple[TestClient, ScriptedGenerator], history: object, status: int, kind: str,
        message: str) -> None:
    client, gen = towers
    r = client.post("/v1/ask", json={"question": "How tall is it?", "history": history})
    assert message in assert_error(r, status, kind)
    assert gen.prompts == []


def test_a_long_conversation_sends_the_model_what_a_short_one_does(
        towers: tuple[TestClient, ScriptedGenerator]) -> None:
    client, gen = towers
    filler = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 20}
              for i in range(200)]
    for history in (filler + HISTORY[1:], (filler + HISTORY[1:])[-6:]):
        r = client.post("/v1/ask", json={"question": "How tall is it?", "history": history})
        assert r.json()["standalone_question"] == "How tall is the Eiffel Tower?"
    rewrites = [p for p in gen.prompts if p.endswith('"it" means:')]
    assert len(rewrites) == 2 and rewrites[0] == rewrites[1]


@pytest.mark.parametrize("extra, message", [
    ({"k": 0}, "k must be an integer from 1 to 1000"), ({"mode": "psychic"}, "unknown"),
    ({"model": "oracle"}, "unknown"), ({"max_tokens": 10**6}, "max_tokens")])
def test_a_followup_with_a_bad_argument_fails_before_its_rewrite(
        towers: tuple[TestClient, ScriptedGenerator], extra: dict[str, Any], message: str) -> None:
    client, gen = towers
    r = client.post("/v1/ask", json={"question": "How tall is it?", "history": HISTORY, **extra})
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    assert gen.prompts == []  # no model call, not even the rewrite
