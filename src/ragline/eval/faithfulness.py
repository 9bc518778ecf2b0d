"""Faithfulness: does ragline answer when the documents say, refuse when they don't, and cite
passages that back what it wrote?

- Negative rejection (RGB, Chen et al. 2024): each question is asked twice, over its retrieved
  passages, and over the same retrieval with every passage that holds an answer (or comes from
  the question's own paragraph) taken out. The first should be answered, the second refused.
- Citations (ALCE, Gao et al. 2023), per answer sentence: precision is the share of citations
  whose passage alone supports the sentence; recall the share of sentences that the union of
  their cited passages supports.
- Unsupported answers: answers that no retrieved passage supports.

- The trade-off (the per-passage reader): every question's readings of both passage sets
  are kept, so the answered and refused shares, EM and F1 are known at every threshold of
  generation.min_confidence without asking again (`sweep`).

The citation judge is lexical (`supports`): a passage supports a sentence when it contains
the sentence (after SQuAD normalization) or at least 80 % of its content words. Answers here
are short spans, which this judges well; for long free-form answers an NLI model would judge
better. (Whether to answer at all is the reader's own judgement, not this one.)

    report = evaluate_faithfulness(rag, examples, k=5)
    report.refused_unanswerable, report.citation_precision, report.sweep
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from ragline.generate.citations import JUDGE, supports
from ragline.generate.reader import PassageReader, Reading, choose
from ragline.qa import QAExample, answer_in, exact_match, f1_score
from ragline.text import sentence_spans
from ragline.types import Answer, Hit

if TYPE_CHECKING:
    from ragline.rag import RAG

_MARKER = re.compile(r"\[(\d{1,3})\]")


def cited_sentences(text: str) -> list[tuple[str, list[int]]]:
    """(sentence, its markers) for each sentence of an answer; a marker right after a
    sentence's end belongs to that sentence."""
    out: list[tuple[str, list[int]]] = []
    for s, e in sentence_spans(text):
        sentence = text[s:e]
        marks = [int(m) for m in _MARKER.findall(sentence)]
        if not _MARKER.sub("", sentence).strip(" .,;:!?。，；：！？"):
            if out:  # a sentence that is only markers: they belong to the one before
                out[-1][1].extend(marks)
            continue
        out.append((sentence, marks))
    return out


@dataclass
class FaithfulnessReport:
    questions: int
    k: int
    answered_answerable: float = 0.0     # share of answerable questions answered
    refused_unanswerable: float = 0.0    # share of questions refused once their passages left
    em: float = 0.0                      # on the answerable questions (refusals score 0)
    f1: float = 0.0
    citation_precision: float | None = None   # None: no citation was made
    citation_recall: float | None = None
    unsupported: float | None = None     # share of answers no retrieved passage supports
    seconds_per_question: float = 0.0
    judge: str = JUDGE
    refusal_reasons: dict[str, int] = field(default_factory=dict)
    # the per-passage reader at each threshold (None for the other models), and the default
    min_confidence: float | None = None
    sweep: list[SweepPoint] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("rows", "sweep")}
        out["sweep"] = None if self.sweep is None else [p.__dict__ for p in self.sweep]
        return out


@dataclass(frozen=True)
class SweepPoint:
    """The reader at one threshold: shares of answerable questions answered and of
    unanswerable ones refused, EM and F1 on the answerable ones, and the share refused of
    those whose answer is in the k passages."""

    threshold: float
    answered_answerable: float
    refused_unanswerable: float
    em: float
    f1: float
    refused_with_answer: float


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))


def sweep(answerable: Sequence[Sequence[Reading] | None], unanswerable: Sequence[Sequence[Reading] | None],
          examples: Sequence[QAExample], found: Sequence[bool],
          thresholds: Sequence[float] = THRESHOLDS) -> list[SweepPoint]:
    """The reader's answers at each threshold, from each question's readings (None: refused
    before reading, no relevant passage); `found`: the answer is in its k passages."""
    n = max(1, len(examples))
    held = max(1, sum(found))
    points = []
    for t in thresholds:
        em = f1 = answered = refused = lost = 0.0
        for ex, full, neg, has in zip(examples, answerable, unanswerable, found, strict=True):
            chosen = choose(full, t) if full is not None else None
            if chosen is not None:
                answered += 1
                em += exact_match(chosen.text, ex.answers)
                f1 += f1_score(chosen.text, ex.answers)
            else:
                lost += has
            refused += neg is None or choose(neg, t) is None
        points.append(SweepPoint(t, answered / n, refused / n, em / n, f1 / n, lost / held))
    return points


def without_answers(hits: Sequence[Hit], example: QAExample) -> list[Hit]:
    """The hits less every passage that holds an answer or comes from the example's own
    paragraph: what retrieval would find if the documents did not say."""
    context = example.context
    return [h for h in hits if not answer_in(h.passage.text, example.answers)
            and not (context and h.passage.text[:200] in context)]


def evaluate_faithfulness(rag: RAG, examples: Sequence[QAExample], k: int = 5,
                          mode: str | None = None, progress: bool = False,
                          model: str | None = None) -> FaithfulnessReport:
    """Ask every question over its passages, then over its passages with the answers taken
    out (retrieving 4k to keep k after the removal); score refusals and citations."""
    report = FaithfulnessReport(len(examples), k)
    n = max(1, len(examples))
    cites = cites_ok = sentences = sentences_ok = answers = unsupported = 0
    answered = refused = 0
    reader = rag.answerer.generator(model)
    readings: tuple[list[list[Reading] | None], list[list[Reading] | None]] = ([], [])
    found: list[bool] = []
    t0 = time.perf_counter()
    bar = tqdm(examples, desc="faithfulness", unit="question", disable=not progress,
               dynamic_ncols=True)
    for ex in bar:
        hits = rag.search(ex.question, k=4 * k, mode=mode)
        sets = (hits[:k], without_answers(hits, ex)[:k])
        found.append(any(answer_in(h.passage.text, ex.answers) for h in sets[0]))
        if isinstance(reader, PassageReader):  # every reading, for the sweep; then ask
            for kept, passages in zip(readings, sets, strict=True):
                kept.append(list(reader.readings(ex.question, passages))
                            if rag.answerer.relevant(passages) else None)
        full = rag.answerer.ask(ex.question, hits=sets[0], model=model)
        negative = rag.answerer.ask(ex.question, hits=sets[1], model=model)
        text = _MARKER.sub("", full.text).strip() if full.answered else ""
        report.em += exact_match(text, ex.answers)
        report.f1 += f1_score(text, ex.answers)
        answered += full.answered
        refused += negative.refused
        for a in (full, negative):
            if a.refused:
                key = a.reason or "unknown"
                report.refusal_reasons[key] = report.refusal_reasons.get(key, 0) + 1
                continue
            answers += 1
            unsupported += not supports(" ".join(h.passage.text for h in a.hits), a.text)
            c, c_ok, s, s_ok = _citation_counts(a)
            cites, cites_ok, sentences, sentences_ok = (cites + c, cites_ok + c_ok,
                                                        sentences + s, sentences_ok + s_ok)
        report.rows.append({"id": ex.id, "question": ex.question, "gold": list(ex.answers),
                            "answer": full.text, "reason": full.reason,
                            "confidence": full.confidence,
                            "negative_answer": negative.text, "negative_reason": negative.reason,
                            "negative_confidence": negative.confidence})
        bar.set_postfix(answered=f"{answered / len(report.rows):.2f}",
                        refused=f"{refused / len(report.rows):.2f}")
    report.answered_answerable, report.refused_unanswerable = answered / n, refused / n
    report.em, report.f1 = report.em / n, report.f1 / n
    report.citation_precision = cites_ok / cites if cites else None
    report.citation_recall = sentences_ok / sentences if sentences else None
    report.unsupported = unsupported / answers if answers else None
    report.seconds_per_question = (time.perf_counter() - t0) / n
    if isinstance(reader, PassageReader):
        report.min_confidence = reader.min_confidence
        report.sweep = sweep(*readings, examples, found,
                             sorted({*THRESHOLDS, reader.min_confidence}))
    return report


def _citation_counts(answer: Answer) -> tuple[int, int, int, int]:
    """(citations, supported ones, sentences, sentences their citations support)."""
    passages = {c.marker: c.passage.text for c in answer.citations}
    cites = ok = sentences = sentences_ok = 0
    for sentence, marks in cited_sentences(answer.text):
        sentences += 1
        known = [passages[m] for m in marks if m in passages]
        cites += len(known)
        ok += sum(supports(p, sentence) for p in known)
        sentences_ok += bool(known) and supports(" ".join(known), sentence)
    return cites, ok, sentences, sentences_ok
