"""Relevance judged by an instruct generator: score(z) = log p(yes) − log p(no) for "is this
passage relevant to the query?", read from the model's next-token logits (one forward pass a
passage, no sampling). A reranker (ragline.retrieve.rerank's protocol) that needs no weights
beyond the answer model's.

    judge = LlmJudgeReranker()                   # the default answer model
    judge.score("When was it completed?", passages)   # (n,), higher is more relevant

The query comes before the passage, so the system turn and the query stay in llama.cpp's
cache: only each passage's tokens are read again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragline.errors import ModelUnavailableError
from ragline.generate.llama import LlamaCppGenerator
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
        self.generator = LlamaCppGenerator(model)
        self.name = f"llm-judge:{self.generator.id}"
        self.max_passage_tokens = max_passage_tokens

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        llm = self.generator.llm
        return sorted({llm.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0]
                       for w in words})

    def score(self, query: str, passages: Sequence[Passage]) -> np.ndarray:
        import llama_cpp

        if not passages:
            return np.zeros(0)
        gen = self.generator
        chat = gen.chat_template()
        if chat is None:
            raise ModelUnavailableError(f"{gen.id} is a base model; the relevance judge needs "
                                        "an instruct model (e.g. llm-judge:qwen2.5-0.5b)")
        llm = gen.llm
        lang = "zh" if has_cjk(query) else "en"
        yes, no = (self._first_tokens(w) for w in _YES_NO[lang])

        def tokens_for(passage: str) -> list[int]:
            prompt = chat([("system", _SYSTEM[lang]),
                           ("user", _ASK[lang].format(query=query.strip(), passage=passage))])
            return list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

        # The prompt up to the passage is the same for every passage: it is read once and
        # kept in the cache. Every passage is read from the same split point, so its score
        # does not depend on which passage came before it.
        head = tokens_for("")
        out = np.zeros(len(passages))
        for i, p in enumerate(passages):
            body = llm.tokenize(p.embed_text.encode("utf-8"), add_bos=False)
            tokens = tokens_for(llm.detokenize(body[: self.max_passage_tokens])
                                .decode("utf-8", "ignore"))[: gen.n_ctx - 1]
            split = 0
            for a, b in zip(head, tokens[:-1], strict=False):
                if a != b:
                    break
                split += 1
            if list(llm.input_ids[:split]) != tokens[:split] or llm.n_tokens < split:
                llm.n_tokens = 0
                llm.eval(tokens[:split])
            llm.n_tokens = split
            llm.eval(tokens[split:])
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                           shape=(llm.n_vocab(),))
            # log p(yes) − log p(no): the softmax's normalizer cancels out
            out[i] = np.logaddexp.reduce(logits[yes]) - np.logaddexp.reduce(logits[no])
        return out
