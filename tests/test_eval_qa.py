"""`ragline eval qa` and `evaluate_qa`: hit@k from the retrieved passages, EM/F1 of `ask`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragline import RAG
from ragline.cli import main
from ragline.eval.qa import evaluate_qa
from ragline.eval.qa_data import read_qa
from ragline.qa import QAExample

from conftest import ScriptedGenerator

SQUAD = {"version": "1.1", "data": [
    {"title": "Paris", "paragraphs": [{
        "context": "Paris is the capital of France. The Eiffel Tower was completed in 1889.",
        "qas": [{"id": "p1", "question": "When was the Eiffel Tower completed?",
                 "answers": [{"text": "1889", "answer_start": 66}]}]}]},
    {"title": "Beijing", "paragraphs": [{
        "context": "北京是中国的首都。故宫位于北京市中心，是明清两代的皇家宫殿。",
        "qas": [{"id": "b1", "question": "故宫是哪两个朝代的皇家宫殿？",
                 "answers": [{"text": "明清两代", "answer_start": 19}]}]}]},
    {"title": "Tea", "paragraphs": [{
        "context": "Green tea is made from the leaves of Camellia sinensis.",
        "qas": [{"id": "t1", "question": "What plant gives green tea its leaves?",
                 "answers": [{"text": "Camellia sinensis", "answer_start": 37}]},
                {"id": "t2", "question": "Which ocean is the deepest?",
                 "answers": [{"text": "the Pacific"}]}]}]},
]}


def test_cli_eval_qa_builds_from_the_paragraphs_and_reports_hit_at_k(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "squad.json"
    data.write_text(json.dumps(SQUAD, ensure_ascii=False))
    (tmp_path / "ragline.toml").write_text('[index]\nencoder = "hash"\n')
    idx = tmp_path / "idx"
    assert main(["--config", str(tmp_path / "ragline.toml"), "-q", "eval", "qa", str(idx),
                 "--data", str(data), "--retrieval-only", "--mode", "bm25", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["questions"] == 4 and out["exact_match"] is None
    # three questions find their paragraph first; the fourth has no answer anywhere
    assert out["hit_at"]["1"] == pytest.approx(0.75) and out["hit_at"]["20"] == pytest.approx(0.75)
    with RAG.open(idx) as rag:
        assert rag.index.folder.store.counts()["documents"] == 3
    assert main(["eval", "qa", str(tmp_path / "nothing"), "--data", str(tmp_path / "x.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_evaluate_qa_scores_the_answers_ask_gives(hash_rag: RAG) -> None:
    examples = [QAExample("1", "What is the capital of France?", ("Paris",)),
                QAExample("2", "What is the capital of Germany?", ("Berlin",))]
    rag = RAG.open(hash_rag.index.path, generator=ScriptedGenerator("Paris [1]"))
    report = evaluate_qa(rag, examples, k=2, mode="bm25", hit_ks=(1,))
    assert report.hit_at[1] == pytest.approx(1.0)
    # "Paris" is right for the first question, wrong for the second; markers are not scored
    assert report.em == pytest.approx(0.5) and report.f1 == pytest.approx(0.5)
    assert [r["answer"] for r in report.rows] == ["Paris", "Paris"]
    assert report.seconds_per_question is not None and report.seconds_per_question > 0
    # a declined answer ("not found") scores 0 and counts as not answered
    rag.close()
    rag = RAG.open(hash_rag.index.path, generator=ScriptedGenerator("Rome"))
    report = evaluate_qa(rag, examples[:1], k=2, mode="bm25")
    assert report.answered == 0.0 and report.em == 0.0
    rag.close()


def test_limit_spreads_questions_over_the_file(tmp_path: Path, capsys) -> None:
    rows = [{"question": f"question {i}", "answers": [f"a{i}"]} for i in range(10)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(read_qa(data)) == 10
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("question 0 a0. question 5 a5.")
    idx = tmp_path / "idx"
    assert main(["-q", "index", str(docs), "--index", str(idx), "--encoder", "hash"]) == 0
    capsys.readouterr()
    assert main(["-q", "eval", "qa", str(idx), "--data", str(data), "--limit", "2",
                 "--retrieval-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["questions"] == 2 and out["hit_at"]["1"] == pytest.approx(1.0)  # questions 0 and 5
