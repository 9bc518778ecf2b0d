"""Rerankers: score (query, passage) pairs jointly, to reorder the top first-stage hits.

Two implementations of one protocol:

  CrossEncoderReranker       any sentence-transformers CrossEncoder folder on disk (no PyPI
                             package ships cross-encoder weights that load offline, so none is
                             bundled; point ragline at one you have)
  QueryLikelihoodReranker    unsupervised: score(z) = log p(query | z) under the bundled
                             generator (Sachan et al. 2022, "Improving Passage Retrieval with
                             Zero-Shot Question Generation"), no extra weights needed

    reranker = load_reranker("query-likelihood")
    scores = reranker.score("capital of France?", passages)       # (n,), higher is better
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragline.errors import ConfigError, ModelUnavailableError
from ragline.registry import RERANKERS
from ragline.text import has_cjk
from ragline.types import Passage

if TYPE_CHECKING:  # torch loads only when a reranker is used
    from ragline.model.lm import CausalLM

log = logging.getLogger(__name__)


class Reranker(Protocol):
    name: str

    def score(self, query: str, passages: Sequence[Passage]) -> np.ndarray: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder (never the hub).

    rr = CrossEncoderReranker("models/ms-marco-MiniLM-L-6-v2")
    rr.score("query", passages)
    """

    def __init__(self, path: str | Path, batch_size: int = 32, max_length: int = 512,
                 device: str | None = None) -> None:
        self.path = Path(path)
        self.name = f"cross-encoder:{self.path}"
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        if not self.path.is_dir():
            raise ModelUnavailableError(f"cross-encoder folder not found: {self.path}")
        from sentence_transformers import CrossEncoder

        from ragline.devices import pick_device

        try:
            self._model = CrossEncoder(str(self.path), max_length=self.max_length,
                                       device=pick_device(self.device), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(f"{self.path} is not a loadable cross-encoder ({e})") from None

    def score(self, query: str, passages: Sequence[Passage]) -> np.ndarray:
        if not passages:
            return np.zeros(0)
        self.load()
        pairs = [(query, p.embed_text) for p in passages]
        scores = self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False,
                                     convert_to_numpy=True)
        scores = np.asarray(scores, dtype=np.float64)
        # a two-label (not relevant, relevant) head: rank by the relevant logit's margin
        return scores[:, -1] - scores[:, 0] if scores.ndim == 2 else scores


# (text before the passage, text after it): the query's log-probability is read after these
_QL_PROMPT = {"en": ("Passage: ", "\nA question or claim that this passage answers:"),
              "zh": ("段落：", "\n这个段落能回答的问题：")}


class QueryLikelihoodReranker:
    """log p(query | passage) under a causal LM, summed over the query's tokens (the query is
    the same for every passage, so sum and mean rank alike). Passages are cut to
    `max_passage_tokens`, and scored `batch_size` at a time in one forward pass each.

    rr = QueryLikelihoodReranker()          # the bundled Gemma 3 270M, loaded on first use
    rr.score("Who built the Great Wall?", passages)
    """

    name = "query-likelihood"

    def __init__(self, lm: CausalLM | None = None, max_passage_tokens: int = 192,
                 batch_size: int = 8, device: str | None = None) -> None:
        self._lm = lm
        self.max_passage_tokens = max_passage_tokens
        self.batch_size = batch_size
        self.device = device

    @property
    def lm(self) -> CausalLM:
        if self._lm is None:
            from ragline.model.lm import CausalLM

            # a base model: the prompt is a continuation, and it was measured with this one
            self._lm = CausalLM.load("gemma-270m", device=self.device)
        return self._lm

    def _context(self, passage: Passage, lang: str) -> list[int]:
        tok = self.lm.tokenizer
        head, tail = _QL_PROMPT[lang]
        body = tok.encode(passage.embed_text)[: self.max_passage_tokens]
        bos = [tok.bos_id] if tok.bos_id is not None else []
        return bos + tok.encode(head) + body + tok.encode(tail)

    def score(self, query: str, passages: Sequence[Passage]) -> np.ndarray:
        import torch

        if not passages:
            return np.zeros(0)
        lang = "zh" if has_cjk(query) else "en"
        target = self.lm.tokenizer.encode(" " + query.strip())
        if not target:
            raise ConfigError("the query has no tokens to score")
        out = []
        with torch.no_grad():
            for i in range(0, len(passages), self.batch_size):
                batch = passages[i:i + self.batch_size]
                ctx = [self._context(p, lang) for p in batch]
                lp, _ = self.lm.target_logprobs(ctx, [target] * len(batch))  # (b, T)
                out.append(lp.sum(dim=1).double().cpu().numpy())
        return np.concatenate(out)


def load_reranker(name: str, device: str | None = None) -> Reranker:
    """A name of ragline.registry.RERANKERS ('query-likelihood' or 'ql', 'cross-encoder:PATH'),
    or a CrossEncoder folder."""
    if RERANKERS.find(name) is not None:
        reranker: Reranker = RERANKERS.create(name, device=device)
        return reranker
    if Path(name).expanduser().is_dir():
        return CrossEncoderReranker(Path(name).expanduser(), device=device)
    raise ConfigError(f"unknown reranker '{name}'; use {RERANKERS.usage()} (a "
                      "sentence-transformers CrossEncoder folder)")
