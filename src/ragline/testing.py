"""Deterministic stand-ins for the models, for tests of code built on ragline (and ragline's).

    rag = RAG.build("idx", paths=["docs/"], encoder="hash",
                    generator=ScriptedGenerator("Paris is the capital of France. [1]"))
    rag.ask("What is the capital of France?").text

`HashEncoder` embeds by hashed words (lexical, exact, no model); `ScriptedGenerator` streams a
fixed reply one character at a time and records the prompts it was given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ragline.encode.hashing import HashEncoder
from ragline.generate.prompted import PromptGenerator


class ScriptedGenerator(PromptGenerator):
    """A concat generator that streams `reply`, one character at a time, whatever it is asked;
    `prompts` holds every prompt it was given. Tokens are whitespace-separated words."""

    id = "scripted"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        self.prompts.append(prompt)
        yield from self.reply


__all__ = ["HashEncoder", "ScriptedGenerator"]
