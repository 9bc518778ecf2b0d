"""Generators that complete a text prompt: every retrieved passage numbered in one prompt
("concat", the usual RAG pipeline and ragline's default), fitted to the model's context.

Subclasses give `count_tokens` and `stream`: llama.cpp (ragline.generate.llama), any
OpenAI-compatible server (ragline.generate.openai_http), and ragline.testing's scripted one.

    gen = concat_generator(Config())                # the configured backend
    for piece in gen.generate("Who built it?", hits, GenerateOptions()): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ragline.config import Config
from ragline.generate.base import GenerateOptions, Generation
from ragline.generate.prompts import rag_prompt
from ragline.generate.tasks import ChatTemplate
from ragline.registry import BACKENDS
from ragline.types import Hit


class PromptGenerator:
    """`n_ctx`: the model's context in tokens; the prompt gets what the answer leaves.
    `passage_tokens`: the passages' share of the prompt (None: all the context allows)."""

    id = "prompt"
    streams = True
    n_ctx = 4096
    passage_tokens: int | None = None

    def load(self) -> None:
        pass

    def chat_template(self) -> ChatTemplate | None:
        """The model's chat template, for instruct models; None: a base model's prompt."""
        return None

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        raise NotImplementedError

    def generate(self, question: str, hits: Sequence[Hit],
                 options: GenerateOptions) -> Iterator[str | Generation]:
        self.load()
        chat = self.chat_template()
        prompt = rag_prompt(question, list(hits), self.count_tokens,
                            budget=max(256, self.n_ctx - options.max_tokens - 16),
                            passage_tokens=self.passage_tokens, chat=chat, task=options.task,
                            instructions=options.instructions)
        parts: list[str] = []
        for piece in self.stream(prompt, max_tokens=options.max_tokens,
                                 stop=options.task.stop if chat is None else options.task.chat_stop,
                                 temperature=options.temperature):
            if not parts:
                piece = piece.lstrip()
            if piece:
                parts.append(piece)
                yield piece
        yield Generation("".join(parts))


def concat_generator(config: Config, rag_model: Callable[[], Any] | None = None) -> PromptGenerator:
    """The registry's factory for `concat`: the configured backend (generation.backend)."""
    generator: PromptGenerator = BACKENDS.create(config.generation.backend, config.generation)
    return generator
