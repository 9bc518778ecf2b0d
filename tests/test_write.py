"""Grounded writing: `write` passes a text on sentence by sentence, each with the passages that
support it, leaves out what none supports, and refuses when nothing is left; the question task
writes a question for a given answer, cited to the passage that holds it. Scripted generators
over the hash encoder; the bundled models: tests/test_models.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragline import RAG
from ragline.cli import main
from ragline.config import ServerConfig
from ragline.errors import ConfigError
from ragline.generate.citations import SentenceGate, supports
from ragline.generate.tasks import QUESTION, TEXT
from ragline.server import create_app
from ragline.types import Answer, Hit, Passage

from conftest import ScriptedGenerator, write_docs

DOCS = {
    "tower.txt": "The tower was designed by the engineering firm of Gustave Eiffel. It was "
                 "completed in March 1889 for the World's Fair.",
    "height.txt": "The tower is 330 metres tall. It is painted in three shades of brown.",
    "wall.txt": "长城是中国古代的军事防御工程。它始建于春秋战国时期。",
}


def _hit(n: int, text: str) -> Hit:
    return Hit(Passage(f"p{n}", f"d{n}", text, "", 0, len(text), 0), 1.0 / n, n)


HITS = [_hit(1, DOCS["tower.txt"]), _hit(2, DOCS["height.txt"]), _hit(3, DOCS["wall.txt"])]


def _gate(text: str, by: int = 1) -> tuple[str, SentenceGate]:
    gate = SentenceGate(HITS)
    out = "".join(gate.feed(text[i:i + by]) for i in range(0, len(text), by)) + gate.finish()
    return out, gate


@pytest.mark.parametrize("by", [1, 7, 10_000])  # streamed a character at a time, or whole
def test_the_gate_cites_what_supports_each_sentence_and_drops_the_rest(by: int) -> None:
    out, gate = _gate("The tower was designed by Gustave Eiffel's firm [2]. It is 330 metres "
                      "tall. The tower is made of cheese [1]. It was completed in 1889 and is "
                      "painted in brown.", by)
    # a wrong marker is replaced by the passage that holds the sentence; one with none gets
    # it; the cheese is left out; a sentence from two passages cites both
    assert out == ("The tower was designed by Gustave Eiffel's firm [1]. It is 330 metres "
                   "tall [2]. It was completed in 1889 and is painted in brown [1][2].")
    assert gate.dropped == ["The tower is made of cheese."]
    assert sorted(gate.citations) == [1, 2]
    assert gate.citations[2].quote == "The tower is 330 metres tall."


def test_the_gate_reads_chinese_sentences() -> None:
    out, gate = _gate("长城是中国古代的军事防御工程[1]。它始建于春秋战国时期。月亮是奶酪做的。")
    assert out == "长城是中国古代的军事防御工程[3]。它始建于春秋战国时期[3]。"
    assert gate.dropped == ["月亮是奶酪做的。"]


@pytest.mark.parametrize("by", [1, 10_000])
def test_the_gate_leaves_out_copied_headings_and_a_cut_off_end(by: int) -> None:
    # what a small model writes when it copies a passage: its number and title, then the
    # text, wrapped; the token limit cuts the last sentence
    out, gate = _gate("[1] Tower\nTower\n\nThe tower was designed by the engineering firm "
                      "of\nGustave Eiffel. It is 330 metres tall. It is painted in three", by)
    assert out == ("The tower was designed by the engineering firm of Gustave Eiffel [1]. It "
                   "is 330 metres tall [2].")
    assert gate.dropped == []


def test_the_gate_leaves_out_what_states_nothing() -> None:
    out, gate = _gate("1 [1]. 2 [2]. It is 330 metres tall.")
    assert out == "It is 330 metres tall [2]." and gate.dropped == ["1.", "2."]


def test_the_judge_wants_most_of_the_sentence_in_the_passage() -> None:
    assert supports(DOCS["height.txt"], "The tower is 330 metres tall [2].")
    assert not supports(DOCS["height.txt"], "The tower is 330 metres tall and made of gold.")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "docs", DOCS)


def _rag(tmp_path: Path, docs: Path, reply: str) -> tuple[RAG, ScriptedGenerator]:
    gen = ScriptedGenerator(reply)
    return RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", generator=gen), gen


def test_write_streams_cited_sentences_and_reports_what_it_left_out(tmp_path: Path,
                                                                    docs: Path) -> None:
    rag, gen = _rag(tmp_path, docs, "The tower was designed by the engineering firm of "
                                     "Gustave Eiffel [1]. It was built by aliens. It is 330 "
                                     "metres tall [2].")
    with rag:
        pieces = list(rag.write_stream("Describe the tower", k=3))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and answer.answered and answer.task == "text"
    text = "".join(p for p in pieces[:-1] if isinstance(p, str))
    assert text == answer.text  # what streamed is the text, a sentence a piece
    assert len(pieces) == 3
    assert answer.dropped == ("It was built by aliens.",)
    for c in answer.citations:
        assert f"[{c.marker}]" in answer.text
    assert {c.passage.source.rsplit("/", 1)[-1] for c in answer.citations} == {"tower.txt",
                                                                                 "height.txt"}
    assert "Request: Describe the tower" in gen.prompts[0]  # the text task's prompt
    data = answer.to_dict()
    assert {"answer", "answered", "citations", "passages", "dropped", "task"} <= set(data)


@pytest.mark.parametrize(("reply", "reason"), [("I don't know.", "model_declined"),
                                                ("The moon is made of cheese.", "unsupported")])
def test_write_refuses_when_no_sentence_is_supported(tmp_path: Path, docs: Path, reply: str,
                                                     reason: str) -> None:
    rag, _ = _rag(tmp_path, docs, reply)
    with rag:
        answer = rag.write("Describe the tower", k=3)
    assert answer.refused and answer.reason == reason
    assert answer.text == TEXT.not_found["en"] and answer.citations == ()


def test_write_refuses_passages_that_hold_none_of_the_topic(tmp_path: Path,
                                                            docs: Path) -> None:
    rag, gen = _rag(tmp_path, docs, "The tower is 330 metres tall [1].")
    with rag:
        # the hash encoder finds "tower" passages; none says anything of the Roman Empire
        answer = rag.write("Write a short history of the tower of the Roman Empire", k=3)
        assert answer.refused and answer.reason == "off_topic" and gen.prompts == []
        assert rag.write("Write a short history of the tower", k=3).answered  # "history"
        # is a word of instructing, not a topic


def test_question_task_cites_the_passage_that_holds_the_answer(tmp_path: Path,
                                                               docs: Path) -> None:
    rag, gen = _rag(tmp_path, docs, "When was the tower completed?")
    with rag:
        answer = rag.write("the tower", task="question", answer="March 1889", k=3)
        assert answer.answered and answer.task == "question"
        assert answer.text == "When was the tower completed? [1]"
        assert "March 1889" in answer.citations[0].passage.text
        assert gen.prompts[-1].rstrip().endswith("Answer: March 1889\nQuestion:")
        # no passage holds the answer: refused before anything is generated
        asked = len(gen.prompts)
        missing = rag.write("the tower", task="question", answer="Napoleon Bonaparte", k=3)
        assert missing.refused and missing.reason == "answer_not_found"
        assert missing.text == QUESTION.not_found["en"] and len(gen.prompts) == asked


def test_task_arguments_are_checked_before_retrieval(hash_rag: RAG) -> None:
    with pytest.raises(ConfigError, match="needs the answer"):
        hash_rag.write("the tower", task="question")
    with pytest.raises(ConfigError, match="only to the question task"):
        hash_rag.write("the tower", answer="1889")
    with pytest.raises(ConfigError, match="unknown task"):
        hash_rag.write("the tower", task="poem")


def test_cli_write_prints_json_like_ask_and_one_line_errors(
        tmp_path: Path, docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    RAG.build(tmp_path / "idx", paths=[docs], encoder="hash").close()
    code = main(["write", str(tmp_path / "idx"), "the tower", "--answer", "1889"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--task question" in err
    code = main(["write", str(tmp_path / "idx"), "the tower", "--task", "question"])
    assert code == 2 and "--answer" in capsys.readouterr().err


def test_server_write_answers_and_streams(tmp_path: Path, docs: Path) -> None:
    rag, _ = _rag(tmp_path, docs, "It is 330 metres tall [2]. Aliens built it.")
    with rag, TestClient(create_app(rag, ServerConfig())) as client:
        r = client.post("/v1/write", json={"instruction": "How tall is the tower?", "k": 3})
        assert r.status_code == 200
        body = r.json()
        assert body["answered"] and body["dropped"] == ["Aliens built it."]
        assert body["citations"][0]["name"] == "height.txt"
        with client.stream("POST", "/v1/write", json={"instruction": "How tall is the tower?",
                                                      "stream": True}) as s:
            events = [line[7:] for line in s.iter_lines() if line.startswith("event: ")]
        assert events[0] == "passages" and events[-1] == "answer" and "token" in events
        bad = client.post("/v1/write", json={"instruction": "the tower", "task": "question"})
        assert bad.status_code == 400 and "--answer" in bad.json()["error"]["message"]
        assert client.post("/v1/write", json={"instruction": "x", "task": "poem"}
                           ).status_code in (400, 422)
