"""Answer metrics and QA readers."""

import json
from pathlib import Path

import pytest

from ragline.errors import ConfigError
from ragline.eval.qa_data import paragraphs_of, read_qa
from ragline.qa import answer_in, exact_match, f1_score, normalize_answer, split_by_group

from conftest import SHARED_DATA


def test_squad_normalization_and_scores() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the eiffel tower.", ["Eiffel Tower", "Paris"]) == 1.0
    assert exact_match("tower", ["Eiffel Tower"]) == 0.0
    assert f1_score("Eiffel tower in Paris", ["the Eiffel Tower"]) == pytest.approx(2 * 0.5 / 1.5)
    assert f1_score("", ["x"]) == 0.0


def test_chinese_is_scored_by_characters() -> None:
    assert exact_match("明朝。", ["明朝"]) == 1.0
    assert f1_score("明朝修建", ["明朝"]) == pytest.approx(2 / 3)
    assert answer_in("今天看到的长城大部分是明朝修建的。", ["明朝"])


def test_jsonl_and_squad_readers(tmp_path: Path) -> None:
    p = tmp_path / "qa.jsonl"
    p.write_text('{"question": "Who?", "answers": ["Ann", "Anne"]}\n\n{"question": "Q2", "answer": "b"}\n')
    ex = read_qa(p)
    assert [e.answers for e in ex] == [("Ann", "Anne"), ("b",)]
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [
        {"context": "Ann went home.", "qas": [{"id": "1", "question": "Who?",
                                               "answers": [{"text": "Ann", "answer_start": 0}]}]}]}]}))
    (e,) = read_qa(squad)
    assert (e.question, e.answers, e.group, e.context) == ("Who?", ("Ann",), "T", "Ann went home.")
    assert paragraphs_of(squad) == [{"id": "T#0", "title": "T", "text": "Ann went home."}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?", "answers": []}\n')
    with pytest.raises(ConfigError, match="line 1 needs 'answers'"):
        read_qa(bad)


def test_split_by_article_never_leaks() -> None:
    path = SHARED_DATA / "squad" / "squad-dev-v1.1-part-a.json"
    if not path.is_file():
        pytest.skip("SQuAD part A is not in ../shared/data")
    ex = read_qa(path)
    train, test = split_by_group(ex, 0.2)
    assert len(train) + len(test) == len(ex) and test
    assert not {e.group for e in train} & {e.group for e in test}
    assert len({e.group for e in test}) == 5  # ceil(0.2 × 24 articles)
    assert split_by_group(ex, 0.2) == (train, test)  # deterministic
