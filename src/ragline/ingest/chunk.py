"""Split a Document into ~N-word Passages on sentence boundaries, keeping character spans.

    passages = chunk_document(doc, words=100)
    assert all(doc.text[p.start:p.end] == p.text for p in passages)
"""

from __future__ import annotations

import bisect

from ragline.errors import ConfigError
from ragline.text import count_words, sentence_spans, word_spans
from ragline.types import Document, Passage


def chunk_spans(text: str, words: int = 100) -> list[tuple[int, int]]:
    """Spans of chunks of about `words` words, cut between sentences where possible.

    A sentence longer than `words` is cut between words (CJK: between characters).
    A last chunk under a fifth of the target joins the one before it.
    """
    if words < 1:
        raise ConfigError(f"chunk size must be ≥ 1 word, got {words}")
    pieces: list[tuple[int, int, float]] = []  # (start, end, words) of sentences or sentence parts
    for s, e in sentence_spans(text):
        n = count_words(text[s:e])
        if n <= words:
            pieces.append((s, e, n))
        else:
            pieces.extend(_split_long(text, s, e, words))

    chunks: list[tuple[int, int, float]] = []
    for s, e, n in pieces:
        if chunks and chunks[-1][2] + n <= words:
            cs, _, cn = chunks[-1]
            chunks[-1] = (cs, e, cn + n)
        else:
            chunks.append((s, e, n))
    if len(chunks) > 1 and chunks[-1][2] < words / 5:
        last = chunks.pop()
        chunks[-1] = (chunks[-1][0], last[1], chunks[-1][2] + last[2])
    return [(s, e) for s, e, _ in chunks]


def _split_long(text: str, start: int, end: int, words: int) -> list[tuple[int, int, float]]:
    out: list[tuple[int, int, float]] = []
    cur_s: int | None = None
    cur_e = start
    cur_n = 0.0
    for ws, we in word_spans(text, start, end):
        n = count_words(text[ws:we])
        if cur_s is not None and cur_n + n > words:
            out.append((cur_s, cur_e, cur_n))
            cur_s, cur_n = None, 0.0
        if cur_s is None:
            cur_s = ws
        cur_e, cur_n = we, cur_n + n
    if cur_s is not None:
        out.append((cur_s, cur_e, cur_n))
    return out


def chunk_document(doc: Document, words: int = 100) -> list[Passage]:
    page_starts: list[int] = doc.meta.get("page_starts") or []
    passages = []
    for i, (s, e) in enumerate(chunk_spans(doc.text, words)):
        page = bisect.bisect_right(page_starts, s) if page_starts else None
        passages.append(Passage(id=f"{doc.id}-{i}", doc_id=doc.id, text=doc.text[s:e],
                                title=doc.title, start=s, end=e, position=i,
                                source=doc.source, page=page))
    return passages
