"""Citations that are true: validate the model's [n] markers and add the ones it left out.

A small generator often writes no markers, or wrong ones ([7] with five passages). The stream
filter below sits between the generator and the user: it drops markers that name no passage,
and when a sentence ends without a marker it attributes the sentence to the passage that
supports it best (word overlap), provided the support is real. Works token by token, so the
answer still streams.

    cs = CitationStream(hits)
    out = "".join(cs.feed(piece) for piece in pieces) + cs.finish()
    cs.citations  # marker → Citation with the supporting span of the passage
"""

from __future__ import annotations

import re

from ragline.qa import normalize_answer
from ragline.text import sentence_spans, tokenize
from ragline.types import Citation, Hit

_MARKER = re.compile(r"\[\d+\]")
_MARKER_BODY = re.compile(r"\s*\d{1,3}(\s*,\s*\d{1,3})*\s*")
_REFUSAL = re.compile(
    r"(i (do not|don't|cannot|can't) (know|answer|find)|not (mentioned|contain|provided|stated|"
    r"specified|given)|no (information|answer|mention)|cannot be (determined|answered)|unknown|"
    r"不知道|无法回答|没有提到|未提及|没有相关|无法确定)", re.IGNORECASE)


def strip_markers(text: str) -> str:
    """The text without its [n] citation markers."""
    return _MARKER.sub(" ", text)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text[:200]))


def overlap(claim: list[str], support: set[str]) -> float:
    """Share of the claim's content tokens that the support contains."""
    if not claim:
        return 0.0
    return sum(t in support for t in claim) / len(claim)


def best_span(claim: list[str], text: str) -> tuple[tuple[int, int], float]:
    """The sentence of `text` that supports the claim best, and how well."""
    best, best_score = (0, len(text)), -1.0
    for s, e in sentence_spans(text) or [(0, len(text))]:
        score = overlap(claim, set(tokenize(text[s:e])))
        if score > best_score:
            best, best_score = (s, e), score
    return best, max(best_score, 0.0)


def support(answer: str, hits: list[Hit]) -> float:
    """Share of the answer's content words found in the passages (1.0 for a contentless answer)."""
    claim = tokenize(strip_markers(answer))
    if not claim:
        return 1.0
    vocab: set[str] = set()
    for h in hits:
        vocab.update(tokenize(h.passage.embed_text))
    return overlap(claim, vocab)


def grounding(question: str, answer: str, hits: list[Hit]) -> float:
    """How well the answer's source sentence matches the question: the share of the question's
    content words in the best passage sentence that holds the answer (or, when none holds it
    verbatim, that shares most of its words). A small model asked about what the passages do
    not say still answers, with a span from a sentence about something else; such a sentence
    shares little with the question."""
    asked = set(tokenize(question))
    claim = strip_markers(answer)
    norm = normalize_answer(claim)
    words = tokenize(claim)
    if not asked:
        return 1.0
    best, fallback = -1.0, (0.0, 0.0)  # fallback: (overlap with the answer, with the question)
    for h in hits:
        text = h.passage.text
        for s, e in sentence_spans(text) or [(0, len(text))]:
            have = set(tokenize(text[s:e]))
            share = len(asked & have) / len(asked)
            if norm and norm in normalize_answer(text[s:e]):
                best = max(best, share)
            elif best < 0:
                fallback = max(fallback, (overlap(words, have), share))
    return best if best >= 0 else fallback[1]


class CitationStream:
    def __init__(self, hits: list[Hit], min_support: float = 0.5) -> None:
        self.hits = hits
        self.min_support = min_support
        self.citations: dict[int, Citation] = {}
        self._buf = ""           # received, not yet decided
        self._sentence = ""      # text of the current sentence
        self._marked = False     # the current sentence carries a valid marker
        self._ended = False      # the sentence saw its final punctuation
        self._ws = ""            # whitespace not yet emitted: it goes out with what follows
        self._dropped = False    # an invalid marker was just removed

    def feed(self, piece: str) -> str:
        self._buf += piece
        return self._drain(final=False)

    def finish(self) -> str:
        return self._drain(final=True) + self._close()

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        buf, i = self._buf, 0
        while i < len(buf):
            ch = buf[i]
            if ch == "[":
                j = buf.find("]", i)
                if j == -1 and not final and len(buf) - i < 16:
                    break  # a marker may be arriving; wait for its end
                if j != -1 and _MARKER_BODY.fullmatch(buf[i + 1:j]):
                    marks = self._marker([int(n) for n in buf[i + 1:j].split(",")])
                    if marks:  # a marker after "end." still belongs to that sentence
                        out.append(self._ws + marks)
                        self._ws = ""
                    else:
                        self._dropped = True
                    i = j + 1
                    continue
            if ch.isspace() and ch != "\n":
                self._ws += ch
                i += 1
                continue
            if ch in ".!?" and i + 1 >= len(buf) and not final:
                break  # "3.14" or "e.g." — decide when the next character arrives
            if self._dropped and ch in ".,;:!?。，；：！？":
                self._ws = ""  # "Germany [7]." → "Germany."
            self._dropped = False
            if self._ended:
                out.append(self._close())
            out.append(self._ws + ch)
            self._sentence += self._ws + ch
            self._ws = ""
            if ch == "\n" or ch in "。！？" or (ch in ".!?" and (i + 1 >= len(buf)
                                                                 or buf[i + 1].isspace())):
                self._ended = True
            i += 1
        self._buf = buf[i:]
        return "".join(out)

    def _marker(self, numbers: list[int]) -> str:
        claim = tokenize(self._sentence)
        valid = [self._supporting(n, claim) for n in numbers if 1 <= n <= len(self.hits)]
        valid = list(dict.fromkeys(valid))
        for n in valid:
            self._cite(n, claim)
        self._marked = self._marked or bool(valid)
        return "".join(f"[{n}]" for n in valid)

    def _supporting(self, n: int, claim: list[str]) -> int:
        """Passage n, or the one that supports the sentence so far when n does not: a small
        model often cites [1] for whatever it read."""
        if not claim or best_span(claim, self.hits[n - 1].passage.embed_text)[1] >= self.min_support:
            return n
        scores = [best_span(claim, h.passage.embed_text)[1] for h in self.hits]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return best + 1 if scores[best] >= self.min_support else n

    def _cite(self, n: int, claim: list[str]) -> None:
        hit = self.hits[n - 1]
        span, _ = best_span(claim, hit.passage.text)
        if n not in self.citations:
            self.citations[n] = Citation(marker=n, passage=hit.passage, score=hit.score,
                                         prob=hit.prob, span=span)

    def _close(self) -> str:
        """End the current sentence; attribute it if it carries no valid marker."""
        sentence, marked = self._sentence, self._marked
        self._sentence, self._marked, self._ended = "", False, False
        claim = tokenize(sentence)
        if marked or not claim or not self.hits:
            return ""
        scored = []
        for n, hit in enumerate(self.hits, 1):
            _, s = best_span(claim, hit.passage.embed_text)
            scored.append((s, -n))
        best_score, neg_n = max(scored)
        if best_score < self.min_support:
            return ""
        self._cite(-neg_n, claim)
        return f" [{-neg_n}]"
