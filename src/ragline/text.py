"""Language-aware text helpers: sentence spans, word counts and BM25 tokens.

Text without spaces (Chinese, Japanese) is handled explicitly: sentences end at 。！？ without a
following space, a CJK character counts as half a word for chunk sizes, and BM25 tokens come from
jieba's word segmentation instead of whitespace.

    tokenize("The cats were running")   # ['cat', 'run']
    tokenize("北京是中国的首都")            # ['北京', '中国', '首都']
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator

# CJK ideographs, kana and full-width forms: scripts written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
CJK_RE = re.compile(f"[{_CJK}]")
# A "run" is a stretch of CJK characters, or a Latin-like word.
_RUN_RE = re.compile(f"[{_CJK}]+|[^\\W{_CJK}]+", re.UNICODE)
_WORD_RE = re.compile(r"\w+")

# Sentence ends: Western punctuation followed by whitespace (or ! ? straight before a CJK
# character), CJK punctuation anywhere, or a blank line. Closing quotes and brackets stay
# with the sentence they close.
_SENT_END_RE = re.compile(
    r"""(?:[.!?]+['"”’)\]]*(?=\s))|(?:[!?]+(?=[\u3400-\u9fff]))|"""
    r"""(?:[。！？；…]+[」』”’）)]*)|(?:\n\s*\n)"""
)
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e fig no vol al inc ltd co u.s cf approx".split()
)


# Lone UTF-16 surrogates: what Python makes of bytes that are not UTF-8 in argv or a file name
# (surrogateescape), and what a JSON "\\udcff" escape decodes to. No encoder, tokenizer or
# SQLite column takes them.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def invalid_char(text: str) -> int | None:
    """The position of the first character that is not valid Unicode text, or None."""
    m = _SURROGATE_RE.search(text)
    return m.start() if m else None


def scrub(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, as a UTF-8 decoder would."""
    return _SURROGATE_RE.sub("\ufffd", text)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that can always be printed and stored in SQLite: bytes of a file name
    that are not UTF-8 (another locale's) are written as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def has_cjk(text: str) -> bool:
    return CJK_RE.search(text) is not None


def count_words(text: str) -> float:
    """Length in words; two CJK characters count as one word (a Chinese word averages ~1.5–2)."""
    cjk = len(CJK_RE.findall(text))
    latin = len(_WORD_RE.findall(CJK_RE.sub(" ", text)))  # punctuation is not a word
    return latin + cjk / 2


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, whitespace trimmed, in order."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END_RE.finditer(text):
        end = m.end()
        if m.group().startswith(".") and _is_abbreviation(text, m.start()):
            continue
        spans.extend(_trimmed(text, start, end))
        start = end
    spans.extend(_trimmed(text, start, len(text)))
    return spans


def _is_abbreviation(text: str, dot: int) -> bool:
    # the word before the dot, from a short window: searching all of text[:dot] for it made
    # sentence splitting quadratic (a 1 MB changelog took minutes)
    word = re.search(r"(\S+)$", text[max(0, dot - 40):dot])
    if word is None:
        return False
    w = word.group(1).lower().lstrip("(\"'")
    return w in _ABBREVIATIONS or (len(w) == 1 and w.isalpha())


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield (start, end)


def word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of words (Latin words, or single CJK characters) inside text[start:end]."""
    pat = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
    return [(m.start() + start, m.end() + start) for m in pat.finditer(text[start:end])]


# ---------------------------------------------------------------- BM25 tokens


@functools.lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


@functools.lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO
    jieba.initialize()
    return jieba


@functools.lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | frozenset(STOPWORDS_CHINESE)


def tokenize(text: str, stem: bool = True) -> list[str]:
    """BM25 tokens: lower-cased words, English stopwords removed and Snowball-stemmed,
    CJK runs segmented by jieba (search mode, so long words also yield their parts)."""
    stop = _stopwords()
    runs = _RUN_RE.findall(text.lower())
    out: list[str] = []
    if CJK_RE.search(text) is None:  # the common case, a comprehension: ingestion's hot loop
        latin = [r for r in runs if r not in stop]
    else:
        latin = []
        for run in runs:
            if CJK_RE.match(run):
                out.extend(w for w in _jieba().lcut_for_search(run) if w.strip() and w not in stop)
            elif run not in stop:
                latin.append(run)
    if latin:
        out.extend(_stemmer().stemWords(latin) if stem else latin)
    return out
