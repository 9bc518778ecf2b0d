"""Open-domain QA evaluation: retrieval hit@k, then exact match and F1 of generated answers.

hit@k: an answer string occurs (after SQuAD normalization) in one of the top-k passages.
EM/F1: the answer `RAG.ask` gives, citation markers removed, against the best gold answer; a
question ragline declines to answer ("not found") scores 0.

    examples = read_qa(Path("squad.json"))
    report = evaluate_qa(rag, examples, k=5, model="concat")
    report.hit_at[5], report.em, report.f1
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from ragline.qa import QAExample, answer_in, exact_match, f1_score

if TYPE_CHECKING:
    from ragline.rag import RAG

_MARKERS = re.compile(r"\s*\[\d+\]")


@dataclass
class QAReport:
    questions: int
    hit_at: dict[int, float]                 # k → share of questions with an answer in top k
    retrieval_seconds: float                 # per question
    em: float | None = None                  # None when only retrieval was evaluated
    f1: float | None = None
    answered: float | None = None            # share not declined as "not found"
    seconds_per_question: float | None = None  # retrieval and generation
    first_token_s: float | None = None       # median time to the first token of an answer
    model: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)   # per question

    def to_dict(self) -> dict[str, Any]:
        return {"questions": self.questions, "model": self.model,
                "hit_at": {str(k): v for k, v in self.hit_at.items()},
                "retrieval_seconds_per_question": self.retrieval_seconds, "exact_match": self.em,
                "f1": self.f1, "answered": self.answered,
                "seconds_per_question": self.seconds_per_question,
                "first_token_seconds": self.first_token_s}


def evaluate_qa(rag: RAG, examples: Sequence[QAExample], k: int = 5, mode: str | None = None,
                model: str | None = None, hit_ks: Sequence[int] = (1, 5, 10, 20),
                generate: bool = True, progress: bool = False) -> QAReport:
    """hit@k for each of `hit_ks` (and k), then generation with k passages unless not `generate`."""
    ks = sorted({*hit_ks, k})
    t0 = time.perf_counter()
    runs = rag.search_many([e.question for e in examples], k=max(ks), mode=mode, progress=progress)
    retrieval_s = (time.perf_counter() - t0) / max(1, len(examples))
    first_hit = []  # rank (1-based) of the first passage holding an answer, else None
    for ex, hits in zip(examples, runs, strict=True):
        first_hit.append(next((h.rank for h in hits if answer_in(h.passage.text, ex.answers)),
                              None))
    n = max(1, len(examples))
    hit_at = {c: sum(1 for r in first_hit if r is not None and r <= c) / n for c in ks}
    report = QAReport(len(examples), hit_at, retrieval_s,
                      model=model or rag.config.model.kind)
    if not generate:
        return report

    em = f1 = answered = 0.0
    first: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(examples, desc=f"answering ({report.model})", unit="question",
               disable=not progress, dynamic_ncols=True)
    for ex, rank in zip(bar, first_hit, strict=True):
        a = rag.ask(ex.question, k=k, mode=mode, model=model)
        text = _MARKERS.sub("", a.text).strip() if a.answered else ""
        e, f = exact_match(text, ex.answers), f1_score(text, ex.answers)
        em, f1, answered = em + e, f1 + f, answered + a.answered
        if "first_token_s" in a.timings:
            first.append(a.timings["first_token_s"])
        report.rows.append({"id": ex.id, "question": ex.question, "answer": text,
                            "gold": list(ex.answers), "em": e, "f1": f, "hit_rank": rank,
                            "first_token_s": a.timings.get("first_token_s"),
                            "total_s": a.timings.get("total_s")})
        bar.set_postfix(em=f"{100 * em / len(report.rows):.1f}", f1=f"{100 * f1 / len(report.rows):.1f}")
    report.em, report.f1, report.answered = em / n, f1 / n, answered / n
    report.seconds_per_question = (time.perf_counter() - t0) / n  # ask() retrieves again
    report.first_token_s = statistics.median(first) if first else None
    return report
