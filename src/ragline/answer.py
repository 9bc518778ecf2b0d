"""The Answerer: a question → passages → a generated answer that cites them, in two phases.

`prepare` checks the request and retrieves (fast; fails before any generation), `answer`
generates (slow; the server queues it). Any registered generator answers (ragline.registry.
MODELS); citations come from the [n] markers a prompted generator writes, or from the RAG
models' posterior p(z|x,y).

The other tasks (ragline.generate.tasks) go the same way: a text written from the passages
(each sentence passed on with the passages that support it, one none supports left out), and
a question written for a given answer (Jeopardy question generation).

    answerer = Answerer(searcher, config, rag_model)
    prepared = answerer.prepare("Who built it?", k=5)           # ConfigError if bad
    for piece in answerer.answer(prepared): ...                  # text…, then the Answer
    answerer.prepare("the Eiffel Tower", task="question", answer="1889")
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
    SentenceGate,
    is_refusal,
    posterior_citations,
    question_citation,
    source_citation,
    support,
    topic_share,
)
from ragline.generate.followup import Rewrite, Rewriter, stands_alone
from ragline.generate.prompted import PromptGenerator
from ragline.generate.tasks import ANSWER, QUESTION, Task, task_named
from ragline.qa import answer_in
from ragline.registry import MODELS, RETRIEVERS
from ragline.retrieve.searcher import MAX_QUERY_CHARS, Searcher, check_k, check_query
from ragline.types import Answer, Citation, Hit, Turn

# RAG-Token and RAG-Sequence run the generator over every passage (k × beams sequences): the
# paper trains with 5–10 and decodes with up to 50.
MAX_RAG_K = 50
RAG_MODELS = ("rag-token", "rag-sequence")

# A text is written from the passages close to the best one: p(z|x) at least this share of
# the best's (a cosine within 0.15 of it at the default prior scale of 20). The example
# documents' five passages for "Explain how the Eiffel Tower was built" hold two about the
# tower and three about other things, which a small model summarized too.
WRITE_MIN_SHARE = 0.05
# ... and they must hold at least half of the instruction's topic words (topic_share). On the
# 50 instructions of bench/write.py and 20 off-topic ones, with the relevance gate, it let
# through 49 of the 50 and stopped 19 of the 20 (docs/measured/writing-translation.md).
WRITE_MIN_TOPIC = 0.5


def check_rag_k(k: int | None) -> None:
    if k is not None and k > MAX_RAG_K:
        raise ConfigError(f"the RAG models read each passage separately; k must be ≤ "
                          f"{MAX_RAG_K}, got {k}")


@dataclass(frozen=True)
class Prepared:
    """A checked question with its passages, ready to generate from. `request` is what the
    generator is given: the question, or, for the question task, the answer. A follow-up's
    `question` is its standalone form and `asked` what the user typed."""

    question: str
    hits: tuple[Hit, ...]
    model: str
    options: GenerateOptions
    timings: dict[str, float] = field(default_factory=dict)
    request: str = ""
    asked: str = ""
    followup: bool = False


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

    def share_prompted(self, other: Answerer) -> None:
        """Generate with `other`'s prompted model (one copy of the local model for several
        indexes); the RAG models stay this index's own (their question encoder is)."""
        if other is not self:
            self._generators["concat"] = other.generator("concat")
            self._generators.pop("per-passage", None)

    def generator(self, model: str | None = None) -> Generator:
        """The generator of a model (default: the config's), made on first use."""
        model = MODELS.canonical(self.config.model.kind if model is None else model)
        if model not in self._generators:
            if model == "per-passage":  # reads with the concat generator's model: one copy
                from ragline.generate.reader import per_passage_reader

                self._generators[model] = per_passage_reader(self.config,
                                                             backend=self.generator("concat"))
            else:
                self._generators[model] = MODELS.create(model, self.config, self.rag_model)
        return self._generators[model]

    # ------------------------------------------------------------ phase 0: follow-ups

    def needs_rewrite(self, question: str, history: Sequence[Turn]) -> bool:
        """Whether `rewrite` will ask the model (a follow-up that does not stand alone)."""
        return any(t.role != "system" and t.content.strip() for t in history) and \
            not stands_alone(question)

    def rewrite(self, question: str, history: Sequence[Turn]) -> Rewrite:
        """A follow-up asked after `history` as a standalone question, by the answer model
        (ragline.generate.followup); the question itself when it stands alone."""
        check_query(question, "question")
        if not self.needs_rewrite(question, history):
            return Rewrite(question, question, False)
        backend = self.generator("concat")
        if not isinstance(backend, PromptGenerator):
            raise ConfigError("follow-up questions are rewritten by a prompted model; "
                              f"the concat generator here is {type(backend).__name__}")
        return Rewriter(backend).rewrite(question, history)

    # ------------------------------------------------------------ phase 1

    def check(self, question: str, k: int | None = None, mode: str | None = None,
              model: str | None = None, beams: int | None = None,
              max_tokens: int | None = None, temperature: float | None = None,
              task: str = "answer", answer: str | None = None, followup: bool = False,
              n_hits: int | None = None) -> tuple[str, Task]:
        """Every check of a request that needs no model and no retrieval (prepare's first
        step; the server's before it queues a follow-up's rewrite): the model to use and the
        task. A ConfigError says what is wrong."""
        g = self.config.generation
        model = MODELS.canonical(self.config.model.kind if model is None else model)
        kind = task_named(task)
        check_query(question, "question" if kind is ANSWER else "instruction")
        if followup and kind is QUESTION:
            raise ConfigError("the question task takes no conversation history")
        if kind is QUESTION:
            if answer is None or not answer.strip():
                raise ConfigError("the question task needs the answer the question is to have "
                                  "(--answer A)")
            check_query(answer, "answer")
            both = len(question.strip()) + 1 + len(answer.strip())
            if both > MAX_QUERY_CHARS:  # both are searched for, as one query
                raise ConfigError(f"the topic and the answer together have {both:,} "
                                  f"characters; at most {MAX_QUERY_CHARS:,} are allowed")
        elif answer is not None:
            raise ConfigError("an answer is given only to the question task (--task question)")
        if model == "per-passage" and kind is not ANSWER:
            model = "concat"  # a text is written from every passage at once
        check_sampling(max_tokens, temperature, g.n_ctx)
        if beams is not None and beams < 1:
            raise ConfigError(f"beams must be ≥ 1, got {beams}")
        if k is not None:
            check_k(k)
        if mode is not None:
            RETRIEVERS.check(mode)
        if model in RAG_MODELS:
            check_rag_k(n_hits if n_hits is not None else k)
        return model, kind

    def prepare(self, question: str, k: int | None = None, mode: str | None = None,
                model: str | None = None, beams: int | None = None,
                max_tokens: int | None = None, temperature: float | None = None,
                hits: Sequence[Hit] | None = None, task: str = "answer",
                answer: str | None = None, history: Sequence[Turn] = (),
                rewrite: Rewrite | None = None) -> Prepared:
        """Check the request and retrieve its passages (unless `hits` are given). Bad
        arguments (k out of range, an unknown mode, model or task, an over-long question) are
        a ConfigError here, before anything is generated. `task` "text" writes from the
        passages about `question` (an instruction); "question" writes a question whose answer
        is `answer`, retrieving for both. `history`: the earlier turns of a conversation; a
        follow-up is made standalone first (`rewrite`, a model call unless it stands alone;
        pass `rewrite` when it has been made already)."""
        model, kind = self.check(question, k, mode, model, beams, max_tokens, temperature,
                                 task, answer, bool(history) or rewrite is not None,
                                 None if hits is None else len(hits))
        g = self.config.generation
        asked, timings = question, {}
        followup = bool(history) or rewrite is not None
        if rewrite is None and history:  # after every check: a bad argument costs no model call
            rewrite = self.rewrite(question, history)
        if rewrite is not None:
            question = rewrite.question
            if rewrite.rewritten:
                timings["rewrite_s"] = rewrite.seconds
        request = query = question
        if kind is QUESTION:
            given = (answer or "").strip()  # check() made sure there is one
            request, query = given, f"{question.strip()} {given}"
        options = GenerateOptions(
            max_tokens=max_tokens or kind.max_tokens or g.max_tokens,
            temperature=g.temperature if temperature is None else temperature,
            beams=self.config.model.beams if beams is None else beams, task=kind,
            instructions="\n".join(t.content.strip() for t in history
                                    if t.role == "system" and t.content.strip()))
        if hits is None:
            t0 = time.perf_counter()
            hits = self.searcher.search(query, k=k, mode=mode)
            timings["retrieve_s"] = time.perf_counter() - t0
        return Prepared(question, tuple(hits), model, options, timings, request, asked, followup)

    # ------------------------------------------------------------ phase 2

    def answer(self, prepared: Prepared) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated (citation markers included), then the
        Answer. A prompted generator streams; the RAG models yield their text once, at the
        end. Refusals and answers the passages do not back end as "not found"."""
        if prepared.options.task is not ANSWER:
            yield from self._write(prepared)
            return
        q, hits, model = prepared.question, list(prepared.hits), prepared.model
        t0 = time.perf_counter()
        timings = dict(prepared.timings)

        confidence: float | None = None

        def done(text: str, cites: Sequence[Citation], reason: str | None = None) -> Answer:
            timings["total_s"] = _before(timings) + time.perf_counter() - t0
            return Answer(prepared.asked or q, text, tuple(cites), tuple(hits), reason is None,
                          timings, model, reason, confidence=confidence,
                          standalone_question=q if prepared.followup else None)

        if not self.relevant(hits):
            text = ANSWER.not_found_message(q)
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
                timings["first_token_s"] = _before(timings) + time.perf_counter() - t0
            if generator.streams:
                out = stream.feed(item)
                if out:
                    parts.append(out)
                    yield out
        confidence = result.confidence
        if result.source is not None or result.confidence is not None:
            # read from one passage (the per-passage reader), cited after it
            text = result.text.strip()
            cites = [] if result.source is None else [source_citation(text, hits, result.source)]
            markers = "".join(f" [{c.marker}]" for c in cites)
        elif result.posterior is None:  # the text cites with [n] markers: check them
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
            cites = posterior_citations(text, hits, result.posterior,
                                         self.config.generation.min_support)
            markers = " " + "".join(f"[{c.marker}]" for c in cites)
        if result.confidence is not None and result.source is None:
            # no passage read gave an answer the reader is sure of (0: it wrote none)
            reason: str | None = "model_declined" if result.confidence == 0.0 else "low_confidence"
        else:
            reason = self._refusal(text, [hits[c.marker - 1] for c in cites] if result.source
                                   is not None else hits)
        if reason is not None:
            if not generator.streams:
                timings.setdefault("first_token_s", _before(timings) + time.perf_counter() - t0)
                yield ANSWER.not_found_message(q)
            yield done(ANSWER.not_found_message(q), (), reason)
            return
        if not generator.streams:
            yield text + markers
        elif markers:
            yield markers
        yield done(text + markers, cites)

    def _write(self, prepared: Prepared) -> Iterator[str | Answer]:
        """A text or a question from the passages, streamed a sentence at a time. Every
        sentence of a text goes out with the passages that support it; one that none supports
        is left out (Answer.dropped). A question is cited to the passage that holds its
        answer. Refused: nothing relevant retrieved, no passage holding the question's answer,
        the model declining, or (a text) no sentence supported."""
        task, hits, model = prepared.options.task, list(prepared.hits), prepared.model
        if task is not QUESTION and hits and all(h.prob is not None for h in hits):
            best = max(h.prob or 0.0 for h in hits)
            hits = [h for h in hits if (h.prob or 0.0) >= WRITE_MIN_SHARE * best]
        t0 = time.perf_counter()
        timings = dict(prepared.timings)
        refusal = task.not_found_message(prepared.request)

        def done(text: str, cites: Sequence[Citation], reason: str | None = None,
                 dropped: Sequence[str] = ()) -> Answer:
            timings["total_s"] = _before(timings) + time.perf_counter() - t0
            return Answer(prepared.asked or prepared.question, text, tuple(cites), tuple(hits),
                          reason is None, timings, model, reason, task.name, tuple(dropped),
                          standalone_question=prepared.question if prepared.followup else None)

        reason = None if self.relevant(hits) else "not_relevant" if hits else "no_passages"
        if reason is None and task is not QUESTION and topic_share(
                prepared.question, hits) < WRITE_MIN_TOPIC:
            reason = "off_topic"
        if reason is None and task is QUESTION and not any(
                answer_in(h.passage.embed_text, [prepared.request]) for h in hits):
            reason = "answer_not_found"
        if reason is not None:
            yield refusal
            yield done(refusal, (), reason)
            return
        generator = self.generator(model)
        gate = SentenceGate(hits)
        raw: list[str] = []
        out: list[str] = []
        for item in generator.generate(prepared.request, hits, prepared.options):
            if isinstance(item, Generation):
                continue
            if "first_token_s" not in timings:
                timings["first_token_s"] = _before(timings) + time.perf_counter() - t0
            raw.append(item)
            if task is not QUESTION and (piece := gate.feed(item)):
                out.append(piece)
                yield piece
        text = "".join(raw).strip()
        if task is QUESTION:  # one question, cited to where its answer is
            if not text or is_refusal(text):
                yield refusal
                yield done(refusal, (), "model_declined")
                return
            text = text.splitlines()[0].strip()
            cite = question_citation(text, prepared.request, hits)
            text = f"{text} [{cite.marker}]"
            yield text
            yield done(text, [cite])
            return
        if piece := gate.finish():
            out.append(piece)
            yield piece
        if not gate.kept:  # "I don't know." is a sentence no passage supports too
            yield refusal
            yield done(refusal, (), "model_declined" if not text or is_refusal(text)
                       else "unsupported", gate.dropped)
            return
        cites = [gate.citations[n] for n in sorted(gate.citations)]
        yield done("".join(out).strip(), cites, dropped=gate.dropped)

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

    def relevant(self, hits: Sequence[Hit]) -> bool:
        """Whether any passage is relevant enough to generate from. The threshold is
        calibrated for the bundled MiniLM; other encoders' score scales differ, so they are
        never gated by it."""
        g = self.config.generation
        best = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
        gated = self.searcher.index.manifest.encoder.id.endswith("all-MiniLM-L6-v2")
        return bool(hits) and not (g.min_relevance is not None and best is not None
                                   and best < g.min_relevance and gated)

    def _refusal(self, text: str, hits: Sequence[Hit]) -> str | None:
        """Why the generated text is no answer (ragline.types.REFUSAL_REASONS), or None: the
        model wrote none or declined, or the passages it was read from do not hold half of
        its words (an invented answer). Whether the passages *state* the answer is the
        per-passage reader's judgement (ragline.generate.reader), not a word count."""
        if not text or is_refusal(text):
            return "model_declined"
        if support(text, list(hits)) < self.config.generation.min_support:
            return "unsupported"
        return None


def _before(timings: dict[str, float]) -> float:
    """The seconds spent before generation: the rewrite of a follow-up and retrieval."""
    return timings.get("rewrite_s", 0.0) + timings.get("retrieve_s", 0.0)
