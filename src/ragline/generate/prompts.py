"""Prompts that condition the generator on numbered passages.

A base model completes a document (the task, the passages, the question, "Answer:"); an
instruct model gets the task as its system turn, worked turns (a short answer and a
refusal), then the passages and the question, in its own chat template (the words of each
task: ragline.generate.tasks). Passages that do not fit the token budget give way sentence by
sentence, the least related to the question first.

    prompt = rag_prompt("Who designed it?", hits)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from ragline.errors import ConfigError
from ragline.generate.tasks import ANSWER, ChatTemplate, Task
from ragline.text import sentence_spans, tokenize
from ragline.types import Hit

NOT_FOUND = ANSWER.not_found["en"]


def not_found_message(question: str) -> str:
    return ANSWER.not_found_message(question)


def format_passage(n: int, hit: Hit, max_chars: int | None = None, text: str | None = None) -> str:
    p = hit.passage
    if text is None:
        text = p.text if max_chars is None or len(p.text) <= max_chars else p.text[:max_chars] + "…"
    head = f"[{n}] {p.title}" if p.title else f"[{n}]"
    return f"{head}\n{text}"


def rag_prompt(question: str, hits: list[Hit], count_tokens: Callable[[str], int] | None = None,
               budget: int = 3000, passage_tokens: int | None = None,
               chat: ChatTemplate | None = None, task: Task = ANSWER,
               instructions: str = "") -> str:
    """The prompt: the task, the numbered passages, the question (or the task's request);
    `chat` wraps it as an instruct model's turns.

    With `count_tokens`, the passages get at most `passage_tokens` (the time to the first token
    grows with the prompt) and the whole prompt at most `budget` tokens (the context). When
    the passages do not fit whole, their sentences go in by how much of the question they
    share, the better-ranked passage first on ties, each counted once; passages keep their
    rank's number. A question too long to leave room for passages is a ConfigError."""
    frame = task.frame(question, chat, instructions)
    if count_tokens is None:
        return frame("\n\n".join(format_passage(i + 1, h) for i, h in enumerate(hits)))
    base = count_tokens("")  # what every count includes (a BOS token)
    left = budget - count_tokens(frame(""))
    if left < _MIN_PASSAGE_TOKENS:
        raise ConfigError(
            f"the question is too long for the model's context: it leaves {max(0, left)} of "
            f"{budget} prompt tokens for passages; shorten it (or raise generation.n_ctx)")
    if passage_tokens is not None:
        left = min(left, max(passage_tokens, _MIN_PASSAGE_TOKENS))
    chosen = select_sentences(question, hits, lambda t: count_tokens(t) - base, left)

    def build() -> str:
        return frame("\n\n".join(format_passage(n, hits[n - 1], text=text)
                                  for n, text in render_selection(hits, chosen)))

    prompt = build()
    # tokens at the joins can differ from the sum of the parts: drop the last choice while over
    while count_tokens(prompt) > budget and len(chosen) > 1:
        chosen.pop()
        prompt = build()
    return prompt


# (hit index, sentence start, end) chosen for the prompt, best first
Selection = list[tuple[int, int, int]]


def select_sentences(question: str, hits: list[Hit], cost: Callable[[str], int],
                     budget: int) -> Selection:
    """The passages' sentences that best fit `budget` tokens: all of them when they fit;
    otherwise by IDF-weighted overlap with the question's words (IDF over these sentences),
    then by rank and position. Only the best-ranked passages whose whole text would fill
    three budgets are read, so the cost does not grow with k. A sentence that crosses the
    budget is cut when enough room is left for it to be worth reading."""
    candidates: list[tuple[int, int, int, int]] = []  # (hit, start, end, tokens)
    header: list[int] = []  # "[n] title" and the blank line before it, per passage
    total = 0
    for i, h in enumerate(hits):
        if total > 3 * budget:
            break
        text = h.passage.text
        header.append(cost(format_passage(i + 1, h, text="")) + 2)
        total += header[-1]
        for s, e in sentence_spans(text) or [(0, len(text))]:
            c = cost(text[s:e]) + 1
            candidates.append((i, s, e, c))
            total += c
    if total <= budget:
        return [(i, s, e) for i, s, e, _ in candidates]
    q = set(tokenize(question))
    words = [set(tokenize(hits[i].passage.text[s:e])) & q for i, s, e, _ in candidates]
    df = Counter(t for w in words for t in w)
    n = len(candidates)
    score = [sum(math.log(1 + n / df[t]) for t in w) for w in words]
    order = sorted(range(n), key=lambda c: (-score[c], candidates[c][0], candidates[c][1]))
    chosen: Selection = []
    opened: set[int] = set()
    left = budget
    for c in order:
        i, s, e, tokens = candidates[c]
        head = 0 if i in opened else header[i]
        if tokens + head <= left:
            chosen.append((i, s, e))
            opened.add(i)
            left -= tokens + head
        elif left >= _MIN_PASSAGE_TOKENS:  # cut this one to what is left, then stop
            keep = int((e - s) * (left - head) / tokens * 0.9)
            chosen.append((i, s, s + max(1, keep)))
            break
        if left < _MIN_SENTENCE_TOKENS:
            break
    return chosen


def render_selection(hits: list[Hit], chosen: Selection) -> list[tuple[int, str]]:
    """(passage number, text) in rank order: a passage's chosen sentences in their order,
    "…" where sentences were left out, at its start or end."""
    by_hit: dict[int, list[tuple[int, int]]] = {}
    for i, s, e in chosen:
        by_hit.setdefault(i, []).append((s, e))
    out = []
    for i in sorted(by_hit):
        text = hits[i].passage.text
        spans = sorted(by_hit[i])
        parts, prev = [], 0
        for s, e in spans:
            gap = text[prev:s]
            parts.append(gap if not gap.strip() else "… " if prev == 0 else " … ")
            parts.append(text[s:e])
            prev = e
        if text[prev:].strip():
            parts.append(" …")
        out.append((i + 1, "".join(parts).strip()))
    return out


_MIN_PASSAGE_TOKENS = 48  # less than this shows the model no passage worth reading
_MIN_SENTENCE_TOKENS = 8  # stop filling below this
