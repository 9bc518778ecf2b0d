"""The RAG model over retrieved hits: RAG-Token and RAG-Sequence generation and scoring, the
all-passages-in-one-prompt baseline ("concat"), and the training loss.

    rm = RagModel(CausalLM.load("qwen2.5-0.5b"))     # or LlamaLM(...).load(), to answer fast
    gen = rm.generate(question, hits, model="rag-token", beams=4)
    gen.text, gen.score, gen.posterior            # posterior: p(z|x,y) per hit
    rm.score(question, hits, "Paris", model="rag-sequence")   # log p(y|x)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ragline.config import DEFAULT_PRIOR_SCALE
from ragline.errors import ConfigError
from ragline.generate.prompts import rag_prompt, render_selection, select_sentences
from ragline.generate.tasks import ANSWER, Task
from ragline.model.decode import (
    Candidate,
    beam_search_each,
    rag_sequence_search,
    rag_token_search,
    score_under_each,
)
from ragline.model.lm import LanguageModel
from ragline.model.marginal import doc_log_prior, doc_posterior, sequence_logprob, token_logprob
from ragline.registry import MODELS
from ragline.types import Hit

_MIN_PASSAGE_TOKENS = 24  # a passage read at all gets at least this many tokens


@dataclass(frozen=True)
class Generation:
    text: str
    score: float                    # log p(y, end | x) under the model that decoded it
    posterior: tuple[float, ...]    # p(z|x,y) for each hit, in hit order (concat: the prior)
    tokens: tuple[int, ...]
    finished: bool                  # False when cut by max_new_tokens


class DocPrior(nn.Module):
    """p(z|x) = softmax over the top k of s · d(z)·q(x), with a learnable inverse temperature
    s > 0. It learns as log s, so that a gradient step can never make it negative and moves it
    by a ratio, not an amount (20 → 22 is the same step as 2 → 2.2)."""

    def __init__(self, scale: float = DEFAULT_PRIOR_SCALE) -> None:
        super().__init__()
        if not scale > 0:
            raise ConfigError(f"the prior scale must be > 0, got {scale}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    @property
    def scale(self) -> float:
        return float(self.log_scale.detach().exp())

    def set_scale(self, scale: float) -> None:
        with torch.no_grad():
            self.log_scale.fill_(math.log(scale))

    def forward(self, scores: Tensor) -> Tensor:
        """scores (..., k) d(z)·q(x) → log p(z|x) (..., k)."""
        return doc_log_prior(scores, self.log_scale.to(scores.device).exp())


class RagModel:
    """Conditions a language model (torch `CausalLM` or llama.cpp `LlamaLM`) on retrieved hits.
    Cheap to build; the LM is loaded already."""

    def __init__(self, lm: LanguageModel, max_passage_tokens: int = 192, max_new_tokens: int = 32,
                 prior_scale: float = DEFAULT_PRIOR_SCALE, min_prior: float = 0.0,
                 passage_budget: int | None = None) -> None:
        self.lm = lm
        self.max_passage_tokens = max_passage_tokens
        # generation: the passages read share this many tokens (each at most
        # max_passage_tokens); None gives each max_passage_tokens
        self.passage_budget = passage_budget
        self.max_new_tokens = max_new_tokens
        self.min_prior = min_prior  # generation skips passages with a smaller p(z|x)
        self.prior = DocPrior(prior_scale)

    # ------------------------------------------------------------ inputs

    def _bos(self) -> list[int]:
        bos = self.lm.tokenizer.bos_id
        return [bos] if bos is not None else []

    def _chat(self, turns: list[tuple[str, str]]) -> str | None:
        """An instruct model's chat template applied, or None for a base model."""
        chat = getattr(self.lm.tokenizer, "chat", None)
        return chat(turns) if chat is not None else None

    @functools.cached_property
    def instruct(self) -> bool:
        """Whether the generator reads its input in a chat template (its tokenizer has one)."""
        return self._chat([("user", "?")]) is not None

    def passage_context(self, question: str, hit: Hit, max_tokens: int | None = None,
                        task: Task = ANSWER) -> list[int]:
        """bos, title, passage, question (or the task's request), answer cue; for an instruct
        model, the same in its chat template (a system turn, then the user's). A passage over
        `max_tokens` (default max_passage_tokens) keeps the sentences that share most with the
        question."""
        tok = self.lm.tokenizer
        p = hit.passage
        limit = max_tokens or self.max_passage_tokens
        head = tok.encode(p.title + "\n") if p.title else []
        body = tok.encode(p.text)
        if len(body) > limit:
            chosen = select_sentences(question, [hit], lambda s: len(tok.encode(s)), limit)
            text = render_selection([hit], chosen)[0][1] if chosen else p.text
            body = tok.encode(text)
        body = body[:limit]
        tail, _ = task.passage_parts(question)
        if self.instruct:
            turns, user = task.passage_turns(question)
            chat = self._chat([*turns, ("user", user.format(passage=tok.decode(head + body)))])
            return tok.encode(chat or "")  # the template places its own special tokens
        return self._bos() + head + body + tok.encode(tail)

    def concat_context(self, question: str, hits: Sequence[Hit], task: Task = ANSWER) -> list[int]:
        if self.instruct:
            return self.lm.tokenizer.encode(rag_prompt(
                question, list(hits), chat=lambda turns: self._chat(turns) or "", task=task))
        return self._bos() + self.lm.tokenizer.encode(rag_prompt(question, list(hits), task=task))

    def answer_tokens(self, question: str, answer: str) -> list[int]:
        """The answer as the model continues it: after "Answer:" (a base model), or as the
        assistant's turn."""
        _, prefix = ANSWER.passage_parts(question)
        return self.lm.tokenizer.encode(("" if self.instruct else prefix) + answer.strip())

    @staticmethod
    def doc_scores(hits: Sequence[Hit]) -> Tensor:
        """d(z)·q(x) of the hits, (k,); hits without a dense score are an error."""
        if any(h.dense_score is None for h in hits):
            raise ConfigError("the RAG models need d(z)·q(x) for every hit; retrieval mode "
                              "'bm25' has no question encoder, use dense or hybrid")
        return torch.tensor([float(h.dense_score) for h in hits])  # type: ignore[arg-type]

    def doc_log_prior(self, hits: Sequence[Hit]) -> Tensor:
        """log p(z|x) from the hits' d(z)·q(x)."""
        with torch.no_grad():
            return self.prior(self.doc_scores(hits))

    # ------------------------------------------------------------ generation

    def generate(self, question: str, hits: Sequence[Hit], model: str = "rag-token",
                 beams: int = 1, thorough: bool = True, task: Task = ANSWER,
                 max_new_tokens: int | None = None) -> Generation:
        """The best output for `question` (a task's request) over `hits`; `max_new_tokens`
        (default: the model's) bounds its length."""
        MODELS.check(model)
        new_tokens = max_new_tokens or self.max_new_tokens
        if not hits:
            raise ConfigError("generation needs at least one retrieved passage")
        if beams < 1:
            raise ConfigError(f"beams must be ≥ 1, got {beams}")
        full_lp = self.doc_log_prior(hits)
        if model == "concat" or self.min_prior <= 0:
            keep = list(range(len(hits)))
        else:
            # A passage whose prior is below min_prior changes p(y|x) by less than that (RAG-
            # Sequence) or each token's probability by less than that (RAG-Token): it is not
            # read. With a sharp prior this saves most of the prompt; a flat one keeps all.
            keep = [i for i, lp in enumerate(full_lp.tolist())
                    if lp >= math.log(self.min_prior)] or [int(full_lp.argmax())]
        doc_lp = torch.log_softmax(full_lp[keep], dim=-1)  # renormalized over what is read
        limits: list[int | None] = [None] * len(keep)
        if self.passage_budget is not None:
            # the prompt, and its reading time, stay bounded, and the budget follows the prior:
            # the passage that explains 99 % of p(y|x) is read in full, one at 0.2 % is glanced at
            limits = [min(self.max_passage_tokens,
                          max(_MIN_PASSAGE_TOKENS, round(self.passage_budget * p)))
                      for p in doc_lp.exp().tolist()]
        contexts = [self.passage_context(question, hits[i], n, task)
                    for i, n in zip(keep, limits, strict=True)]
        cands: list[Candidate]
        if model == "rag-token":
            cands = rag_token_search(self.lm, contexts, doc_lp, beams, new_tokens,
                                     task.multiline)
        elif model == "rag-sequence":
            cands = rag_sequence_search(self.lm, contexts, doc_lp, beams, new_tokens,
                                        thorough=thorough, multiline=task.multiline)
        else:
            cands = beam_search_each(self.lm, [self.concat_context(question, hits, task)], beams,
                                     new_tokens, task.multiline)[0]
        if not cands:
            return Generation("", float("-inf"), tuple(full_lp.exp().tolist()), (), False)
        best = cands[0]
        if model == "concat":
            posterior = full_lp.exp()
        else:
            # which passage explains the answer: p(z|x,y) ∝ p(z|x) p(y|x,z); 0 for the unread
            seq_lp = (torch.tensor([best.per_passage]) if best.per_passage is not None
                      else score_under_each(self.lm, contexts, [best],
                                            end=not task.multiline))  # (1, k')
            posterior = torch.zeros(len(hits))
            posterior[keep] = doc_posterior(doc_lp[None], seq_lp)[0]
        text = self.lm.tokenizer.decode(best.tokens).strip()
        return Generation(text, best.score, tuple(posterior.tolist()), best.tokens, best.finished)

    # ------------------------------------------------------------ scoring and training

    def log_likelihood(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]],
                       answers: Sequence[str], doc_scores: Tensor, model: str) -> Tensor:
        """log p(y|x) for a batch, differentiable in the generator and in doc_scores (B, k),
        the d(z)·q(x) of each question's k hits. All questions need the same k."""
        MODELS.check(model)
        b, k = doc_scores.shape
        targets = [self.answer_tokens(q, a) for q, a in zip(questions, answers, strict=True)]
        if model == "concat":
            ctx = [self.concat_context(q, hs) for q, hs in zip(questions, hits, strict=True)]
            lp, _ = self.lm.target_logprobs(ctx, targets, end=True)
            return lp.sum(-1)  # (B,)
        contexts = [self.passage_context(q, h) for q, hs in zip(questions, hits, strict=True)
                    for h in hs]  # B*k rows, question-major
        lp, mask = self.lm.target_logprobs(contexts, [t for t in targets for _ in range(k)],
                                           end=True)
        tok_lp = lp.view(b, k, -1)  # (B, k, T+1)
        mask = mask.view(b, k, -1)[:, 0, :]  # (B, T+1): the same answer under every passage
        doc_lp = self.prior(doc_scores.to(tok_lp.device))  # (B, k), differentiable in s too
        if model == "rag-sequence":
            return sequence_logprob(doc_lp, tok_lp, mask)
        return token_logprob(doc_lp, tok_lp, mask)

    @torch.no_grad()
    def score(self, question: str, hits: Sequence[Hit], answer: str, model: str) -> float:
        """log p(y|x) of a given answer (followed by the end of the answer) under `model`."""
        if not answer.strip():
            raise ConfigError("the answer to score is empty")
        scores = self.doc_scores(hits) if model != "concat" else torch.zeros(len(hits))
        return float(self.log_likelihood([question], [list(hits)], [answer], scores[None, :],
                                         model)[0])
