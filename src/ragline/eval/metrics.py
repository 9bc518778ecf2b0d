"""Answer metrics: exact match and token F1 against the best of several gold answers.

English follows the official SQuAD v1.1 script (lower-case, drop punctuation and the articles
a/an/the, collapse spaces, F1 over whitespace tokens). Text with CJK characters follows the CMRC
2018 script's idea: drop punctuation and spaces, F1 over characters (Chinese has no spaces).

    exact_match("The Eiffel Tower", ["Eiffel tower"])   # 1.0
    f1_score("明朝修建", ["明朝"])                        # 0.667
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

from ragline.text import has_cjk

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
