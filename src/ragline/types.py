"""Frozen dataclasses shared by every layer: Document, Passage, Hit, Citation, Turn, Answer.

    doc = Document.from_text("Paris is the capital of France.", source="notes.txt")
    doc.id  # content hash: the same text always gets the same id
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def content_hash(text: str) -> str:
    """A short, stable id for a piece of text (sha256, 16 hex digits)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Document:
    """One unit of ingestion: a file, or one row of a jsonl/csv file.

    `id` is a content hash unless the source names its own ids (BEIR corpora do).
    `meta` holds loader facts such as page offsets of a PDF; values are JSON-serialisable.
    """

    id: str
    source: str
    text: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_text(
        cls, text: str, source: str, title: str = "", meta: dict[str, Any] | None = None
    ) -> Document:
        return cls(id=content_hash(title + "\n" + text), source=source, text=text,
                   title=title, meta=meta or {})


@dataclass(frozen=True)
class Passage:
    """A chunk of a document: `text == document.text[start:end]`."""

    id: str
    doc_id: str
    text: str
    title: str
    start: int
    end: int
    position: int
    source: str = ""
    page: int | None = None
    # where in its file: "slide 3", "Sheet1 · rows 2–41", "lines 10–45", "00:01:02 – 00:01:30"
    location: str = ""

    @property
    def embed_text(self) -> str:
        """What the passage encoder sees: title and text, as DPR did."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class DocumentInfo:
    """One row of an index's document list (`RAG.documents()`).

    `name` is what a person calls the file: the name it was uploaded under (the server stores
    uploads under content hashes), else the source's file name. `added` is a Unix time.
    """

    id: str
    source: str
    title: str
    passages: int
    name: str
    added: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "source": self.source, "title": self.title,
                "passages": self.passages, "added": self.added}


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its rank-fused `score`.

    `dense_score` is d(z)·q(x) when the dense index scored it; `prob` is the document
    posterior p(z|x), a softmax over the dense scores of the returned hits.
    """

    passage: Passage
    score: float
    rank: int
    dense_score: float | None = None
    sparse_score: float | None = None
    prob: float | None = None


@dataclass(frozen=True)
class Citation:
    """Marker `[n]` in an answer, pointing at hit number n and the span that supports it."""

    marker: int
    passage: Passage
    score: float
    prob: float | None
    span: tuple[int, int]  # character span inside passage.text that supports the answer

    @property
    def quote(self) -> str:
        return self.passage.text[self.span[0]:self.span[1]]


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: `role` is "user", "assistant" or "system" (instructions).

        history = [Turn("user", "When was the Eiffel Tower completed?"), Turn("assistant", "1889")]
    """

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Answer:
    """A generated answer with the citations it uses and every passage it was conditioned on."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    answered: bool = True  # False when the passages did not contain an answer
    timings: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    # concat: one prompt, citations' prob is p(z|x); rag-token / rag-sequence: the RAG model,
    # citations' prob is the passage's share of the answer, p(z|x,y)
    model: str = "concat"
    # why the answer is a refusal (None when answered): one of REFUSAL_REASONS
    reason: str | None = None
    # what was asked for (ragline.generate.tasks): an answer, a text, a question
    task: str = "answer"
    # a text's sentences that no passage supports, left out of it
    dropped: tuple[str, ...] = ()
    # the per-passage reader's calibrated p(the passage states this answer), for the answer
    # given or, refused, the best it read; None where nothing judged it (concat, RAG models)
    confidence: float | None = None
    # a follow-up (asked with earlier turns): the standalone question searched for and
    # answered, e.g. "How tall is the Eiffel Tower?" for "How tall is it?"; None without turns
    standalone_question: str | None = None

    @property
    def refused(self) -> bool:
        """The passages did not answer the question, so ragline said so instead of guessing."""
        return not self.answered

    @property
    def documents(self) -> list[DocumentPosterior]:
        """The retrieved documents' posteriors: p(z|x) summed per document."""
        return document_posteriors(self.hits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by `ragline ask --json` and the HTTP API."""
        return {
            "question": self.question,
            "answer": self.text,
            "answered": self.answered,
            "refused": self.refused,
            "reason": self.reason,
            "model": self.model,
            "task": self.task,
            "dropped": list(self.dropped),
            "confidence": self.confidence,
            "standalone_question": self.standalone_question,
            "citations": [
                {"marker": c.marker, "passage_id": c.passage.id, "doc_id": c.passage.doc_id,
                 "source": c.passage.source, "title": c.passage.title, "page": c.passage.page,
                 "location": c.passage.location,
                 "score": c.score, "prob": c.prob, "span": list(c.span), "quote": c.quote,
                 "text": c.passage.text}
                for c in self.citations
            ],
            "passages": [hit_to_dict(h) for h in self.hits],
            "timings": dict(self.timings),
        }


# Answer.reason: why ragline refused rather than answer
REFUSAL_REASONS = {
    "no_passages": "the index returned no passages",
    "not_relevant": "no passage is close enough to what was asked",
    "model_declined": "the model said the passages do not contain the answer",
    "unsupported": "the passages do not contain the words of what the model wrote",
    "low_confidence": "the answer model is not confident that a passage states the answer",
    "off_topic": "the passages the text comes from are not about what was asked",
    "answer_not_found": "no passage holds the answer the question was to be written for",
}


@dataclass(frozen=True)
class DocumentPosterior:
    """p(z|x) summed over one document's retrieved passages."""

    doc_id: str
    source: str
    prob: float


def document_posteriors(hits: Sequence[Hit]) -> list[DocumentPosterior]:
    """Each retrieved document's share of p(z|x), most probable first (hits without a
    posterior, as in BM25 mode, count 0)."""
    probs: dict[str, float] = {}
    sources: dict[str, str] = {}
    for h in hits:
        probs[h.passage.doc_id] = probs.get(h.passage.doc_id, 0.0) + (h.prob or 0.0)
        sources.setdefault(h.passage.doc_id, h.passage.source)
    return sorted((DocumentPosterior(d, sources[d], p) for d, p in probs.items()),
                  key=lambda d: -d.prob)


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    p = hit.passage
    return {"rank": hit.rank, "score": hit.score, "dense_score": hit.dense_score,
            "sparse_score": hit.sparse_score, "prob": hit.prob, "passage_id": p.id,
            "doc_id": p.doc_id, "source": p.source, "title": p.title, "position": p.position,
            "page": p.page, "location": p.location, "start": p.start, "end": p.end,
            "text": p.text}
