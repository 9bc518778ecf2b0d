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
    assert count.calls <= min(k, 1000 // 60 + 1) + 5  # linear: never once per cut passage
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
