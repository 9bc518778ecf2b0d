"""The Answerer: a question → passages → a generated answer that cites them, in two phases.

`prepare` checks the request and retrieves (fast; fails before any generation), `answer`
generates (slow; the server queues it). Any registered generator answers (ragline.registry.
MODELS); citations come from the [n] markers a prompted generator writes, or from the RAG
models' posterior p(z|x,y).

    answerer = Answerer(searcher, config, rag_model)
    prepared = answerer.prepare("Who built it?", k=5)           # ConfigError if bad
    for piece in answerer.answer(prepared): ...                  # text…, then the Answer
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragline.config import Config, check_sampling
from ragline.errors import ConfigError
from ragline.generate.base import GenerateOptions, Generation, Generator
from ragline.generate.citations import (
    CitationStream,
    best_span,
    grounding,
    is_refusal,
    support,
)
from ragline.generate.prompts import not_found_message
from ragline.registry import MODELS
from ragline.retrieve.searcher import Searcher, check_k, check_query
from ragline.text import tokenize
from ragline.types import Answer, Citation, Hit

# RAG-Token and RAG-Sequence run the generator over every passage (k × beams sequences): the
# paper trains with 5–10 and decodes with up to 50.
MAX_RAG_K = 50


def check_rag_k(k: int | None) -> None:
    if k is not None and k > MAX_RAG_K:
        raise ConfigError(f"the RAG models read each passage separately; k must be ≤ "
                          f"{MAX_RAG_K}, got {k}")


@dataclass(frozen=True)
class Prepared:
    """A checked question with its passages, ready to generate from."""

    question: str
    hits: tuple[Hit, ...]
    model: str
    options: GenerateOptions
    timings: dict[str, float] = field(default_factory=dict)


class Answerer:
    """`generator`: the concat generator to use instead of the configured backend."""

    def __init__(self, searcher: Searcher, config: Config | None = None,
                 rag_model: Callable[[], Any] | None = None,
                 generator: Generator | None = None) -> None:
        self.searcher = searcher
        self.config = config or Config()
        self.rag_model = rag_model
        self._generators: dict[str, Generator] = {"concat": generator} if generator else {}

    def using(self, searcher: Searcher) -> Answerer:
        """The same answerer (and generators) over another searcher."""
        other = Answerer(searcher, self.config, self.rag_model)
        other._generators = self._generators
        return other

    def generator(self, model: str | None = None) -> Generator:
        """The generator of a model (default: the config's), made on first use."""
        model = MODELS.canonical(self.config.model.kind if model is None else model)
        if model not in self._generators:
            self._generators[model] = MODELS.create(model, self.config, self.rag_model)
        return self._generators[model]

    # ------------------------------------------------------------ phase 1

    def prepare(self, question: str, k: int | None = None, mode: str | None = None,
                model: str | None = None, beams: int | None = None,
                max_tokens: int | None = None, temperature: float | None = None,
                hits: Sequence[Hit] | None = None) -> Prepared:
        """Check the request and retrieve its passages (unless `hits` are given). Bad
        arguments (k out of range, an unknown mode or model, an over-long question) are a
        ConfigError here, before anything is generated."""
        g = self.config.generation
        model = MODELS.canonical(self.config.model.kind if model is None else model)
        check_query(question, "question")
        check_sampling(max_tokens, temperature, g.n_ctx)
        if beams is not None and beams < 1:
            raise ConfigError(f"beams must be ≥ 1, got {beams}")
        if k is not None:
            check_k(k)
        if model != "concat":
            check_rag_k(len(hits) if hits is not None else k)
        options = GenerateOptions(max_tokens=g.max_tokens if max_tokens is None else max_tokens,
                                  temperature=g.temperature if temperature is None else temperature,
                                  beams=self.config.model.beams if beams is None else beams)
        timings = {}
        if hits is None:
            t0 = time.perf_counter()
            hits = self.searcher.search(question, k=k, mode=mode)
            timings["retrieve_s"] = time.perf_counter() - t0
        return Prepared(question, tuple(hits), model, options, timings)

    # ------------------------------------------------------------ phase 2

    def answer(self, prepared: Prepared) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated (citation markers included), then the
        Answer. A prompted generator streams; the RAG models yield their text once, at the
        end. Refusals and answers the passages do not back end as "not found"."""
        q, hits, model = prepared.question, list(prepared.hits), prepared.model
        t0 = time.perf_counter()
        timings = dict(prepared.timings)

        def done(text: str, cites: Sequence[Citation], reason: str | None = None) -> Answer:
            timings["total_s"] = timings.get("retrieve_s", 0.0) + time.perf_counter() - t0
            return Answer(q, text, tuple(cites), tuple(hits), reason is None, timings, model,
                          reason)

        if not self._relevant(hits):
            text = not_found_message(q)
            yield text
            yield done(text, (), "not_relevant" if hits else "no_passages")
            return
        generator = self.generator(model)
        stream = CitationStream(hits, min_support=self.config.generation.min_support)
        parts: list[str] = []
        result = Generation("")
        for item in generator.generate(q, hits, prepared.options):
            if isinstance(item, Generation):
                result = item
                continue
            if "first_token_s" not in timings:
                timings["first_token_s"] = timings.get("retrieve_s", 0.0) + time.perf_counter() - t0
            if generator.streams:
                out = stream.feed(item)
                if out:
                    parts.append(out)
                    yield out
        if result.posterior is None:  # the text cites with [n] markers: check them
            if not generator.streams:
                parts.append(stream.feed(result.text.lstrip()))
            tail = stream.finish()
            if tail:
                parts.append(tail)
                if generator.streams:
                    yield tail
            text = "".join(parts).strip()
            cites = [stream.citations[n] for n in sorted(stream.citations)]
            markers = ""
        else:  # the passages that explain the answer are cited after it
            text = result.text.strip()
            cites = _posterior_citations(text, hits, result.posterior,
                                         self.config.generation.min_support)
            markers = " " + "".join(f"[{c.marker}]" for c in cites)
        reason = self._refusal(q, text, hits)
        if reason is not None:
            if not generator.streams:
                yield not_found_message(q)
            yield done(not_found_message(q), (), reason)
            return
        if not generator.streams:
            yield text + markers
        elif markers:
            yield markers
        yield done(text + markers, cites)

    def ask(self, question: str, **kwargs: Any) -> Answer:
        """`prepare` and `answer` in one call; the Answer only."""
        answer = None
        for piece in self.answer(self.prepare(question, **kwargs)):
            if isinstance(piece, Answer):
                answer = piece
        if answer is None:
            raise RuntimeError("the generation ended without an answer")
        return answer

    # ------------------------------------------------------------ checks

    def _relevant(self, hits: Sequence[Hit]) -> bool:
        """Whether any passage is relevant enough to generate from. The threshold is
        calibrated for the bundled MiniLM; other encoders' score scales differ, so they are
        never gated by it."""
        g = self.config.generation
        best = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
        gated = self.searcher.index.manifest.encoder.id.endswith("all-MiniLM-L6-v2")
        return bool(hits) and not (g.min_relevance is not None and best is not None
                                   and best < g.min_relevance and gated)

    def _refusal(self, question: str, text: str, hits: Sequence[Hit]) -> str | None:
        """Why the generated text is no answer (ragline.types.REFUSAL_REASONS), or None.
        Refusals and answers the passages do not back are reported as "not found"."""
        if not text or is_refusal(text):
            return "model_declined"
        if support(text, list(hits)) < self.config.generation.min_support:
            return "unsupported"
        if grounding(question, text, list(hits)) < self.config.generation.min_grounding:
            return "off_topic"
        return None


def _posterior_citations(text: str, hits: Sequence[Hit], posterior: Sequence[float],
                         min_support: float) -> list[Citation]:
    """The passages that explain a RAG answer and support it: p(z|x,y) ≥ 0.2 and at least
    `min_support` of the answer's content words in the passage; three at most. When none
    qualifies, the one that supports it best (ties: the more probable). A posterior alone is
    not enough: over a flat prior an unrelated passage can carry 0.3 of it."""
    held = [support(text, [h]) for h in hits]  # share of the answer's words in each passage
    claim = tokenize(text)
    order = sorted(range(len(hits)), key=lambda i: -posterior[i])
    chosen = [i for i in order if posterior[i] >= 0.2 and held[i] >= min_support][:3]
    if not chosen:
        chosen = [max(range(len(hits)), key=lambda i: (held[i], posterior[i]))]
    cites = []
    for i in sorted(chosen):
        span, _ = best_span(claim, hits[i].passage.text)
        cites.append(Citation(i + 1, hits[i].passage, hits[i].score, posterior[i], span))
    return cites
