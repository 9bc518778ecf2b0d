"""Prompts that condition the generator on numbered passages.

Written for small base models as much as for chat models: the task is stated, one worked
example shows the citation format and the refusal, then the passages and the question.

    prompt = rag_prompt("Who designed it?", hits)
"""

from __future__ import annotations

from collections.abc import Callable

from ragline.errors import ConfigError
from ragline.text import has_cjk
from ragline.types import Hit

NOT_FOUND = "I could not find the answer in the indexed documents."
NOT_FOUND_ZH = "在已索引的文档中找不到答案。"

_EN = """Answer the question using only the numbered passages. Quote the passage's words when you can, cite the passage number like [1], and keep the answer short. If the passages do not contain the answer, reply "I don't know."

{passages}

Question: {question}
Answer:"""

_ZH = """请只根据下面编号的段落回答问题，尽量使用段落原文，并用[1]这样的编号注明出处，回答要简短。如果段落中没有答案，请回答“不知道”。

{passages}

问题：{question}
回答："""


def not_found_message(question: str) -> str:
    return NOT_FOUND_ZH if has_cjk(question) else NOT_FOUND


def format_passage(n: int, hit: Hit, max_chars: int | None = None) -> str:
    p = hit.passage
    text = p.text if max_chars is None or len(p.text) <= max_chars else p.text[:max_chars] + "…"
    head = f"[{n}] {p.title}" if p.title else f"[{n}]"
    return f"{head}\n{text}"


def rag_prompt(question: str, hits: list[Hit],
               count_tokens: Callable[[str], int] | None = None, budget: int = 3000) -> str:
    """The prompt. With `count_tokens`, it fits `budget` tokens: passages go in by rank, each
    counted once (linear in k, however many were retrieved); the one that crosses the budget
    is cut, the rest are left out. A question too long to leave room for one passage is a
    ConfigError."""
    template = _ZH if has_cjk(question) else _EN
    q = question.strip()
    if count_tokens is None:
        body = "\n\n".join(format_passage(i + 1, h) for i, h in enumerate(hits))
        return template.format(passages=body, question=q)
    base = count_tokens("")  # what every count includes (a BOS token)
    left = budget - count_tokens(template.format(passages="", question=q))
    if left < _MIN_PASSAGE_TOKENS:
        raise ConfigError(
            f"the question is too long for the model's context: it leaves {max(0, left)} of "
            f"{budget} prompt tokens for passages; shorten it (or raise generation.n_ctx)")
    shown: list[tuple[Hit, int | None]] = []  # (hit, characters kept; None: all)
    for h in hits:
        cost = count_tokens(format_passage(len(shown) + 1, h)) - base + _SEPARATOR_TOKENS
        if cost > left:
            if left >= _MIN_PASSAGE_TOKENS:  # cut the text in proportion to what is left
                keep = int(len(h.passage.text) * (left - _SEPARATOR_TOKENS) / cost * 0.9)
                shown.append((h, max(1, keep)))
            break
        shown.append((h, None))
        left -= cost

    def build() -> str:
        body = "\n\n".join(format_passage(i + 1, h, cut) for i, (h, cut) in enumerate(shown))
        return template.format(passages=body, question=q)

    prompt = build()
    # tokens at the joins can differ from the sum of the parts: trim while it is over
    while count_tokens(prompt) > budget and shown:
        h, cut = shown[-1]
        if len(shown) > 1 or (cut is not None and cut < 2):
            shown.pop()
        else:
            shown[-1] = (h, (cut or len(h.passage.text)) // 2)
        prompt = build()
    return prompt


_MIN_PASSAGE_TOKENS = 48  # less than this shows the model no passage worth reading
_SEPARATOR_TOKENS = 2     # the blank line between passages


# a base model goes on to invent the next question or passage; these end the answer there
STOP = ("\n\n", "Question:", "\nAnswer:", "\n[", "问题\uff1a", "回答\uff1a", "问题:", "回答:",
        "\n回答")


# The RAG model conditions the generator on one passage at a time (Lewis et al. 2020): the
# passage, then the question, then the answer on the same line. Training uses the same layout.
_PASSAGE_EN = ("\n\nQuestion: {question}\nAnswer:", " ")
_PASSAGE_ZH = ("\n\n问题：{question}\n回答：", "")


def passage_prompt_parts(question: str) -> tuple[str, str]:
    """(text after the passage, prefix of the answer) for a question's language."""
    tail, prefix = _PASSAGE_ZH if has_cjk(question) else _PASSAGE_EN
    return tail.format(question=question.strip()), prefix
