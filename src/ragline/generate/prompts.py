"""Prompts that condition the generator on numbered passages.

A base model completes a document (the task, the passages, the question, "Answer:"); an
instruct model gets the task as its system turn, two worked turns (a short answer and a
refusal), then the passages and the question, in its own chat template. Passages that do not
fit the token budget give way sentence by sentence, the least related to the question first.

    prompt = rag_prompt("Who designed it?", hits)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from ragline.errors import ConfigError
from ragline.text import has_cjk, sentence_spans, tokenize
from ragline.types import Hit

NOT_FOUND = "I could not find the answer in the indexed documents."
NOT_FOUND_ZH = "在已索引的文档中找不到答案。"

# A base model completes a document: the task, the passages, then "Answer:".
_EN = """Answer the question using only the numbered passages. Quote the passage's words when you can, cite the passage number like [1], and keep the answer short. If the passages do not contain the answer, reply "I don't know."

{passages}

Question: {question}
Answer:"""

_ZH = """请只根据下面编号的段落回答问题，尽量使用段落原文，并用[1]这样的编号注明出处，回答要简短。如果段落中没有答案，请回答“不知道”。

{passages}

问题：{question}
回答："""

# An instruct model gets the task as its system turn and the passages with the question as the
# user's, wrapped in its own chat template. The answer is the span itself: a sentence around it
# adds words the passages may not back, and costs time.
_SYSTEM_EN = """You answer questions from the passages the user gives. Reply with the answer alone: the shortest phrase from the passages that answers the question (a name, a number, a date, a few words). If the passages do not contain the answer, reply exactly: I don't know."""
_USER_EN = "{passages}\n\nQuestion: {question}"
_SYSTEM_ZH = """你根据用户给出的段落回答问题。只写出答案本身：段落中能回答问题的最短原文（一个名字、数字、日期或几个词）。如果段落中没有答案，只回答：不知道。"""
_USER_ZH = "{passages}\n\n问题：{question}"

# Two worked turns before the real one: an answer copied short, and a refusal. They are the
# same for every question, so llama.cpp keeps them in its cache: they cost no time to read.
_SHOTS_EN = (
    ("[1]\nThe tower was designed by the engineering firm of Gustave Eiffel and completed in "
     "March 1889 for the World's Fair.\n\n[2]\nIt is 330 metres tall.\n\n"
     "Question: Whose firm designed the tower?", "Gustave Eiffel"),
    ("[1]\nThe river rises in the Alps and flows 1,230 km to the North Sea.\n\n"
     "Question: Who was the first person to swim the river?", "I don't know."),
)
_SHOTS_ZH = (
    ("[1]\n这座塔由古斯塔夫·埃菲尔的公司设计，于1889年3月为世界博览会建成。\n\n[2]\n塔高330米。\n\n"
     "问题：这座塔是哪一年建成的？", "1889年"),
    ("[1]\n这条河发源于阿尔卑斯山，流经1230公里注入北海。\n\n问题：第一个游过这条河的人是谁？", "不知道。"),
)

# [(role, content), …] → the model's chat template applied, ready to complete
ChatTemplate = Callable[[list[tuple[str, str]]], str]


def not_found_message(question: str) -> str:
    return NOT_FOUND_ZH if has_cjk(question) else NOT_FOUND


def format_passage(n: int, hit: Hit, max_chars: int | None = None, text: str | None = None) -> str:
    p = hit.passage
    if text is None:
        text = p.text if max_chars is None or len(p.text) <= max_chars else p.text[:max_chars] + "…"
    head = f"[{n}] {p.title}" if p.title else f"[{n}]"
    return f"{head}\n{text}"


def _frame(question: str, chat: ChatTemplate | None) -> Callable[[str], str]:
    """passages → the whole prompt, in the question's language and the model's format."""
    q, zh = question.strip(), has_cjk(question)
    if chat is None:
        template = _ZH if zh else _EN
        return lambda body: template.format(passages=body, question=q)
    system, user, shots = (_SYSTEM_ZH, _USER_ZH, _SHOTS_ZH) if zh else (
        _SYSTEM_EN, _USER_EN, _SHOTS_EN)
    turns = [("system", system)]
    for asked, answered in shots:
        turns += [("user", asked), ("assistant", answered)]
    return lambda body: chat([*turns, ("user", user.format(passages=body, question=q))])


def rag_prompt(question: str, hits: list[Hit], count_tokens: Callable[[str], int] | None = None,
               budget: int = 3000, passage_tokens: int | None = None,
               chat: ChatTemplate | None = None) -> str:
    """The prompt: the task, the numbered passages, the question; `chat` wraps it as an
    instruct model's turns.

    With `count_tokens`, the passages get at most `passage_tokens` (the time to the first token
    grows with the prompt) and the whole prompt at most `budget` tokens (the context). When
    the passages do not fit whole, their sentences go in by how much of the question they
    share, the better-ranked passage first on ties, each counted once; passages keep their
    rank's number. A question too long to leave room for passages is a ConfigError."""
    frame = _frame(question, chat)
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


# a base model goes on to invent the next question or passage; these end the answer there
STOP = ("\n\n", "Question:", "\nAnswer:", "\n[", "问题\uff1a", "回答\uff1a", "问题:", "回答:",
        "\n回答")


# an instruct model ends its turn itself; a blank line starts an explanation nobody asked for
CHAT_STOP = ("\n\n",)


# The RAG model conditions the generator on one passage at a time (Lewis et al. 2020): the
# passage, then the question, then the answer on the same line. Training uses the same layout.
_PASSAGE_EN = ("\n\nQuestion: {question}\nAnswer:", " ")
_PASSAGE_ZH = ("\n\n问题：{question}\n回答：", "")


def passage_prompt_parts(question: str) -> tuple[str, str]:
    """(text after the passage, prefix of the answer) for a question's language."""
    tail, prefix = _PASSAGE_ZH if has_cjk(question) else _PASSAGE_EN
    return tail.format(question=question.strip()), prefix


# An instruct model in the RAG models reads one passage a turn: the task, the worked turns of
# concat's prompt (one passage each), then the passage and the question; its answer is the
# assistant's turn. The turns before the passage are the same for every passage and question,
# so llama.cpp reads them once and copies them (ragline.model.llama_lm).
_PASSAGE_SHOTS_EN = (
    ("The tower was designed by the engineering firm of Gustave Eiffel and completed in March "
     "1889 for the World's Fair. It is 330 metres tall.\n\n"
     "Question: Whose firm designed the tower?", "Gustave Eiffel"),
    ("The river rises in the Alps and flows 1,230 km to the North Sea.\n\n"
     "Question: Who was the first person to swim the river?", "I don't know."),
)
_PASSAGE_SHOTS_ZH = (
    ("这座塔由古斯塔夫·埃菲尔的公司设计，于1889年3月为世界博览会建成。塔高330米。\n\n"
     "问题：这座塔是哪一年建成的？", "1889年"),
    ("这条河发源于阿尔卑斯山，流经1230公里注入北海。\n\n问题：第一个游过这条河的人是谁？", "不知道。"),
)
_PASSAGE_CHAT = {"en": (_SYSTEM_EN, "{passage}\n\nQuestion: {question}", _PASSAGE_SHOTS_EN),
                 "zh": (_SYSTEM_ZH, "{passage}\n\n问题：{question}", _PASSAGE_SHOTS_ZH)}


def passage_chat_turns(question: str) -> tuple[list[tuple[str, str]], str]:
    """(the turns before the user's, user turn with a {passage} slot) for a question's
    language."""
    system, user, shots = _PASSAGE_CHAT["zh" if has_cjk(question) else "en"]
    turns = [("system", system)]
    for asked, answered in shots:
        turns += [("user", asked), ("assistant", answered)]
    return turns, user.replace("{question}", question.strip())
