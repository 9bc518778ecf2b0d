"""The concat prompt fits the generator's context in one pass, whatever k was retrieved."""

from __future__ import annotations

import pytest

from ragline.errors import ConfigError
from ragline.generate.prompts import rag_prompt
from ragline.types import Hit, Passage


def hits(n: int, words: int = 60) -> list[Hit]:
    return [Hit(Passage(id=f"p{i}", doc_id=f"d{i}", text=" ".join([f"w{i}"] * words),
                        title="", start=0, end=0, position=0), score=1.0 / (i + 1), rank=i + 1)
            for i in range(n)]


class Counter:
    """Whitespace tokens plus a BOS, counting how often it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        return len(text.split()) + 1


@pytest.mark.parametrize("k", [1, 5, 300, 3000])
def test_the_prompt_fits_and_counts_each_passage_once(k: int) -> None:
    count = Counter()
    prompt = rag_prompt("What is w0?", hits(k), count, budget=1000)
    assert count(prompt) <= 1000
    # passages are read until three budgets' worth: the cost does not grow with k
    assert count.calls <= 2 * min(k, 3 * 1000 // 60 + 2) + 5  # a header and a sentence each
    assert "[1]\n" + " ".join(["w0"] * 60) in prompt  # the best passage whole


def test_passages_go_in_by_rank_and_the_one_that_crosses_the_budget_is_cut() -> None:
    count = Counter()
    prompt = rag_prompt("What is w0?", hits(40), count, budget=400)
    shown = [n for n in range(1, 41) if f"[{n}]\n" in prompt]
    assert shown == list(range(1, len(shown) + 1)) and 3 <= len(shown) < 40
    last = prompt.split(f"[{shown[-1]}]\n")[1].split("\n")[0]
    assert last.endswith("…") or len(last.split()) == 60


def test_a_question_that_leaves_no_room_for_passages_is_an_error() -> None:
    with pytest.raises(ConfigError, match="question is too long"):
        rag_prompt("why " * 900, hits(3), Counter(), budget=900)


def test_without_a_counter_every_passage_is_whole() -> None:
    prompt = rag_prompt("q?", hits(3))
    assert all(f"[{n}]\n" in prompt for n in (1, 2, 3)) and "…" not in prompt


def sentences(n: int, topic: str) -> Hit:
    text = " ".join(f"Sentence {j} says {topic} {j}." for j in range(n))
    return Hit(Passage(id=topic, doc_id=topic, text=text, title="", start=0, end=len(text),
                       position=0), score=1.0, rank=1)


def test_over_the_passage_budget_the_sentences_that_share_the_question_go_in() -> None:
    found = [sentences(6, "filler"), sentences(6, "filler"), sentences(6, "filler")]
    needle = "The Eiffel Tower was completed in 1889."
    text = found[1].passage.text + " " + needle + " " + found[1].passage.text
    found[1] = Hit(Passage(id="n", doc_id="n", text=text, title="", start=0, end=len(text),
                           position=0), score=0.5, rank=2)
    prompt = rag_prompt("When was the Eiffel Tower completed?", found, Counter(),
                        budget=2000, passage_tokens=60)
    shown = prompt.split("[2]\n")[1].split("\n")[0]
    assert needle in shown and shown.endswith("…")  # numbered by rank, the cut shown
    assert "[3]" not in prompt.split("Question:")[0].split("[2]")[1]
    body = prompt.split("reply \"I don't know.\"")[1].split("Question:")[0]
    assert Counter()(body) - 1 <= 60
    whole = rag_prompt("When was the Eiffel Tower completed?", found, Counter(), budget=2000)
    assert all(f"[{n}]\n" in whole for n in (1, 2, 3)) and "…" not in whole


def test_an_instruct_model_gets_the_task_as_a_system_turn() -> None:
    seen: list[list[tuple[str, str]]] = []

    def chat(turns: list[tuple[str, str]]) -> str:
        seen.append(turns)
        return "".join(f"<{role}>{text}</{role}>" for role, text in turns) + "<assistant>"

    prompt = rag_prompt("Who designed it?", hits(2), chat=chat)
    (role, system), *_, (last, user) = seen[-1]
    assert prompt.endswith("<assistant>") and role == "system" and "I don't know" in system
    assert last == "user" and user.startswith("[1]\n") and user.endswith("Question: Who designed it?")
    assert [r for r, _ in seen[-1][1:-1]] == ["user", "assistant"] * 2  # the worked turns
    rag_prompt("谁设计的？", hits(2), chat=chat)
    assert "不知道" in seen[-1][0][1] and seen[-1][-1][1].endswith("问题：谁设计的？")
