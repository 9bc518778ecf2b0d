"""Generation: the Generator protocol, llama.cpp and OpenAI-compatible backends, prompts, citations."""

from ragline.generate.base import Generator

__all__ = ["Generator"]
