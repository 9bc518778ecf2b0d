"""The Generator protocol: a prompt in, text pieces streamed out.

    gen = LlamaCppGenerator(); gen.load()
    for piece in gen.stream(prompt, max_tokens=64): print(piece, end="")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Generator(Protocol):
    id: str

    def load(self) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]: ...
