"""The per-passage reader, ragline's default answerer: the answer model reads the retrieved
passages one at a time, best-ranked first, and answers from the first one it is confident
states the answer; when none is, the question is refused.

Why one at a time: a 0.5B model picks the right span far more often from one passage than
from five in one prompt (bench/answers.py; docs/measured/answers.md), and a passage read alone is
what its answer can be checked against.

The prompt is a plain completion with worked examples, no chat template: the instruction,
four (title, passage, question, answer, verdict) examples, then the passage under its
document's title and the question. Two examples end in "Stated: no": an answer of the
asked-for kind taken from a sentence about something else, which is what a small model
writes when the passage does not hold the answer (RGB's negative rejection). The examples
come first, so llama.cpp reads them once.

Confidence is the reader's own, three numbers it reads off its probabilities, combined by a
logistic calibration fitted on tuning questions (`bench/answers.py --part calibrate`); the
threshold is generation.min_confidence:
- the verdict: log p(yes) − log p(no) for "Stated:" after its answer (the judge);
- the answer's mean token log-probability (how sure it was of the span);
- the question's pointwise mutual information with the passage: the question's mean token
  log-probability after the passage, less after an empty one (how well the passage explains
  the question; Sachan et al. 2022 rank passages by the first half of it).
All three come from what the model reads anyway: the question is scored as it is read, the
verdict is two more tokens after the answer.

    reader = PassageReader(llama_generator)            # min_confidence=MIN_CONFIDENCE
    for piece in reader.generate(question, hits, GenerateOptions()): ...   # text, Generation
    readings = list(reader.readings(question, hits))    # every passage, for eval's sweeps
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ragline.config import Config
from ragline.errors import ConfigError, ModelUnavailableError
from ragline.generate import cancel
from ragline.generate.base import GenerateOptions, Generation, Generator, Scorer
from ragline.generate.citations import is_refusal, support
from ragline.generate.tasks import ANSWER, lang_of
from ragline.types import Hit


@dataclass(frozen=True)
class ReaderPrompt:
    """One language's prompt: the instruction, the labels, and (title, passage, question,
    answer, stated) examples."""

    instruction: str
    passage: str
    question: str
    answer: str
    verdict: str
    yes: tuple[str, ...]
    no: tuple[str, ...]
    examples: tuple[tuple[str, str, str, str, bool], ...]   # (title, passage, …)
    titled: str = "Passage ({}):"       # the passage's label with its document's title
    space: str = " "                     # between a label and its text (none in Chinese)

    def head(self) -> str:
        """The instruction and the worked examples: the same for every question."""
        s, yes, no = self.space, self.yes[0].strip(), self.no[0].strip()
        blocks = [f"{self.before_question(p, t)}{s}{q}\n{self.answer}{s}{a}\n"
                  f"{self.verdict}{s}{yes if ok else no}" for t, p, q, a, ok in self.examples]
        return self.instruction + "\n\n" + "\n\n".join(blocks) + "\n\n"

    def before_question(self, passage: str, title: str = "") -> str:
        """What follows the head up to the question: the passage, after its title (a
        passage of a document often leaves out what the document is about), and the
        question's label."""
        label = self.titled.format(title) if title else self.passage
        return f"{label}{self.space}{passage}\n{self.question}"


PROMPTS = {
    "en": ReaderPrompt(
        instruction=("Answer each question with the shortest span of its passage, then say "
                     "whether the passage states that this is the answer to the question."),
        passage="Passage:", question="Question:", answer="Answer:", verdict="Stated:",
        yes=(" yes", " Yes", "yes", "Yes"), no=(" no", " No", "no", "No"),
        examples=(
            ("Rhine", "The Rhine rises in the Swiss Alps and flows 1,230 km to the North Sea.",
             "How long is the Danube?", "1,230 km", False),
            ("Penicillin", "Alexander Fleming discovered penicillin in 1928 at St Mary's "
             "Hospital in London.", "Where did Fleming discover penicillin?",
             "St Mary's Hospital in London", True),
            ("Marie Curie", "Marie Curie shared the 1903 Nobel Prize in Physics with Pierre "
             "Curie and Henri Becquerel.", "In what year did Marie Curie win her second Nobel "
             "Prize?", "1903", False),
            ("Kilimanjaro", "Kilimanjaro is a dormant volcano in Tanzania. Its highest peak, Uhuru, rises "
             "5,895 metres above sea level.", "How high is Kilimanjaro's highest peak?",
             "5,895 metres", True))),
    "zh": ReaderPrompt(
        instruction="用段落中最短的原文回答问题，然后判断段落是否写明这就是问题的答案。",
        passage="段落：", question="问题：", answer="答案：", verdict="原文写明：",
        yes=("是",), no=("否", "不"), space="", titled="段落（{}）：",
        examples=(
            ("莱茵河", "莱茵河发源于瑞士阿尔卑斯山，全长1230公里，注入北海。", "多瑙河有多长？", "1230公里",
             False),
            ("青霉素", "1928年，亚历山大·弗莱明在伦敦圣玛丽医院发现了青霉素。", "弗莱明在哪里发现了青霉素？",
             "伦敦圣玛丽医院", True),
            ("居里夫人", "居里夫人与皮埃尔·居里和亨利·贝克勒尔分享了1903年诺贝尔物理学奖。",
             "居里夫人在哪一年获得第二个诺贝尔奖？", "1903年", False),
            ("乞力马扎罗山", "乞力马扎罗山是坦桑尼亚的一座休眠火山，最高峰乌呼鲁峰海拔5895米。",
             "乞力马扎罗山的最高峰有多高？", "5895米", True))),
}


@dataclass(frozen=True)
class Calibration:
    """p(the passage states the answer) = σ(bias + Σ weight · feature), over the features of
    a Reading (`Reading.features`), fitted by logistic regression on tuning questions."""

    weights: tuple[float, ...]
    bias: float

    def __call__(self, features: Sequence[float]) -> float:
        z = self.bias + sum(w * f for w, f in zip(self.weights, features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


FEATURES = ("verdict", "answer_logprob", "question_pmi")

# Fitted by `bench/answers.py --part calibrate --split tune --questions 100` on the tuning
# halves of SQuAD and CMRC part A (questions split by article; the documentation's numbers are on the
# other halves), with this prompt: the readings of answerable questions whose answer scores
# F1 ≥ 0.5 against all the others, those of passages without the answer among them. In
# Chinese the verdict's weight is slightly negative: Qwen 0.5B's yes/no there adds nothing to
# the other two.
CALIBRATION = {"en": Calibration((0.741, 1.674, 1.042), -2.961),
               "zh": Calibration((-0.251, 1.623, 0.601), -2.477)}

# The threshold: the highest at which at most 5 % of the questions whose answer is in the
# top k are refused, on either tuning half (the target of issue #25). SQuAD: 4.3 % at 0.05,
# 12.0 % at 0.10; CMRC: 1.0 % at 0.10, 2.0 % at 0.15. At 0.05 it refuses 29 % of SQuAD's
# unanswerable questions and 37 % of CMRC's; `ragline eval faithfulness` shows the rest.
MIN_CONFIDENCE = 0.05


@dataclass(frozen=True)
class Reading:
    """What the reader took from one passage: `hit`, its index in the hits; `text`, the
    answer ("" when the model wrote none); the three numbers it is judged by (FEATURES) and
    `confidence`, them calibrated."""

    hit: int
    text: str
    verdict: float
    answer_logprob: float
    question_pmi: float
    confidence: float
    seconds: float

    @property
    def features(self) -> tuple[float, float, float]:
        return (self.verdict, self.answer_logprob, self.question_pmi)

    @property
    def declined(self) -> bool:
        return not self.text or is_refusal(self.text)


def choose(readings: Iterable[Reading], min_confidence: float) -> Reading | None:
    """The first reading, in rank order, with an answer at `min_confidence` or above; None:
    refuse. Lazy: readings after the chosen one are never asked for."""
    for r in readings:
        if not r.declined and r.confidence >= min_confidence:
            return r
    return None


_WS = re.compile(r"\s+")
_FLOOR = -20.0  # the log-odds and log-probability of what was not written
_MEMO = 64      # readings remembered



class PassageReader:
    """A Generator (ragline.generate.base) over a Scorer backend: the per-passage reader.
    `max_reads`: passages read at most (the best-ranked); `passage_tokens`: each passage's
    length in tokens, longer ones are cut. An answer less than `min_support` of whose words
    the passage holds is no answer from it (a cheap prefilter: on the tuning questions it
    never dropped one that was right). Texts and questions (`ragline write`) need every
    passage at once: they go to the backend's own concat prompt."""

    id = "per-passage"
    streams = False

    def __init__(self, backend: Generator, min_confidence: float = MIN_CONFIDENCE, max_reads: int = 3,
                 passage_tokens: int = 200, min_support: float = 0.5,
                 calibration: dict[str, Calibration] | None = None) -> None:
        if not isinstance(backend, Scorer):
            raise ModelUnavailableError(
                f"{getattr(backend, 'id', type(backend).__name__)} gives no token "
                "probabilities, which the per-passage reader (the default model) judges its "
                'answers by; answer with --model concat ([model] kind = "concat")')
        if max_reads < 1:
            raise ConfigError(f"max_reads must be ≥ 1, got {max_reads}")
        self.backend: Generator = backend
        self.scorer: Scorer = backend
        self.min_confidence = min_confidence
        self.max_reads = max_reads
        self.passage_tokens = passage_tokens
        self.min_support = min_support
        # a backend may carry its own (a model whose calibration its owner fitted)
        self.calibration = calibration or getattr(backend, "calibration", None) or CALIBRATION
        self.id = f"per-passage:{getattr(backend, 'id', 'llm')}"
        # the last readings, by (question, passage): `ragline eval faithfulness` reads every
        # passage once for its sweep over thresholds, then asks through the usual path
        self._memo: OrderedDict[tuple[str, str], Reading] = OrderedDict()
        self._memo_lock = threading.Lock()

    def load(self) -> None:
        self.backend.load()

    def forget(self) -> None:
        """Drop the remembered readings (a benchmark that times reading)."""
        with self._memo_lock:
            self._memo.clear()

    def generate(self, question: str, hits: Sequence[Hit],
                 options: GenerateOptions) -> Iterator[str | Generation]:
        if options.task is not ANSWER:
            yield from self.backend.generate(question, hits, options)
            return
        best = 0.0
        for r in self.readings(question, hits, options):
            best = max(best, r.confidence)
            if not r.declined and r.confidence >= self.min_confidence:
                yield r.text
                yield Generation(r.text, source=r.hit, confidence=r.confidence)
                return
        yield Generation("", confidence=best)

    def readings(self, question: str, hits: Sequence[Hit],
                 options: GenerateOptions | None = None) -> Iterator[Reading]:
        """Read the best-ranked passages one at a time, lazily: what each says and how sure
        the reader is of it."""
        self.load()
        lang = lang_of(question)
        prompt, calibration = PROMPTS[lang], self.calibration[lang]
        head = prompt.head()
        max_tokens = min(options.max_tokens if options else 32, 48)
        asked = prompt.space + " ".join(question.split())
        b = self.scorer
        alone: float | None = None  # the question after an empty passage, read once
        for i, hit in enumerate(hits[:self.max_reads]):
            cancel.check()  # a reading takes a second or more and yields nothing until done
            key = (question, hit.passage.id)
            with self._memo_lock:
                known = self._memo.get(key)
            if known is not None:
                yield replace(known, hit=i)
                continue
            t0 = time.perf_counter()
            if alone is None:
                alone = b.span_logprob(head + prompt.before_question(""), asked, head=head)
            before = head + prompt.before_question(self._passage(hit), _title(hit))
            pmi = b.span_logprob(before, asked, head=head) - alone
            reading = before + asked + "\n" + prompt.answer
            done = b.complete(reading, max_tokens=max_tokens, stop=("\n",), head=head)
            text = _clean(done.text)
            if text and support(text, [hit]) < self.min_support:
                text = ""  # its words are not the passage's: copied from an example, or made up
            logprob = sum(done.logprobs) / len(done.logprobs) if done.logprobs else _FLOOR
            verdict = _FLOOR
            if text:
                verdict = b.log_odds(reading + done.text + "\n" + prompt.verdict, prompt.yes,
                                     prompt.no, head=head)
            features = (verdict, logprob, pmi)
            confidence = calibration(features) if text else 0.0
            read = Reading(i, text, *features, confidence, time.perf_counter() - t0)
            with self._memo_lock:
                self._memo[key] = read
                while len(self._memo) > _MEMO:
                    self._memo.popitem(last=False)
            yield read

    def _passage(self, hit: Hit) -> str:
        """The passage on one line, cut to `passage_tokens`."""
        text = _WS.sub(" ", hit.passage.text).strip()
        cut = getattr(self.backend, "truncate", None)
        return cut(text, self.passage_tokens) if cut is not None else text


def _title(hit: Hit) -> str:
    """The passage's document title on one line ("Super_Bowl_50" as words)."""
    return _WS.sub(" ", hit.passage.title.replace("_", " ")).strip()[:120]


_MARKERS = re.compile(r"\s*\[\d{1,3}\]")


def _clean(text: str) -> str:
    """The answer as the user sees it: no markers, no quotes around it, no final stop."""
    text = _MARKERS.sub("", text).strip().strip("\"'“”‘’").strip()
    return text[:-1].rstrip() if text.endswith((".", "。")) else text


def per_passage_reader(config: Config, rag_model: Any = None,
                       backend: Generator | None = None) -> PassageReader:
    """The registry's factory for `per-passage`: over the configured backend (or `backend`,
    a concat generator given instead of it)."""
    from ragline.generate.prompted import concat_generator

    g = config.generation
    return PassageReader(backend if backend is not None else concat_generator(config),
                         g.min_confidence, g.reads, g.passage_tokens or 200, g.min_support)
