"""The official `openai` client, unchanged, against a running ragline server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from ragline import RAG
from ragline.config import ServerConfig
from ragline.server import create_app

from conftest import CONCAT, REPO, THREE_DOCS, ScriptedGenerator, write_docs
from serving import BrokenGenerator, GatedGenerator, live_server

ANSWER = "Paris is the capital of France."
QUESTION = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is the Brandenburg Gate?"},
            {"role": "assistant", "content": "In Berlin."},
            {"role": "user", "content": "What is the capital of France?"}]


def serve(tmp_path: Path, generator: object, api_key: str | None = None,
          **server: object) -> Iterator[str]:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", generator=generator,
                    config=CONCAT)  # concat streams (the default model answers once sure)
    with live_server(create_app(rag, ServerConfig(**server), api_key=api_key)) as url:  # type: ignore[arg-type]
        yield url + "/v1"
    rag.close()


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    yield from serve(tmp_path, ScriptedGenerator(ANSWER))


def client(base_url: str, key: str = "unused", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=retries, timeout=30)


def test_models_are_listed(base_url: str) -> None:
    ids = [m.id for m in client(base_url).models.list()]
    assert ids[:5] == ["ragline", "ragline/per-passage", "ragline/concat", "ragline/rag-token",
                       "ragline/rag-sequence"]
    assert ids[5:7] == ["ragline/idx", "ragline/idx/per-passage"]  # the collection, by folder


def test_chat_completion_answers_the_last_user_message_with_citations(base_url: str) -> None:
    r = client(base_url).chat.completions.create(model="ragline", messages=QUESTION)  # type: ignore[arg-type]
    assert r.object == "chat.completion" and r.model == "ragline"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == ANSWER + " [1]"
    assert r.choices[0].finish_reason == "stop"
    extra = r.model_extra or {}
    [c] = extra["citations"]  # the documented extra field
    assert c["marker"] == 1 and c["name"] == "france.txt" and c["quote"] == ANSWER
    assert c["text"] == THREE_DOCS["france.txt"]
    assert extra["ragline"]["answered"] is True
    assert extra["ragline"]["passages"][0]["name"] == "france.txt"


def test_streaming_chat_completion_adds_up_and_ends_with_citations(base_url: str) -> None:
    stream = client(base_url).chat.completions.create(model="ragline/concat", messages=QUESTION,  # type: ignore[arg-type]
                                                      stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text.strip() == ANSWER + " [1]"
    assert len(chunks) > 10  # it streamed, piece by piece
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert (last.model_extra or {})["citations"][0]["name"] == "france.txt"
    assert all(ch.id == chunks[0].id for ch in chunks)


def test_ragline_extras_ride_in_extra_body(base_url: str) -> None:
    r = client(base_url).chat.completions.create(
        model="ragline", messages=QUESTION[-1:], extra_body={"k": 1, "mode": "bm25"})  # type: ignore[list-item]
    assert len((r.model_extra or {})["ragline"]["passages"]) == 1


def test_client_errors_are_the_clients_own_exceptions(base_url: str) -> None:
    c = client(base_url)
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        c.chat.completions.create(model="gpt-4o", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="no user message"):
        c.chat.completions.create(model="ragline",
                                  messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        c.chat.completions.create(model="ragline", messages=QUESTION, n=2)  # type: ignore[arg-type]


def test_an_api_key_is_checked_by_the_client_too(tmp_path: Path) -> None:
    for url in serve(tmp_path, ScriptedGenerator(ANSWER), api_key="k-123"):
        with pytest.raises(openai.AuthenticationError):
            client(url, key="wrong").models.list()
        r = client(url, key="k-123").chat.completions.create(model="ragline", messages=QUESTION)  # type: ignore[arg-type]
        assert r.choices[0].message.content == ANSWER + " [1]"


def test_a_failure_mid_stream_raises_in_the_client(tmp_path: Path) -> None:
    for url in serve(tmp_path, BrokenGenerator()):
        stream = client(url).chat.completions.create(model="ragline", messages=QUESTION,  # type: ignore[arg-type]
                                                     stream=True)
        with pytest.raises(openai.APIError, match="internal error"):
            list(stream)


def test_a_stream_past_its_time_limit_raises_and_shows_what_came_before(tmp_path: Path) -> None:
    for url in serve(tmp_path, GatedGenerator("y" * 100, delay=0.05), timeout_s=0.5):
        seen = []
        with pytest.raises(openai.APIError, match="longer than"):
            for ch in client(url).chat.completions.create(model="ragline", messages=QUESTION,  # type: ignore[arg-type]
                                                          stream=True):
                seen.append(ch.choices[0].delta.content or "")
        assert "y" in "".join(seen)


@pytest.mark.model
def test_openai_client_gets_a_cited_answer_from_the_bundled_models(tmp_path: Path) -> None:
    """The real thing: MiniLM retrieval and Gemma 3 270M (llama.cpp) over the bundled docs."""
    pytest.importorskip("llama_cpp")
    rag = RAG.build(tmp_path / "idx", paths=[REPO / "examples" / "docs"])
    with live_server(create_app(rag, ServerConfig())) as url:
        c = client(url + "/v1")
        r = c.chat.completions.create(model="ragline", messages=[
            {"role": "user", "content": "When was the Eiffel Tower completed?"}])
        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="ragline", stream=True, messages=[
                {"role": "user", "content": "When was the Eiffel Tower completed?"}]))
    rag.close()
    assert "1889" in (r.choices[0].message.content or "")
    assert "1889" in text
    names = [c["name"] for c in (r.model_extra or {})["citations"]]
    assert names and set(names) == {"eiffel-tower.md"}


def test_a_followup_through_the_openai_client_is_about_the_conversation(tmp_path: Path) -> None:
    """Earlier turns (a system message, a question, a cited answer) make "How tall is it?"
    a question about the Eiffel Tower, streamed or not."""
    docs = write_docs(tmp_path / "towers", {
        "eiffel.txt": "The Eiffel Tower in Paris is 330 metres tall. It was completed in 1889.",
        "it.txt": "How is it? It is what it is, people say of it."})

    def reply(prompt: str) -> str:
        return "the Eiffel Tower" if prompt.endswith('"it" means:') else "330 metres"

    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", config=CONCAT,
                    generator=ScriptedGenerator(reply))
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "When was the Eiffel Tower completed?"},
                {"role": "assistant", "content": "In 1889 [1]."},
                {"role": "user", "content": "How tall is it?"}]
    with live_server(create_app(rag, ServerConfig())) as url:  # type: ignore[arg-type]
        c = client(url + "/v1")
        r = c.chat.completions.create(model="ragline", messages=messages, extra_body={"k": 1})  # type: ignore[arg-type]
        extra = (r.model_extra or {})["ragline"]
        assert extra["standalone_question"] == "How tall is the Eiffel Tower?"
        assert extra["passages"][0]["source"] == "eiffel.txt"
        assert r.choices[0].message.content.startswith("330 metres")  # type: ignore[union-attr]
        chunks = list(c.chat.completions.create(model="ragline", messages=messages, stream=True,  # type: ignore[call-overload]
                                                extra_body={"k": 1}))
        last = chunks[-1].model_extra["ragline"]
        assert last["standalone_question"] == "How tall is the Eiffel Tower?"
    rag.close()
