"""Question-answer pairs and how answers are compared: shared by training (ragline.model.train,
which scores its held-out questions) and evaluation (ragline.eval).

English answers follow the official SQuAD v1.1 script (lower-case, drop punctuation and the
articles a/an/the, collapse spaces, F1 over whitespace tokens). Text with CJK characters
follows the CMRC 2018 script's idea: drop punctuation and spaces, F1 over characters.

    exact_match("The Eiffel Tower", ["Eiffel tower"])   # 1.0
    f1_score("明朝修建", ["明朝"])                        # 0.667
    train, held_out = split_by_group(examples, held_out=0.2)   # by article: no leakage
"""

from __future__ import annotations

import hashlib
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

from ragline.errors import ConfigError
from ragline.text import has_cjk


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    answers: tuple[str, ...]
    group: str = ""        # SQuAD: the article title; used to split without leakage
    context: str = ""      # SQuAD: the paragraph the question was written on


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def _is_punct(ch: str) -> bool:
    return ch in _PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalization for English; for CJK text, punctuation and spaces removed."""
    text = text.lower()
    text = "".join(ch for ch in text if not _is_punct(ch))
    if has_cjk(text):
        return "".join(text.split())
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    norm = normalize_answer(text)
    return list(norm) if has_cjk(text) else norm.split()


def _f1(pred: str, gold: str) -> float:
    p, g = _tokens(pred), _tokens(gold)
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(a) for a in answers))


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    return max((_f1(prediction, a) for a in answers), default=0.0)


def answer_in(text: str, answers: Sequence[str]) -> bool:
    """Does any answer occur in a passage (after normalization)? Retrieval hit@k for QA."""
    norm = normalize_answer(text)
    return any(normalize_answer(a) and normalize_answer(a) in norm for a in answers)


def split_by_group(examples: list[QAExample], held_out: float = 0.2,
                   ) -> tuple[list[QAExample], list[QAExample]]:
    """Deterministic split by group (article), so no held-out article is seen in training.
    Examples without a group are split by id."""
    if not 0 <= held_out < 1:
        raise ConfigError(f"held-out share must be in [0, 1), got {held_out}")

    groups = sorted({e.group or e.id for e in examples},
                    key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    n_test = math.ceil(held_out * len(groups)) if held_out > 0 else 0
    if held_out > 0 and n_test >= len(groups):
        raise ConfigError(f"only {len(groups)} group(s): nothing would be left to train on")
    test_groups = set(groups[:n_test])
    train = [e for e in examples if (e.group or e.id) not in test_groups]
    test = [e for e in examples if (e.group or e.id) in test_groups]
    return train, test


def spread(items: Sequence[T], n: int) -> list[T]:
    """n items evenly spread over `items` (all of them when n ≥ their number): a sample of a
    file ordered by article still covers every part of it."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
