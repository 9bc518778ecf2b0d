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
    """The document's passages. Loaders describe structure in `doc.meta`:

    - `page_starts`: the offset where each page (or slide) begins → `Passage.page`
    - `sections`: `[start, end, title, location(, whole)]` spans (a function, a slide, a block
      of rows): no passage crosses one; a passage takes its section's title (else the
      document's) and location. A `whole` section (or every one, with `whole_sections`) is one
      passage, never cut: a block of rows under its header.
    - `lines`: a passage with no location of its own is placed by its line range.
    - `code`: a section is cut between lines, never inside one (code has no sentences).
    """
    meta = doc.meta
    page_starts: list[int] = meta.get("page_starts") or []
    spans: list[tuple[int, int, str, str]] = []
    for s, e, title, location, whole in _sections(meta.get("sections") or [], len(doc.text)):
        if (whole or meta.get("whole_sections")) and doc.text[s:e].strip():
            spans.append((s, e, title, location))
        else:
            sub = doc.text[s:e]
            cut = line_spans(sub, words) if meta.get("code") else chunk_spans(sub, words)
            spans += [(s + a, s + b, title, location) for a, b in cut]
    line_starts = _line_starts(doc.text) if meta.get("lines") else None
    passages = []
    for i, (s, e, title, location) in enumerate(spans):
        page = bisect.bisect_right(page_starts, s) if page_starts else None
        if not location and line_starts is not None:
            first = bisect.bisect_right(line_starts, s)
            last = bisect.bisect_right(line_starts, max(s, e - 1))
            location = f"line {first}" if first == last else f"lines {first}–{last}"
        passages.append(Passage(id=f"{doc.id}-{i}", doc_id=doc.id, text=doc.text[s:e],
                                title=title or doc.title, start=s, end=e, position=i,
                                source=doc.source, page=page, location=location))
    return passages


def line_spans(text: str, words: int) -> list[tuple[int, int]]:
    """Spans of whole lines, about `words` words each (a longer line is one span)."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    end = pos = 0
    size = 0.0
    for line in text.split("\n"):
        n = count_words(line)
        if start is not None and size + n > words and size:
            spans.append((start, end))
            start, size = None, 0.0
        if line.strip():
            if start is None:
                start = pos + (len(line) - len(line.lstrip()) if not spans else 0)
            end = pos + len(line.rstrip())
            size += n
        pos += len(line) + 1
    if start is not None:
        spans.append((start, end))
    return spans


def _sections(sections: list[list[object]], n: int) -> list[tuple[int, int, str, str, bool]]:
    """The document cut into sections: the loader's, in order, and the text between them
    (untitled), so that nothing is lost to a loader's gap."""
    out: list[tuple[int, int, str, str, bool]] = []
    pos = 0
    for sec in sorted(sections, key=lambda x: int(x[0])):  # type: ignore[call-overload]
        s, e = max(pos, int(sec[0])), min(n, int(sec[1]))  # type: ignore[call-overload]
        if e <= s:
            continue
        if s > pos:
            out.append((pos, s, "", "", False))
        out.append((s, e, str(sec[2]), str(sec[3]), len(sec) > 4 and bool(sec[4])))
        pos = e
    if pos < n:
        out.append((pos, n, "", "", False))
    return out


def _line_starts(text: str) -> list[int]:
    starts = [0]
    i = text.find("\n")
    while i != -1:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts
