"""Relevance judged by an instruct generator: score(z) = log p(yes) − log p(no) for "is this
passage relevant to the query?", read from the model's next-token logits (one forward pass a
passage, no sampling). A reranker (ragline.retrieve.rerank's protocol) that needs no weights
beyond the answer model's.

    judge = LlmJudgeReranker()                   # the default answer model
    judge.score("When was it completed?", passages)   # (n,), higher is more relevant

The query comes before the passage, so the system turn and the query stay in llama.cpp's
prompt cache: only each passage's tokens are read again. The scores come through the Scorer
protocol (`log_odds`), from the answer model on llama.cpp (xllamacpp).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragline.errors import ModelUnavailableError
from ragline.generate.xllama import XLlamaGenerator
from ragline.text import has_cjk
from ragline.types import Passage

_SYSTEM = {
    "en": "You judge whether a passage is relevant to a search query: whether it answers the "
          "question or supports or refutes the claim. Reply yes or no.",
    "zh": "判断段落是否与检索问题相关：段落是否回答了问题。只回答“是”或“否”。",
}
_ASK = {"en": "Query: {query}\n\nPassage: {passage}\n\nIs the passage relevant to the query?",
        "zh": "问题：{query}\n\n段落：{passage}\n\n这个段落与问题相关吗？"}
_YES_NO = {"en": (("yes", "Yes"), ("no", "No")), "zh": (("是",), ("否", "不"))}


class LlmJudgeReranker:
    def __init__(self, model: str | None = None, device: str | None = None,
                 max_passage_tokens: int = 160) -> None:
        self.generator = XLlamaGenerator(model)
        self.name = f"llm-judge:{self.generator.id}"
        self.max_passage_tokens = max_passage_tokens

    def score(self, query: str, passages: Sequence[Passage]) -> np.ndarray:
        if not passages:
            return np.zeros(0)
        gen = self.generator
        chat = gen.chat_template()
        if chat is None:
            raise ModelUnavailableError(f"{gen.id} is a base model; the relevance judge needs "
                                        "an instruct model (e.g. llm-judge:qwen2.5-0.5b)")
        lang = "zh" if has_cjk(query) else "en"
        yes, no = _YES_NO[lang]

        def prompt(passage: str) -> str:
            return chat([("system", _SYSTEM[lang]),
                         ("user", _ASK[lang].format(query=query.strip(), passage=passage))])

        # The prompt up to the passage is the same for every passage: it is read once and
        # kept, and every passage is read after it, so a score does not depend on which
        # passage came before.
        head = prompt("")
        return np.array([gen.log_odds(prompt(gen.truncate(p.embed_text, self.max_passage_tokens)),
                                      yes, no, head=head) for p in passages])
