"""Deterministic stand-ins for the models, for tests of code built on ragline (and ragline's).

    rag = RAG.build("idx", paths=["docs/"], encoder="hash",
                    generator=ScriptedGenerator("Paris is the capital of France. [1]"))
    rag.ask("What is the capital of France?").text

`HashEncoder` embeds by hashed words (lexical, exact, no model); `ScriptedGenerator` streams a
fixed reply (or one made from the prompt) one character at a time and records the prompts it
was given. It also reads "its
own probabilities" for the per-passage reader: `verdict` (a number, or a function of the
prompt, which ends with the passage read) sets how sure it is.

    ScriptedGenerator("1889", verdict=lambda prompt: 5.0 if "1889" in prompt else -5.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from ragline.encode.hashing import HashEncoder
from ragline.generate.base import Completion
from ragline.generate.prompted import PromptGenerator


class ScriptedGenerator(PromptGenerator):
    """A concat generator that streams `reply`, one character at a time, whatever it is asked
    (a function of the prompt: what it returns for that prompt); `prompts` holds every prompt
    it was given. Tokens are whitespace-separated words. As a
    Scorer (ragline.generate.base), it completes any prompt with `reply`, each token at
    log-probability `logprob`, with the verdict `verdict` and a question log-probability of 0;
    the per-passage reader's confidence in it is σ(verdict) (its own `calibration`)."""

    id = "scripted"

    def __init__(self, reply: str | Callable[[str], str],
                 verdict: float | Callable[[str], float] = 8.0,
                 logprob: float = -0.1) -> None:
        from ragline.generate.reader import Calibration

        self.reply = reply
        self.verdict = verdict
        self.calibration = {lang: Calibration((1.0, 0.0, 0.0), 0.0) for lang in ("en", "zh")}
        self.logprob = logprob
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        self.prompts.append(prompt)
        yield from self._reply(prompt)

    def _reply(self, prompt: str) -> str:
        return self.reply(prompt) if callable(self.reply) else self.reply


    def complete(self, prompt: str, max_tokens: int = 32, stop: Sequence[str] = ("\n",),
                 head: str = "") -> Completion:
        self.prompts.append(prompt)
        text = self._reply(prompt)
        for s in stop:
            if s and s in text:
                text = text[:text.index(s)]
        return Completion(text, (self.logprob,) * max(1, len(text.split())))

    def log_odds(self, prompt: str, yes: Sequence[str], no: Sequence[str],
                 head: str = "") -> float:
        return self.verdict(prompt) if callable(self.verdict) else self.verdict

    def span_logprob(self, prompt: str, span: str, head: str = "") -> float:
        return 0.0


__all__ = ["HashEncoder", "ScriptedGenerator"]
