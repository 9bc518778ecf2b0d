"""The Generator protocol: a question and its retrieved passages in, the answer's text out —
streamed as it is generated, then one `Generation` with what the answer cites.

Implementations, registered by model name in ragline.registry.MODELS:

    concat         a PromptGenerator (llama.cpp, an OpenAI-compatible server): every passage
                   numbered in one prompt; the text cites them as [n]
    rag-token      the torch RAG model (ragline.model.generators): passages mixed per token
    rag-sequence   the torch RAG model: one passage explains the whole answer

    gen = MODELS.create("concat", config, rag_model)
    for piece in gen.generate(question, hits, GenerateOptions(max_tokens=64)): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ragline.generate.tasks import ANSWER, Task
from ragline.types import Hit


@dataclass(frozen=True)
class GenerateOptions:
    max_tokens: int = 128          # concat: the longest answer in tokens
    temperature: float = 0.0       # concat: 0 is greedy
    beams: int = 1                 # the RAG models' beam search (1: greedy)
    task: Task = ANSWER            # what to write from the passages (ragline.generate.tasks)
    # a conversation's system messages, after the task's own (concat; the per-passage reader
    # and the RAG models keep their prompts)
    instructions: str = ""


@dataclass(frozen=True)
class Generation:
    """The whole answer. `posterior` is p(z|x,y) for each hit (the RAG models: which passages
    explain the answer), or None when the text cites its passages with [n] markers. `source`:
    the hit the answer was read from (the per-passage reader), cited after it. `confidence`:
    the reader's calibrated p(the passage states this answer), None where nothing judged it."""

    text: str
    posterior: tuple[float, ...] | None = None
    source: int | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class Completion:
    """A greedy completion and the log-probability of each of its tokens."""

    text: str
    logprobs: tuple[float, ...] = ()


@runtime_checkable
class Scorer(Protocol):
    """A text generator that reads its own probabilities: what the per-passage reader
    (ragline.generate.reader) needs of a backend. llama.cpp gives them; ragline.testing's
    scripted generator makes them up.

    - `complete` is greedy and ends before the first `stop` string;
    - `log_odds` is log p(yes) − log p(no) of the token after `prompt`, over the first tokens
      of the words in `yes` and `no`;
    - `span_logprob` is the mean log-probability of the tokens of `span` after `prompt`.
    `head`, a prefix of the prompt that many prompts share, is read once and kept; a prompt
    that continues the previous one reads only what it adds."""

    def complete(self, prompt: str, max_tokens: int = 32, stop: Sequence[str] = ("\n",),
                 head: str = "") -> Completion: ...

    def log_odds(self, prompt: str, yes: Sequence[str], no: Sequence[str],
                 head: str = "") -> float: ...

    def span_logprob(self, prompt: str, span: str, head: str = "") -> float: ...
@runtime_checkable
class Generator(Protocol):
    """Contract (tests/test_contracts.py runs it for every implementation):
    - `generate` yields zero or more text pieces, then exactly one Generation, last;
      `"".join(pieces)` is the generation's text for generators that stream (`streams`),
      and for those that do not, the one piece is the whole text.
    - `posterior`, when given, has one probability per hit and sums to 1.
    - `load()` is idempotent and may be skipped (`generate` loads); a missing model or
      runtime is ModelUnavailableError, never an ImportError.
    """

    id: str
    streams: bool

    def load(self) -> None: ...

    def generate(self, question: str, hits: Sequence[Hit],
                 options: GenerateOptions) -> Iterator[str | Generation]: ...
