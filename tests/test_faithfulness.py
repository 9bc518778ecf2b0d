"""`ragline eval faithfulness`: refusals when the passages are taken out, citations that back
their sentences, answers no passage supports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ragline import RAG
from ragline.cli import main
from ragline.eval.faithfulness import cited_sentences, evaluate_faithfulness, supports
from ragline.generate.prompted import PromptGenerator
from ragline.qa import QAExample

from conftest import CONCAT, write_docs

DOCS = {
    "paris.txt": "The Eiffel Tower was completed in 1889. It stands in Paris.",
    "tea.txt": "Green tea is made from the leaves of Camellia sinensis.",
    "ocean.txt": "The Pacific is the deepest ocean. Its deepest point is the Challenger Deep.",
}
QUESTIONS = [QAExample("1", "When was the Eiffel Tower completed?", ("1889",)),
             QAExample("2", "What plant gives green tea its leaves?", ("Camellia sinensis",)),
             QAExample("3", "Which ocean is the deepest?", ("The Pacific",))]


class Oracle(PromptGenerator):
    """Answers from the prompt's passages when one holds the answer, citing it (or, with
    `cite`, always that passage number); says "I don't know." otherwise."""

    id = "oracle"

    def __init__(self, cite: int | None = None, always: str | None = None) -> None:
        self.cite, self.always = cite, always

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        if self.always is not None:
            yield self.always
            return
        question = prompt.rsplit("Question:", 1)[1]
        gold = next(q.answers[0] for q in QUESTIONS if q.question in question)
        for n, body in re.findall(r"\[(\d+)\]\n(.*?)(?=\n\n|$)", prompt, re.S):
            if gold in body:
                yield f"{gold} [{self.cite or n}]."
                return
        yield "I don't know."


@pytest.fixture
def built(tmp_path: Path) -> Path:
    RAG.build(tmp_path / "idx", paths=[write_docs(tmp_path / "docs", DOCS)],
              encoder="hash").close()
    return tmp_path / "idx"


def test_a_faithful_generator_answers_refuses_and_cites_right(built: Path) -> None:
    with RAG.open(built, config=CONCAT, generator=Oracle()) as rag:
        report = evaluate_faithfulness(rag, QUESTIONS, k=2, mode="dense")
    assert report.answered_answerable == 1.0 and report.refused_unanswerable == 1.0
    assert report.em == 1.0 and report.citation_precision == 1.0
    assert report.citation_recall == 1.0 and report.unsupported == 0.0
    assert report.refusal_reasons == {"model_declined": 3}
    assert all(r["negative_reason"] == "model_declined" for r in report.rows)


def test_wrong_citations_and_invented_answers_are_counted(built: Path) -> None:
    with RAG.open(built, config=CONCAT, generator=Oracle(cite=2)) as rag:  # right answer, wrong passage
        report = evaluate_faithfulness(rag, QUESTIONS, k=2, mode="dense")
    # the marker is moved to the passage that supports the answer (ragline.generate.citations)
    assert report.citation_precision == 1.0 and report.answered_answerable == 1.0
    # an answer none of whose words the passages hold is refused as unsupported, never shown
    with RAG.open(built, config=CONCAT, generator=Oracle(always="Mount Everest [1].")) as rag:
        report = evaluate_faithfulness(rag, QUESTIONS, k=2, mode="dense")
    assert report.answered_answerable == 0.0 and report.refused_unanswerable == 1.0
    assert report.refusal_reasons == {"unsupported": 6} and report.unsupported is None
    # half its words are in a passage ("Eiffel"): shown, and counted as unsupported
    with RAG.open(built, config=CONCAT, generator=Oracle(always="Gustave Eiffel [1].")) as rag:
        report = evaluate_faithfulness(rag, QUESTIONS, k=2, mode="dense")
    assert report.answered_answerable > 0 and report.unsupported == 1.0


def test_the_judge_and_the_sentence_split() -> None:
    passage = "The Eiffel Tower was completed in 1889 for the World's Fair."
    assert supports(passage, "1889 [1]") and supports(passage, "completed in 1889.")
    assert not supports(passage, "1887") and not supports(passage, "Gustave Eiffel built it")
    assert cited_sentences("In 1889 [1]. It is in Paris. [2][3]") == [
        ("In 1889 [1].", [1]), ("It is in Paris.", [2, 3])]


def test_cli_reports_faithfulness(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q.question, "answers": list(q.answers)})
                            + "\n" for q in QUESTIONS))
    out = tmp_path / "rows.jsonl"
    monkeypatch.setattr("ragline.generate.prompted.concat_generator", lambda *a: Oracle())
    assert main(["-q", "eval", "faithfulness", str(built), "--data", str(data), "--mode",
                 "bm25", "-k", "2", "--json", "--out", str(out), "--model", "concat"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["refused_unanswerable"] == 1.0 and report["citation_precision"] == 1.0
    assert "lexical" in report["judge"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"] and rows[0]["answer"].startswith("1889")
    assert main(["-q", "eval", "faithfulness", str(built), "--data", str(data), "--mode",
                 "bm25", "--model", "concat"]) == 0
    assert "unanswerable questions refused" in capsys.readouterr().out
    monkeypatch.undo()
    assert main(["-q", "eval", "faithfulness", str(built), "--data", str(data),
                 "--llm", "no-such.gguf"]) == 1
    assert "no-such.gguf" in capsys.readouterr().err  # one line, no traceback


def test_a_refusal_says_why_in_the_cli_and_in_json(built: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("ragline.generate.prompted.concat_generator",
                        lambda *a: Oracle(always="I don't know."))
    assert main(["ask", str(built), "Who first swam the Pacific?", "--mode", "dense",
                 "--model", "concat"]) == 0
    assert "the model said the passages do not contain the answer" in capsys.readouterr().out
    assert main(["ask", str(built), "Who first swam the Pacific?", "--mode", "dense",
                 "--json", "--model", "concat"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["refused"] is True and out["reason"] == "model_declined" and not out["citations"]
