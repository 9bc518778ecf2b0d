"""The index over MCP, driven by the official SDK's own client: over streamable HTTP at /mcp
of a running server (hash encoder, scripted model), over stdio from `ragline mcp` as an agent
launches it, and, marked, the real models answering through the ask tool."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ragline import RAG
from ragline.config import ServerConfig
from ragline.server import create_app

from conftest import CONCAT, REPO, THREE_DOCS, ScriptedGenerator, write_docs
from serving import live_server

ANSWER = "Paris is the capital of France."
READS = {"search", "ask", "list_documents", "get_passage", "list_collections"}
WRITES = {"add_documents", "remove_document"}


def _run(client: Client, work: Callable[[Client], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with client as c:
            return await work(c)
    return anyio.run(go)


def _http(url: str, key: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(streamable_http_client(url + "/mcp",
                                         http_client=httpx2.AsyncClient(headers=headers,
                                                                        timeout=60)))


def _data(result: Any) -> Any:
    """A tool's structured result (a list comes wrapped as {"result": [...]})."""
    assert not result.is_error, result.content
    data = result.structured_content
    return data["result"] if set(data) == {"result"} else data


def _error(result: Any) -> str:
    assert result.is_error
    [content] = result.content
    return str(content.text)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A server over three documents, MCP allowed to read `allowed/` only."""
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "rome.md").write_text("# Rome\n\nRome is the capital of Italy.", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("the password is swordfish", encoding="utf-8")
    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", config=CONCAT,
                    generator=ScriptedGenerator(ANSWER))
    with live_server(create_app(rag, ServerConfig(allow_paths=(str(allowed),)))) as url:
        yield url, allowed, tmp_path
    rag.close()


def test_an_agent_searches_asks_reads_adds_and_removes_over_http(
        served: tuple[str, Path, Path]) -> None:
    url, allowed, tmp_path = served

    async def work(c: Client) -> None:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == READS | WRITES
        schema = tools["search"].input_schema
        assert schema["required"] == ["query"]
        assert schema["properties"]["k"]["maximum"] == 100
        assert set(schema["properties"]["mode"]["anyOf"][0]["enum"]) == {
            "dense", "bm25", "hybrid", "weighted"}
        assert tools["search"].annotations.read_only_hint is True
        assert tools["remove_document"].annotations.destructive_hint is True
        assert "refuses" in (tools["ask"].description or "")

        hits = _data(await c.call_tool("search", {"query": "capital of Germany", "k": 2}))
        assert hits[0]["name"] == "germany.txt" and "Berlin" in hits[0]["text"]
        assert hits[0]["source"] == "germany.txt"  # never the server's own path
        assert not hits[0]["source"].startswith("/")

        answer = _data(await c.call_tool("ask", {"question": "What is the capital of France?"}))
        assert answer["answered"] and answer["answer"].startswith(ANSWER)
        assert answer["citations"][0]["name"] == "france.txt"
        assert answer["citations"][0]["quote"] == ANSWER

        window = _data(await c.call_tool("get_passage", {"passage_id": hits[0]["passage_id"],
                                                         "neighbours": 2}))
        assert window["passage"]["text"] == THREE_DOCS["germany.txt"] and window["before"] == []

        docs = _data(await c.call_tool("list_documents", {}))
        assert {d["name"] for d in docs} == set(THREE_DOCS)
        resources = (await c.list_resources()).resources
        assert {r.name for r in resources} == set(THREE_DOCS)
        china = next(r for r in resources if r.name == "china.txt")
        read = await c.read_resource(str(china.uri))
        assert read.contents[0].text == THREE_DOCS["china.txt"]

        added = _data(await c.call_tool("add_documents", {"paths": [str(allowed)]}))
        assert [d["name"] for d in added["added"]] == ["rome.md"] and added["passages"] == 1
        again = _data(await c.call_tool("add_documents", {"paths": [str(allowed / "rome.md")]}))
        assert again["added"] == [] and len(again["unchanged"]) == 1
        note = _data(await c.call_tool("add_documents", {"text": "Madrid is the capital of Spain.",
                                                         "name": "spain.txt"}))
        [spain] = note["added"]
        hits = _data(await c.call_tool("search", {"query": "capital of Spain", "k": 1}))
        assert hits[0]["doc_id"] == spain["id"]

        gone = _data(await c.call_tool("remove_document", {"doc_id": spain["id"]}))
        assert gone["deleted"] == [spain["id"]]
        names = {d["name"] for d in _data(await c.call_tool("list_documents", {}))}
        assert names == set(THREE_DOCS) | {"rome.md"}

    _run(_http(url), work)


def test_bad_arguments_are_tool_errors_that_change_nothing(
        served: tuple[str, Path, Path]) -> None:
    url, allowed, tmp_path = served

    async def work(c: Client) -> None:
        before = _data(await c.call_tool("list_documents", {}))
        for name, args, message in [
            ("search", {"query": "x", "k": 0}, "k"),
            ("search", {"query": "x", "k": "many"}, "k"),
            ("search", {"k": 3}, "query"),
            ("search", {"query": "   "}, "the query is empty"),
            ("search", {"query": "x", "mode": "psychic"}, "mode"),
            ("ask", {"question": "x" * 5000}, "the question has 5,000 characters"),
            ("ask", {"question": "How tall is it?",
                     "history": [{"role": "wizard", "content": "x"}]}, "role"),
            ("get_passage", {"passage_id": "nope"}, "no passage 'nope' in the index"),
            ("get_passage", {"passage_id": "x", "neighbours": 99}, "neighbours"),
            ("add_documents", {}, "give either paths or text"),
            ("add_documents", {"paths": ["a"], "text": "b"}, "give either paths or text"),
            ("add_documents", {"paths": [str(tmp_path / "secret.txt")]},
             "outside the folders this server may read"),
            ("add_documents", {"paths": [str(allowed / ".." / "secret.txt")]},
             "outside the folders this server may read"),
            ("add_documents", {"paths": [str(allowed / "missing.md")]}, "no such file"),
            ("add_documents", {"paths": ["/etc/passwd\x00"]}, "NUL"),
            ("add_documents", {"text": "", "name": "empty.txt"}, "the file is empty"),
            ("add_documents", {"text": "x", "name": "tool.exe"}, "no loader for '.exe'"),
            ("remove_document", {"doc_id": "no-such-doc"}, "no document 'no-such-doc'"),
            ("no_such_tool", {}, "no_such_tool"),
        ]:
            result = await c.call_tool(name, args)
            text = _error(result)
            assert message in text, (name, args, text)
            assert "\n" not in text.strip() and "Traceback" not in text, text
        after = _data(await c.call_tool("list_documents", {}))
        assert after == before

    _run(_http(url), work)
    assert not (tmp_path / "idx" / "uploads" / "secret.txt").exists()


def test_mcp_is_behind_the_api_key_and_a_read_only_server_offers_no_writes(
        tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", config=CONCAT,
                    generator=ScriptedGenerator(ANSWER))
    app = create_app(rag, ServerConfig(read_only=True), api_key="k-42")
    with live_server(app) as url:
        r = httpx2.post(url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"Accept": "application/json, text/event-stream"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized_error"

        async def work(c: Client) -> set[str]:
            return {t.name for t in (await c.list_tools()).tools}

        assert _run(_http(url, "k-42"), work) == READS
        # the HTTP writes are closed too
        r = httpx2.post(url + "/v1/documents", files={"file": ("a.txt", b"hello")},
                        headers={"Authorization": "Bearer k-42"})
        assert r.status_code == 403 and "read-only" in r.json()["error"]["message"]
    rag.close()


def _stdio(index: Path, *args: str) -> Client:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return Client(StdioServerParameters(command=sys.executable,
                                        args=["-m", "ragline.cli", "-q", "mcp", str(index), *args],
                                        env=env))


def test_ragline_mcp_on_stdio_as_an_agent_launches_it(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    RAG.build(tmp_path / "idx", paths=[docs], encoder="hash").close()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "rome.md").write_text("Rome is the capital of Italy.", encoding="utf-8")

    async def work(c: Client) -> None:
        assert c.server_info is not None and c.server_info.name == "ragline"
        hits = _data(await c.call_tool("search", {"query": "Brandenburg Gate", "k": 1}))
        assert hits[0]["name"] == "germany.txt"
        added = _data(await c.call_tool("add_documents", {"paths": [str(tmp_path / "notes")]}))
        assert [d["name"] for d in added["added"]] == ["rome.md"]
        hits = _data(await c.call_tool("search", {"query": "capital of Italy", "k": 1}))
        assert hits[0]["name"] == "rome.md"
        removed = _data(await c.call_tool("remove_document", {"doc_id": hits[0]["doc_id"]}))
        assert removed["deleted"] == [hits[0]["doc_id"]]
        hits = _data(await c.call_tool("search", {"query": "capital of Italy", "k": 3}))
        assert "rome.md" not in {h["name"] for h in hits}

    _run(_stdio(tmp_path / "idx", "--allow-path", str(tmp_path / "notes")), work)

    async def tools(c: Client) -> set[str]:
        return {t.name for t in (await c.list_tools()).tools}

    assert WRITES.isdisjoint(_run(_stdio(tmp_path / "idx", "--read-only"), tools))


@pytest.mark.model
def test_the_ask_tool_answers_a_followup_with_the_real_models(tmp_path: Path) -> None:
    from ragline.cli import main

    assert main(["-q", "index", str(REPO / "examples" / "docs"), "--index",
                 str(tmp_path / "idx")]) == 0

    async def work(c: Client) -> tuple[Any, Any]:
        first = _data(await c.call_tool("ask", {"question": "When was the Eiffel Tower completed?"}))
        history = [{"role": "user", "content": "When was the Eiffel Tower completed?"},
                   {"role": "assistant", "content": first["answer"]}]
        second = _data(await c.call_tool("ask", {"question": "How tall is it?",
                                                 "history": history}))
        return first, second

    first, second = _run(_stdio(tmp_path / "idx"), work)
    assert "1889" in first["answer"] and first["citations"][0]["name"] == "eiffel-tower.md"
    assert "Eiffel" in second["standalone_question"] and "330" in second["answer"], \
        json.dumps(second, ensure_ascii=False)
