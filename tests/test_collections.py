"""Several collections behind one server, keys that each open some of them (every route tried
with a key of the wrong collection), /v1/embeddings through the official client, `ragline
keys`, and the page's collection picker in Chromium."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ragline import RAG
from ragline.cli import main
from ragline.cli.serving import index_folders
from ragline.config import ServerConfig
from ragline.errors import ConfigError
from ragline.server import create_app
from ragline.server.collections import KeyRing, collection_names, key_hash

from conftest import CONCAT, THREE_DOCS, ScriptedGenerator, write_docs
from serving import live_server

ANSWER = "Paris is the capital of France."
WIKI = {"tower.txt": "The Eiffel Tower is 330 metres tall. It was completed in 1889.",
        "gate.txt": "The Brandenburg Gate is 26 metres high. It was built in 1791."}
KEYS = {"admin": "k-admin", "team-a": "k-team-a", "team-b": "k-team-b"}


def _keys_file(path: Path) -> Path:
    path.write_text(
        f'[[keys]]\nname = "team-a"\nsha256 = "{key_hash(KEYS["team-a"])}"\n'
        'read = ["handbook"]\nwrite = []\n\n'
        f'[[keys]]\nname = "team-b"\nsha256 = "{key_hash(KEYS["team-b"])}"\n'
        'read = []\nwrite = ["wiki"]\n', encoding="utf-8")
    return path


@pytest.fixture
def two(tmp_path: Path) -> Iterator[dict[str, RAG]]:
    rags = {}
    for name, docs in (("handbook", THREE_DOCS), ("wiki", WIKI)):
        folder = write_docs(tmp_path / f"{name}-docs", docs)
        rags[name] = RAG.build(tmp_path / "served" / name, paths=[folder], encoder="hash",
                               config=CONCAT, generator=ScriptedGenerator(ANSWER))
    yield rags
    for rag in rags.values():
        rag.close()


@pytest.fixture
def keyed(two: dict[str, RAG], tmp_path: Path) -> Iterator[TestClient]:
    keys = KeyRing.load(_keys_file(tmp_path / "keys.toml"))
    with TestClient(create_app(two, ServerConfig(), api_key=KEYS["admin"], keys=keys)) as c:
        yield c


def _as(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def test_the_first_collection_is_the_default_and_each_is_reached_by_name(
        keyed: TestClient) -> None:
    admin = _as("admin")
    listed = keyed.get("/v1/collections", headers=admin).json()
    assert listed["default"] == "handbook"
    assert [(c["name"], c["documents"], c["writable"]) for c in listed["collections"]] == [
        ("handbook", 3, True), ("wiki", 2, True)]
    hits = keyed.get("/v1/search", params={"q": "capital of Germany", "k": 1},
                     headers=admin).json()
    assert hits["collection"] == "handbook" and hits["passages"][0]["name"] == "germany.txt"
    hits = keyed.get("/v1/search", params={"q": "Brandenburg Gate", "k": 1,
                                           "collection": "wiki"}, headers=admin).json()
    assert hits["collection"] == "wiki" and hits["passages"][0]["name"] == "gate.txt"
    r = keyed.post("/v1/ask", json={"question": "How tall is the Eiffel Tower?",
                                    "collection": "wiki", "k": 1}, headers=admin)
    assert r.json()["passages"][0]["name"] == "tower.txt"
    docs = keyed.get("/v1/documents", params={"collection": "wiki"}, headers=admin).json()
    assert {d["name"] for d in docs["documents"]} == set(WIKI)
    r = keyed.post("/v1/documents", params={"collection": "wiki"}, headers=admin,
                   files={"file": ("rome.txt", b"Rome is the capital of Italy.")})
    assert r.status_code == 201
    assert keyed.get("/v1/documents", headers=admin).json()["count"] == 3  # handbook unchanged
    ids = [m["id"] for m in keyed.get("/v1/models", headers=admin).json()["data"]]
    assert {"ragline/handbook", "ragline/wiki", "ragline/wiki/concat"} <= set(ids)


def test_a_key_never_sees_searches_or_changes_another_teams_collection(
        keyed: TestClient) -> None:
    a = _as("team-a")
    wiki_doc = keyed.get("/v1/documents", params={"collection": "wiki"},
                         headers=_as("admin")).json()["documents"][0]["id"]
    attempts = [
        ("GET", "/health", {"params": {"collection": "wiki"}}),
        ("GET", "/v1/search", {"params": {"q": "gate", "collection": "wiki"}}),
        ("POST", "/v1/ask", {"json": {"question": "How tall?", "collection": "wiki"}}),
        ("POST", "/v1/ask", {"json": {"question": "How tall?", "collection": "wiki",
                                      "stream": True}}),
        ("POST", "/v1/write", {"json": {"instruction": "the gate", "collection": "wiki"}}),
        ("GET", "/v1/documents", {"params": {"collection": "wiki"}}),
        ("POST", "/v1/documents", {"params": {"collection": "wiki"},
                                   "files": {"file": ("x.txt", b"planted")}}),
        ("DELETE", f"/v1/documents/{wiki_doc}", {"params": {"collection": "wiki"}}),
        ("POST", "/v1/chat/completions", {"json": {"model": "ragline/wiki", "messages": [
            {"role": "user", "content": "How tall?"}]}}),
        ("POST", "/v1/chat/completions", {"json": {"model": "ragline", "collection": "wiki",
                                                   "messages": [{"role": "user",
                                                                 "content": "How tall?"}]}}),
        ("POST", "/v1/embeddings", {"json": {"model": "ragline/wiki", "input": "gate"}}),
    ]
    for method, path, kwargs in attempts:
        r = keyed.request(method, path, headers=a, **kwargs)
        assert r.status_code in (403, 404), (path, r.status_code, r.text)
        assert "Brandenburg" not in r.text and "tower.txt" not in r.text and "gate" != r.text
    # a collection it may not read answers exactly as one that does not exist
    hidden = keyed.get("/v1/search", params={"q": "x", "collection": "wiki"}, headers=a)
    missing = keyed.get("/v1/search", params={"q": "x", "collection": "wikx"}, headers=a)
    assert hidden.json()["error"]["message"].replace("wiki", "?") == \
        missing.json()["error"]["message"].replace("wikx", "?")
    assert [c["name"] for c in keyed.get("/v1/collections", headers=a).json()["collections"]] \
        == ["handbook"]
    ids = [m["id"] for m in keyed.get("/v1/models", headers=a).json()["data"]]
    assert not any("wiki" in i for i in ids)
    # its own collection it may read, not change
    r = keyed.post("/v1/documents", headers=a, files={"file": ("x.txt", b"planted")})
    assert r.status_code == 403 and "may read collection 'handbook' but not change it" in r.text
    # nothing changed anywhere
    admin = _as("admin")
    assert keyed.get("/v1/documents", params={"collection": "wiki"}, headers=admin).json()[
        "count"] == 2
    assert keyed.get("/v1/documents", headers=admin).json()["count"] == 3


def test_a_key_that_cannot_read_the_default_gets_its_own_and_unknown_keys_get_nothing(
        keyed: TestClient) -> None:
    b = _as("team-b")
    docs = keyed.get("/v1/documents", headers=b).json()
    assert docs["collection"] == "wiki" and docs["count"] == 2
    r = keyed.post("/v1/documents", headers=b, files={"file": ("rome.txt", b"Rome is old.")})
    assert r.status_code == 201  # it may change wiki, its default
    assert keyed.get("/v1/search", params={"q": "France", "collection": "handbook"},
                     headers=b).status_code == 404
    # the translation memory goes with the default collection, which this key cannot read
    assert keyed.post("/v1/translate", json={"text": "x"}, headers=b).status_code == 404
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k-admin"}):
        r = keyed.get("/v1/collections", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized_error"
    assert keyed.get("/").status_code == 200  # the page itself holds no data


def test_mcp_tools_reach_only_the_keys_collections(two: dict[str, RAG], tmp_path: Path) -> None:
    keys = KeyRing.load(_keys_file(tmp_path / "keys.toml"))
    app = create_app(two, ServerConfig(), api_key=KEYS["admin"], keys=keys)

    async def work(c: Client) -> None:
        listed = (await c.call_tool("list_collections", {})).structured_content["result"]
        assert [x["name"] for x in listed] == ["handbook"]
        r = await c.call_tool("search", {"query": "gate", "collection": "wiki"})
        assert r.is_error and "no collection 'wiki'" in r.content[0].text
        r = await c.call_tool("add_documents", {"text": "planted", "name": "x.txt"})
        assert r.is_error and "may read collection 'handbook' but not change it" in \
            r.content[0].text
        names = {res.name for res in (await c.list_resources()).resources}
        assert names == set(THREE_DOCS)
        ok = await c.call_tool("search", {"query": "capital of Germany", "k": 1})
        assert ok.structured_content["result"][0]["name"] == "germany.txt"

    with live_server(app) as url:
        client = Client(streamable_http_client(
            url + "/mcp", http_client=httpx2.AsyncClient(headers=_as("team-a"))))

        async def go() -> None:
            async with client as c:
                await work(c)

        anyio.run(go)
    assert two["handbook"].index.counts()["documents"] == 3


def test_embeddings_through_the_openai_client(two: dict[str, RAG]) -> None:
    with live_server(create_app(two, ServerConfig())) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        texts = ["The Eiffel Tower is 330 metres tall.", "北京是中国的首都。"]
        got = client.embeddings.create(model="ragline/wiki", input=texts)  # base64 on the wire
        floats = client.embeddings.create(model="ragline/wiki", input=texts,
                                          encoding_format="float")
        want = two["wiki"].index.encoder.encode_passages(texts)
        for result in (got, floats):
            assert [d.index for d in result.data] == [0, 1]
            assert np.allclose(np.array([d.embedding for d in result.data]), want, atol=1e-6)
        assert got.model == two["wiki"].index.manifest.encoder.id
        query = client.embeddings.create(model="ragline", input="capital",
                                         extra_body={"input_type": "query"})
        assert len(query.data[0].embedding) == two["handbook"].index.manifest.encoder.dim
        raw = httpx.post(url + "/v1/embeddings", json={"input": "x", "encoding_format": "base64"})
        vec = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
        assert vec.shape == (two["handbook"].index.manifest.encoder.dim,)
        for body, message in [({"input": []}, "1 to 2,048 texts"),
                              ({"input": [[1, 2, 3]]}, "token arrays are not taken"),
                              ({"input": ""}, "1 to 32,000 characters"),
                              ({"input": "x" * 32_001}, "1 to 32,000 characters"),
                              ({"input": ["x"] * 2049}, "1 to 2,048 texts"),
                              ({"input": "x", "dimensions": 7}, "dimensions=7 cannot be had"),
                              ({"input": "x", "model": "gpt-4"}, "unknown model"),
                              ({"input": "x", "model": "ragline/nowhere"}, "unknown model")]:
            r = httpx.post(url + "/v1/embeddings", json=body)
            assert r.status_code in (400, 404) and message in r.json()["error"]["message"], r.text


def test_keys_files_are_checked_when_the_server_starts(two: dict[str, RAG],
                                                       tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    for text, message in [
        ('[[keys]]\nname = "x"\nsha256 = "abc"\nread = ["handbook"]\n', "64 hex digits"),
        (f'[[keys]]\nsha256 = "{"0" * 64}"\nread = ["handbok"]\n', "collection 'handbok'"),
        (f'[[keys]]\nsha256 = "{"0" * 64}"\nread = "handbook"\n', "list of collection names"),
        (f'[[keys]]\nsha256 = "{"0" * 64}"\nadmin = true\n', "name, sha256, read and write"),
        (f'[[keys]]\nsha256 = "{"0" * 64}"\n[[keys]]\nsha256 = "{"0" * 64}"\n', "twice"),
        ("keys = 3\n", "[[keys]] tables only"),
        ("not toml at all [", "not a valid TOML"),
    ]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            create_app(two, ServerConfig(), keys=KeyRing.load(bad))
    with pytest.raises(ConfigError, match="cannot read the keys file"):
        KeyRing.load(tmp_path / "missing.toml")


def test_ragline_keys_add_prints_a_key_once_and_keeps_its_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.toml"
    assert main(["keys", "add", str(path), "--name", "team-a", "--read", "handbook,wiki",
                 "--write", "wiki"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("rk-") and key not in path.read_text()
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert main(["keys", "add", str(path), "--name", "admin", "--read", "*"]) == 0
    ring = KeyRing.load(path)
    access = ring.find(key)
    assert access is not None and access.name == "team-a"
    assert access.can_read("handbook") and access.can_write("wiki")
    assert not access.can_write("handbook") and ring.find("rk-guess") is None
    capsys.readouterr()
    assert main(["keys", "list", str(path)]) == 0
    listed = capsys.readouterr().out
    assert "team-a" in listed and "admin" in listed and key not in listed
    for argv, message in [(["--name", "x"], "give --read and/or --write"),
                          (["--name", "x", "--read", "a,*"], "* stands alone"),
                          (["--name", "x\ny", "--read", "a"], "--name")]:
        assert main(["keys", "add", str(path), *argv]) == 2
        assert message in capsys.readouterr().err


def test_a_folder_of_indexes_is_served_by_their_names(two: dict[str, RAG], tmp_path: Path) -> None:
    served = tmp_path / "served"
    assert index_folders([served]) == [served / "handbook", served / "wiki"]
    assert index_folders([served / "wiki"]) == [served / "wiki"]
    assert collection_names([Path(".ragline-demo"), Path("concat"), Path("a b")]) == [
        "ragline-demo", "concat-index", "a-b"]
    with pytest.raises(ConfigError, match="two collections would be named 'wiki'"):
        collection_names([served / "wiki", tmp_path / "wiki"])


def test_the_page_picks_a_collection(two: dict[str, RAG], tmp_path: Path) -> None:
    from test_server_web import CHROMIUM_ARGS, chromium_path, sync_api

    path = chromium_path()
    with live_server(create_app(two, ServerConfig())) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#docs li.doc >> nth=2")
        assert page.is_visible("#collection") and page.input_value("#collection") == "handbook"
        page.fill("#question", "What is the capital of France?")
        page.click("#ask")
        page.wait_for_selector("#conversation .turn .citations li")
        page.select_option("#collection", "wiki")
        page.wait_for_function("document.querySelectorAll('#docs li.doc').length === 2")
        assert "gate.txt" in page.inner_text("#docs")
        assert page.locator("#conversation .turn").count() == 0  # wiki's own conversation
        page.fill("#k", "1")
        page.fill("#question", "Brandenburg Gate")
        with page.expect_request("**/v1/ask") as sent:
            page.click("#ask")
        assert sent.value.post_data_json["collection"] == "wiki"
        page.wait_for_selector("#conversation .turn .passages li", state="attached")
        assert "gate.txt" in (page.text_content("#conversation .turn .passages") or "")
        page.reload()
        page.wait_for_selector("#docs li.doc >> nth=1")
        assert page.input_value("#collection") == "wiki"
        page.select_option("#collection", "handbook")
        page.wait_for_selector("#conversation .turn")  # handbook's conversation is back
        assert "France" in page.inner_text("#conversation .turn .asked")
        if os.environ.get("RAGLINE_SCREENSHOT"):
            page.screenshot(path=os.environ["RAGLINE_SCREENSHOT"], full_page=True)
        browser.close()


def test_ragline_serve_a_folder_of_indexes_with_a_keys_file(two: dict[str, RAG],
                                                            tmp_path: Path) -> None:
    """The command as a team would run it: one folder of index folders, a keys file."""
    import subprocess
    import sys
    import time

    from conftest import REPO
    from serving import free_port

    keys = _keys_file(tmp_path / "keys.toml")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("RAGLINE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "ragline.cli", "-q", "serve",
                             str(tmp_path / "served"), "--keys", str(keys), "--port", str(port),
                             "--model", "concat", "--backend", "openai", "--base-url",
                             "http://127.0.0.1:9/v1", "--llm", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(url + "/v1/collections", headers=_as("team-a"), timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert [c["name"] for c in r.json()["collections"]] == ["handbook"]
        r = httpx.get(url + "/v1/documents", headers=_as("team-b"), timeout=5)
        assert r.json()["collection"] == "wiki"
        assert httpx.get(url + "/v1/collections", timeout=5).status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "as 'handbook' (default)" in out and "as 'wiki'" in out and "2 keys from" in out
