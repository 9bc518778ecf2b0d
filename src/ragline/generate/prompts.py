"""Prompts that condition the generator on numbered passages.

Written for small base models as much as for chat models: the task is stated, one worked
example shows the citation format and the refusal, then the passages and the question.

    prompt = rag_prompt("Who designed it?", hits)
"""

from __future__ import annotations

from collections.abc import Callable

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
    """The prompt; passages are shortened, lowest-ranked first, until it fits `budget` tokens."""
    template = _ZH if has_cjk(question) else _EN
    limits: list[int | None] = [None] * len(hits)

    def build() -> str:
        body = "\n\n".join(format_passage(i + 1, h, limits[i]) for i, h in enumerate(hits))
        return template.format(passages=body, question=question.strip())

    prompt = build()
    if count_tokens is None:
        return prompt
    for i in reversed(range(len(hits))):
        if count_tokens(prompt) <= budget:
            break
        limits[i] = 200
        prompt = build()
    return prompt


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
