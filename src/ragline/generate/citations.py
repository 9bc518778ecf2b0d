"""Citations that are true: validate the model's [n] markers and add the ones it left out.

A small generator often writes no markers, or wrong ones ([7] with five passages). The stream
filter below sits between the generator and the user: it drops markers that name no passage,
and when a sentence ends without a marker it attributes the sentence to the passage that
supports it best (word overlap), provided the support is real. Works token by token, so the
answer still streams.

    cs = CitationStream(hits)
    out = "".join(cs.feed(piece) for piece in pieces) + cs.finish()
    cs.citations  # marker → Citation with the supporting span of the passage

A written text (`ragline write`) is held to more: `SentenceGate` passes it on a sentence at a
time, each with the passages that support it by `supports`, and holds back any sentence that
no passage supports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragline.qa import answer_in, normalize_answer
from ragline.text import CJK_RE, has_cjk, sentence_spans, tokenize
from ragline.types import Citation, Hit

_MARKER = re.compile(r"\[\d+\]")
_MARKER_NUMBER = re.compile(r"\[(\d{1,3})\]")
_MARKER_BODY = re.compile(r"\s*\d{1,3}(\s*,\s*\d{1,3})*\s*")
_REFUSAL = re.compile(
    r"(i (do not|don't|cannot|can't) (know|answer|find)|not (mentioned|contain|provided|stated|"
    r"specified|given)|no (information|answer|mention)|cannot be (determined|answered)|unknown|"
    r"不知道|无法回答|没有提到|未提及|没有相关|无法确定)", re.IGNORECASE)


JUDGE = "lexical: the passage holds the sentence, or ≥ 80 % of its content words"


def supports(passage: str, sentence: str) -> bool:
    """Does `passage` back `sentence` (citation markers ignored)? A passage supports a
    sentence when it contains it (after SQuAD normalization) or at least 80 % of its content
    words. Lexical: it judges extracted and lightly reworded sentences well; it cannot see
    a paraphrase, and counts that as unsupported."""
    claim = strip_markers(sentence).strip()
    norm = normalize_answer(claim)
    if not norm:
        return True
    if norm in normalize_answer(passage):
        return True
    words = tokenize(claim)
    if not words:
        return False
    return overlap(words, set(tokenize(passage))) >= 0.8


# words that say what to do, not what about: "Write a short history of coffee" is about coffee
_INSTRUCTION_WORDS = frozenset(tokenize(
    "write explain describe summarize summarise summary tell give list show short brief text "
    "document documents say says said about overview introduction introduce what why how which "
    "who when where known compare comparison discuss essay paragraph sentences detail details "
    "please something anything history histories")) | {
    "介绍", "一下", "写", "一段", "说明", "概述", "总结", "什么", "时候", "请", "文档", "关于", "怎样",
    "如何", "为什么", "历史"}


def topic_share(instruction: str, hits: list[Hit]) -> float:
    """Share of the instruction's topic words (its content words, less the words of
    instructing) that the passages hold; 1.0 when it has none. A text written from passages
    that hold none of "Roman Empire" is not about the Roman Empire, however well each
    sentence is supported."""
    words = [w for w in dict.fromkeys(tokenize(instruction)) if w not in _INSTRUCTION_WORDS]
    if not words:
        return 1.0
    have: set[str] = set()
    for h in hits:
        have.update(tokenize(h.passage.embed_text))
    return sum(w in have for w in words) / len(words)


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


_TRAILING = re.compile(r"[\s.!?。！？…]*$")
_SPACE_BEFORE_STOP = re.compile(r"\s+([.,;:!?。，；：！？])")  # where a marker was taken out
_PARAGRAPH = re.compile(r"\n\s*\n")
_ENDED = re.compile(r"[.!?。！？…][\"'”’)）]*$")
_HEADING_WORDS = 6


def _states_something(sentence: str) -> bool:
    """At least three words (four characters of CJK text), one of them not a number."""
    long_enough = (len(CJK_RE.findall(sentence)) >= 4 if has_cjk(sentence)
                   else len(sentence.split()) >= 3)
    return long_enough and any(not t.isdigit() for t in tokenize(sentence))


def _without_headings(block: str) -> str:
    """A paragraph less its leading heading lines ("[1] Photosynthesis" over the passage a
    model copied under it): a line of a few words with no sentence stop, followed by none or
    by a line that starts anew (a capital, a digit, a CJK character, a marker), not by the
    rest of a sentence wrapped over two lines."""
    lines = block.strip().split("\n")

    def heading(i: int) -> bool:
        line = strip_markers(lines[i]).strip()
        short = len(line.split()) <= _HEADING_WORDS and not (
            has_cjk(line) and len(line) > 3 * _HEADING_WORDS)
        after = strip_markers(lines[i + 1]).strip() if i + 1 < len(lines) else ""
        return short and not _ENDED.search(line) and (not after or not after[0].islower())

    while lines and heading(0):
        lines.pop(0)
    return "\n".join(lines)


class SentenceGate:
    """A written text, passed on sentence by sentence. Each sentence goes out with the passages
    that support it (`supports`): the ones its [n] markers name, when they do; else the
    passage that holds most of it; else two passages together. A sentence that no passage
    supports is held back (`dropped`). The markers go before the sentence's final stop.
    Headings a model copies from a passage ("[2] Photosynthesis") are no sentences and are
    left out, as is a last sentence cut off by the token limit.

        gate = SentenceGate(hits)
        out = "".join(gate.feed(piece) for piece in pieces) + gate.finish()
        gate.citations, gate.kept, gate.dropped
    """

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.texts = [h.passage.embed_text for h in hits]
        self._words = [set(tokenize(t)) for t in self.texts]
        self.citations: dict[int, Citation] = {}
        self.kept: list[str] = []
        self.dropped: list[str] = []
        self._buf = ""

    def feed(self, piece: str) -> str:
        """The sentences `piece` completes (a sentence is complete once the next has begun)."""
        self._buf += piece
        spans = [(s, e) for s, e in sentence_spans(self._buf)
                 if strip_markers(self._buf[s:e]).strip()]
        if len(spans) < 2:
            return ""
        done, self._buf = self._buf[:spans[-1][0]], self._buf[spans[-1][0]:]
        return self._pass(done)

    def finish(self) -> str:
        rest, self._buf = self._buf, ""
        return self._pass(rest, last=True)

    def _pass(self, text: str, last: bool = False) -> str:
        out = []
        blocks = [_without_headings(b) for b in _PARAGRAPH.split(text)]
        spans = [(b, s, e) for b, block in enumerate(blocks) for s, e in sentence_spans(block)]
        for b, s, e in spans:
            raw = blocks[b][s:e]
            body = _SPACE_BEFORE_STOP.sub(r"\1", " ".join(strip_markers(raw).split()))
            if not _TRAILING.sub("", body):
                continue  # markers or punctuation alone
            if last and (b, s, e) == spans[-1] and not _ENDED.search(body):
                continue  # cut off by the token limit
            if not _states_something(body):
                self.dropped.append(body)  # "1.", "5 [2]." from a list the model began
                continue
            cited = self._supporting(body, [int(m) for m in _MARKER_NUMBER.findall(raw)])
            if not cited:
                self.dropped.append(body)
                continue
            for n in cited:
                self._cite(n, body)
            end = _TRAILING.search(body).start()  # type: ignore[union-attr]  # always matches
            cjk = has_cjk(body)
            sentence = (body[:end] + ("" if cjk else " ") + "".join(f"[{n}]" for n in cited)
                        + body[end:])
            out.append(("" if not self.kept or cjk else " ") + sentence)
            self.kept.append(sentence)
        return "".join(out)

    def _supporting(self, sentence: str, marks: list[int]) -> list[int]:
        named = [n for n in dict.fromkeys(marks) if 1 <= n <= len(self.hits)
                 and supports(self.texts[n - 1], sentence)]
        if named:
            return named
        claim = tokenize(sentence)
        order = sorted(range(len(self.hits)), key=lambda i: (-overlap(claim, self._words[i]), i))
        if order and supports(self.texts[order[0]], sentence):
            return [order[0] + 1]
        if len(order) > 1 and supports(self.texts[order[0]] + "\n" + self.texts[order[1]],
                                       sentence):
            return sorted([order[0] + 1, order[1] + 1])
        return []

    def _cite(self, n: int, sentence: str) -> None:
        if n not in self.citations:
            hit = self.hits[n - 1]
            span, _ = best_span(tokenize(sentence), hit.passage.text)
            self.citations[n] = Citation(marker=n, passage=hit.passage, score=hit.score,
                                         prob=hit.prob, span=span)


def question_citation(question: str, answer: str, hits: Sequence[Hit]) -> Citation:
    """The passage a generated question comes from: of those that hold its answer, the one
    that shares most of the question's words (ties: the better ranked)."""
    claim = tokenize(question)
    holding = [i for i, h in enumerate(hits) if answer_in(h.passage.embed_text, [answer])]
    best = max(holding, key=lambda i: (best_span(claim, hits[i].passage.text)[1], -i))
    span, _ = best_span(tokenize(answer) or claim, hits[best].passage.text)
    h = hits[best]
    return Citation(best + 1, h.passage, h.score, h.prob, span)


def source_citation(answer: str, hits: Sequence[Hit], i: int) -> Citation:
    """The passage an answer was read from, with the sentence that holds it."""
    h = hits[i]
    span, _ = best_span(tokenize(answer), h.passage.text)
    return Citation(i + 1, h.passage, h.score, h.prob, span)


def posterior_citations(text: str, hits: Sequence[Hit], posterior: Sequence[float],
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
