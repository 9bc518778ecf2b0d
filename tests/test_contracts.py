"""The shared contract of each protocol, run by every implementation of it (the dense index
kinds have theirs in test_dense_kinds.py): Encoder, Retriever, Generator, Reranker."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragline import RAG
from ragline.config import Config, RetrievalConfig
from ragline.encode import load_encoder
from ragline.encode.base import Encoder
from ragline.encode.batching import BatchingEncoder
from ragline.errors import ModelUnavailableError
from ragline.generate.base import GenerateOptions, Generation, Generator
from ragline.generate.openai_http import OpenAIGenerator
from ragline.generate.reader import PassageReader
from ragline.model.generators import RagModelGenerator
from ragline.model.rag_model import RagModel
from ragline.registry import MODELS, RETRIEVERS
from ragline.retrieve.rerank import QueryLikelihoodReranker, Reranker, load_reranker
from ragline.testing import ScriptedGenerator
from ragline.types import Hit, Passage

from toymodels import abc_lm

TEXTS = ["Paris is the capital of France.", "北京是中国的首都。", "Green tea leaves."]


# ---------------------------------------------------------------- Encoder


ENCODERS: dict[str, Callable[[], Encoder]] = {
    "hash": lambda: load_encoder("hash:64"),
    "minilm": lambda: load_encoder("minilm"),
    "use-multilingual": lambda: load_encoder("use-multilingual"),
    "batching(hash)": lambda: BatchingEncoder(load_encoder("hash:64")),
}


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_contract(name: str) -> None:
    enc = ENCODERS[name]()
    enc.load()
    enc.load()  # idempotent
    for vecs in (enc.encode_queries(TEXTS), enc.encode_passages(TEXTS)):
        assert vecs.shape == (3, enc.spec.dim) and vecs.dtype == np.float32
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)  # normalized
    again = enc.encode_queries(TEXTS[:1])
    assert np.allclose(again[0], enc.encode_queries(TEXTS)[0], atol=1e-5)  # one or in a batch
    q = enc.encode_queries(["What is the capital of France?"])[0]
    assert int(np.argmax(enc.encode_passages(TEXTS) @ q)) == 0  # the passage that answers


# ---------------------------------------------------------------- Retriever


@pytest.mark.parametrize("mode", RETRIEVERS.names)  # every registered mode runs it
def test_retriever_contract(mode: str, hash_rag: RAG) -> None:
    retriever = RETRIEVERS.create(mode, hash_rag.index.folder, RetrievalConfig())
    assert retriever.name == mode
    queries = ["capital of Germany Berlin", "北京", "nothing matches zzzz"]
    vectors = hash_rag.searcher.encode_queries(queries) if retriever.uses_vectors else None
    runs = retriever.retrieve(queries, vectors, 2)
    assert len(runs) == 3
    stored = set(range(1, 100))
    for run in runs:
        ids = [i for i, _ in run.ranked]
        scores = [s for _, s in run.ranked]
        assert len(ids) <= 2 and len(set(ids)) == len(ids) and set(ids) <= stored
        assert scores == sorted(scores, reverse=True)
    germany = hash_rag.index.folder.store.passages_by_rowid([runs[0].ranked[0][0]])
    assert next(iter(germany.values()))[0].source.endswith("germany.txt")
    if mode == "bm25":
        assert runs[2].ranked == []  # no shared term: nothing, never padding


# ---------------------------------------------------------------- Generator


def _hits(texts: list[str]) -> list[Hit]:
    return [Hit(Passage(f"p{i}", f"d{i}", t, "", 0, len(t), 0, "x.txt"), 1.0 / (i + 1), i + 1,
                dense_score=0.9 - 0.1 * i, prob=None) for i, t in enumerate(texts)]


class _FakeOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat completions endpoint that streams a fixed reply."""

    reply = "Paris [1]"
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"body": body, "auth": self.headers.get("Authorization")})
        if body.get("model") == "missing":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "no such model"}}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("", *self.reply.split(" ")):
            chunk = {"choices": [{"delta": {"content": piece + " " if piece else ""}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _generators(fake_openai: str) -> dict[str, Generator]:
    lm = abc_lm(seed=1)
    model = RagModel(lm, max_passage_tokens=16, max_new_tokens=3)
    return {
        "scripted": ScriptedGenerator("Paris [1]"),
        "per-passage": PassageReader(ScriptedGenerator("Paris [1]")),
        "openai": OpenAIGenerator(fake_openai, "tiny"),
        "rag-token": RagModelGenerator("rag-token", Config(), lambda: model),
        "rag-sequence": RagModelGenerator("rag-sequence", Config(), lambda: model),
    }


@pytest.mark.parametrize("name", ["scripted", "per-passage", "openai", "rag-token",
                                  "rag-sequence"])
def test_generator_contract(name: str, fake_openai: str) -> None:
    gen = _generators(fake_openai)[name]
    assert isinstance(gen, Generator)
    gen.load()
    gen.load()
    hits = _hits(["abc cab", "bca"])
    items = list(gen.generate("abc?", hits, GenerateOptions(max_tokens=8, beams=2)))
    *pieces, last = items
    assert isinstance(last, Generation) and all(isinstance(p, str) for p in pieces)
    if gen.streams:
        assert "".join(pieces) == last.text and last.posterior is None
    else:  # a refusal may come with no text at all
        assert pieces == [last.text] or (pieces == [] and last.text == "")
    if last.posterior is not None:
        assert len(last.posterior) == len(hits) and sum(last.posterior) == pytest.approx(1.0)


def test_every_registered_model_has_a_generator_in_the_contract() -> None:
    assert {"per-passage", "concat", "rag-token", "rag-sequence"} == set(MODELS.names)


def test_openai_generator_against_a_local_server(fake_openai: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "s3cret")
    _FakeOpenAI.seen.clear()
    gen = OpenAIGenerator(fake_openai, "tiny", api_key_env="TEST_KEY")
    pieces = list(gen.stream("prompt", max_tokens=5, stop=["\n\n", "a", "b", "c", "d", "e"]))
    assert "".join(pieces).strip() == "Paris [1]"
    request = _FakeOpenAI.seen[-1]
    assert request["auth"] == "Bearer s3cret"
    assert request["body"]["max_tokens"] == 5 and request["body"]["stream"] is True
    assert len(request["body"]["stop"]) == 4  # the API takes at most four
    assert request["body"]["messages"] == [{"role": "user", "content": "prompt"}]
    with pytest.raises(ModelUnavailableError, match="HTTP 404"):
        list(OpenAIGenerator(fake_openai, "missing").stream("p"))
    with pytest.raises(ModelUnavailableError, match="cannot connect"):
        list(OpenAIGenerator("http://127.0.0.1:9/v1", "tiny", timeout=5).stream("p"))


def test_a_rag_answer_through_the_openai_backend(hash_rag: RAG, fake_openai: str) -> None:
    from dataclasses import replace

    cfg = Config()
    cfg = replace(cfg, generation=replace(cfg.generation, backend="openai", base_url=fake_openai,
                                          model="tiny"))
    with RAG.open(hash_rag.index.path, config=cfg) as rag:
        answer = rag.ask("What is the capital of France?", mode="bm25", model="concat")
        assert answer.answered and answer.text.startswith("Paris")
        assert answer.citations[0].passage.source.endswith("france.txt")
        # the default reader judges its answers by the model's token probabilities, which
        # a chat endpoint does not give: it says so, and what to use instead
        with pytest.raises(ModelUnavailableError, match="--model concat"):
            rag.ask("What is the capital of France?", mode="bm25")


# ---------------------------------------------------------------- Reranker


class _WordReranker:
    name = "word"

    def score(self, query: str, passages: list[Passage]) -> np.ndarray:
        return np.array([float(sum(w in p.text for w in query.split())) for p in passages])


def _cross_encoder(tmp_path: Path) -> Reranker:
    from ragline.retrieve.rerank import load_reranker
    from test_rerank import _tiny_cross_encoder

    return load_reranker(f"cross-encoder:{_tiny_cross_encoder(tmp_path / 'ce')}")


RERANKERS: dict[str, Callable[[Path], Reranker]] = {
    "word": lambda _: _WordReranker(),
    "query-likelihood": lambda _: QueryLikelihoodReranker(abc_lm(seed=2), batch_size=2),
    "cross-encoder": _cross_encoder,
    "llm-judge": lambda _: load_reranker("llm-judge"),   # the default answer model
}


@pytest.mark.parametrize("name", RERANKERS)
def test_reranker_contract(name: str, tmp_path: Path) -> None:
    rr = RERANKERS[name](tmp_path)
    passages = [Passage(t, t, t, "", 0, len(t), 0) for t in ("abc paris", "cab", "bbb france")]
    scores = rr.score("abc paris france", passages)
    assert isinstance(scores, np.ndarray) and scores.shape == (3,)
    assert np.all(np.isfinite(scores))
    assert rr.score("abc paris france", []).shape == (0,)
    # a passage's score does not depend on its neighbours or its position
    alone = [float(rr.score("abc paris france", [p])[0]) for p in passages]
    assert np.allclose(alone, scores, atol=1e-4)
    assert np.allclose(rr.score("abc paris france", passages[::-1])[::-1], scores, atol=1e-4)


class _Whole:
    """A generator that does not stream: its whole text, then its Generation."""

    id = "whole"
    streams = False

    def __init__(self, text: str, posterior: tuple[float, ...] | None = None) -> None:
        self.text, self.posterior = text, posterior

    def load(self) -> None:
        pass

    def generate(self, question: str, hits: Any, options: GenerateOptions) -> Iterator[Any]:
        yield self.text
        yield Generation(self.text, self.posterior)


@pytest.mark.parametrize("generator, model", [
    (ScriptedGenerator("Paris is the capital [1]."), "concat"),
    (_Whole("Paris is the capital [1]."), "concat"),
    (_Whole("Paris is the capital.", (0.9, 0.05, 0.05)), "concat"),
    (ScriptedGenerator("Paris is the capital."), "per-passage")],
    ids=["streams markers", "whole text with markers", "posterior", "read from one passage"])
def test_the_answerer_cites_for_any_generator_of_the_contract(hash_rag: RAG, generator: Any,
                                                              model: str) -> None:
    from ragline.answer import Answerer

    answerer = Answerer(hash_rag.searcher, hash_rag.config, generator=generator)
    pieces = list(answerer.answer(answerer.prepare("capital of France Paris", k=3, mode="bm25",
                                                   model=model)))
    *text, answer = pieces
    assert answer.answered and answer.text.startswith("Paris is the capital")
    assert "".join(text).strip() == answer.text and "[1]" in answer.text
    assert [c.marker for c in answer.citations] == [1]
    assert answer.citations[0].passage.source.endswith("france.txt")
