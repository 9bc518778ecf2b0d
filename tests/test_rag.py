from pathlib import Path

import pytest

from ragline import RAG, Answer
from ragline.config import Config, GenerationConfig, load_config
from ragline.errors import ConfigError
from ragline.generate.prompts import NOT_FOUND

from conftest import CONCAT, ScriptedGenerator


def _rag(path: Path, reply: str) -> tuple[RAG, ScriptedGenerator]:
    """Over concat, whose prompt numbers the passages (the default model reads them one at
    a time: tests/test_reader.py)."""
    gen = ScriptedGenerator(reply)
    return RAG.open(path, config=CONCAT, generator=gen), gen


def test_ask_conditions_on_numbered_passages_and_cites_them(hash_rag: RAG) -> None:
    rag, gen = _rag(hash_rag.index.folder.path, "Berlin is the capital of Germany.")
    answer = rag.ask("What is the capital of Germany?", k=2)
    prompt = gen.prompts[0]
    assert "[1]" in prompt and "[2]" in prompt and "Question: What is the capital" in prompt
    assert answer.answered
    assert answer.text == "Berlin is the capital of Germany. [1]"
    [c] = answer.citations
    assert c.passage.source.endswith("germany.txt") and c.passage == answer.hits[0].passage
    assert c.quote == "Berlin is the capital of Germany."
    assert c.prob == answer.hits[0].prob


def test_streamed_pieces_add_up_to_the_answer(hash_rag: RAG) -> None:
    rag, _ = _rag(hash_rag.index.folder.path, "Paris [1].")
    pieces = list(rag.ask_stream("capital of France?", k=2))
    final = pieces[-1]
    assert isinstance(final, Answer)
    assert "".join(p for p in pieces[:-1] if isinstance(p, str)).strip() == final.text


def test_refusal_is_reported_as_not_found(hash_rag: RAG) -> None:
    rag, _ = _rag(hash_rag.index.folder.path, "I don't know.")
    answer = rag.ask("Who painted the Mona Lisa?")
    assert not answer.answered and answer.text == NOT_FOUND and answer.citations == ()
    assert len(answer.hits) == 3  # what was retrieved stays visible


def test_answer_not_backed_by_passages_is_not_presented_as_an_answer(hash_rag: RAG) -> None:
    rag, _ = _rag(hash_rag.index.folder.path, "Leonardo da Vinci painted it in Florence.")
    answer = rag.ask("Who painted the Mona Lisa?")
    assert not answer.answered and answer.text == NOT_FOUND


def test_bad_k_fails_before_generating(hash_rag: RAG) -> None:
    rag, gen = _rag(hash_rag.index.folder.path, "x")
    with pytest.raises(ConfigError):
        rag.ask("q", k=0)
    assert gen.prompts == []


def test_answer_to_dict_is_json_ready(hash_rag: RAG) -> None:
    import json

    rag, _ = _rag(hash_rag.index.folder.path, "Paris is the capital of France.")
    d = rag.ask("capital of France?").to_dict()
    json.dumps(d)
    assert d["citations"][0]["source"].endswith("france.txt")
    assert d["citations"][0]["quote"] in d["passages"][0]["text"]


def test_config_file(tmp_path: Path) -> None:
    p = tmp_path / "ragline.toml"
    p.write_text('[retrieval]\nk = 3\nmode = "bm25"\n[generation]\nmax_tokens = 64\n')
    cfg = load_config(p)
    assert cfg.retrieval.k == 3 and cfg.retrieval.mode == "bm25"
    assert cfg.generation.max_tokens == 64 and cfg.index.chunk_words == 100
    p.write_text("[retrieval]\nkk = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(p)
    p.write_text("[retrieval\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)
    for bad, match in (("min_confidence = 1.5", r"min_confidence must be in \[0, 1\]"),
                       ("min_grounding = 0.3", "min_confidence instead"),
                       ("passage_tokens = 0", "passage_tokens must be an integer"),
                       ('model = "qwen2.5-1.5b"\nchat = true', None)):
        p.write_text(f"[generation]\n{bad}\n")
        if match is None:
            assert load_config(p).generation.chat is True
            continue
        with pytest.raises(ConfigError, match=match):
            load_config(p)


def test_openai_backend_needs_url_and_model(hash_rag: RAG) -> None:
    rag = RAG.open(hash_rag.index.folder.path,
                   config=Config(generation=GenerationConfig(backend="openai")))
    with pytest.raises(ConfigError, match="base_url"):
        rag.ask("capital of France?")
