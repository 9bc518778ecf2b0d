"""Local generation with llama.cpp (llama-cpp-python). The model is a name of
ragline.registry.LLMS (packaged GGUF files, assembled once into the cache) or a GGUF path;
instruct models get their own chat template, from the GGUF's metadata.

    gen = LlamaCppGenerator()                        # the default model (LLMS' first)
    gen = LlamaCppGenerator("qwen2.5-1.5b")
    gen = LlamaCppGenerator("my-model.Q4_K_M.gguf", n_ctx=8192)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragline.config import GenerationConfig
from ragline.errors import ModelUnavailableError, missing_extra
from ragline.generate.packaged import resolve_gguf
from ragline.generate.prompted import PromptGenerator
from ragline.generate.prompts import ChatTemplate
from ragline.registry import LLMS

log = logging.getLogger(__name__)


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
    """`model`: a name of ragline.registry.LLMS or a GGUF path (None: the default name).
    `chat`: use the model's chat template (None: when the model is an instruct model, as its
    registry entry or, for a file, its GGUF metadata says). `lora_path`: a LoRA adapter in GGUF
    that llama.cpp applies to the model."""

    def __init__(self, model: str | Path | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0,
                 passage_tokens: int | None = None, chat: bool | None = None,
                 lora_path: Path | None = None) -> None:
        self.model = model
        self.lora_path = lora_path
        if not model or (isinstance(model, str) and LLMS.find(model) is not None):
            self.id = LLMS.canonical(str(model or LLMS.names[0]))
        else:
            self.id = Path(model).stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.passage_tokens = passage_tokens
        self.chat = chat
        self.llm: Any = None
        self._template: ChatTemplate | None = None

    def load(self) -> None:
        if self.llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError:
            raise missing_extra("llama-cpp-python", "llama") from None
        _silence_llama_cpp()
        path, instruct = resolve_gguf(self.model)
        threads = self.n_threads or max(1, min(os.cpu_count() or 1, 8))
        try:
            # flash attention reads a prompt ≈8 % faster on CPU (Qwen 0.5B, 2 cores)
            self.llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=threads,
                             n_threads_batch=threads, seed=self.seed, flash_attn=True,
                             lora_path=str(self.lora_path) if self.lora_path else None,
                             verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelUnavailableError(f"llama.cpp could not load {path}: {e}") from None
        template = self.llm.metadata.get("tokenizer.chat_template")
        use_chat = self.chat if self.chat is not None else (
            instruct if instruct is not None else bool(template))
        if use_chat and not template:
            raise ModelUnavailableError(f"{path} has no chat template in its metadata; "
                                        "use it as a base model (generation.chat = false)")
        if use_chat:
            self._template = self._chat(template, path)

    def _chat(self, template: str, path: Path) -> ChatTemplate:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token(i: int) -> str:
            return "" if i < 0 else self.llm.detokenize([i], special=True).decode("utf-8", "replace")

        formatter = Jinja2ChatFormatter(template, eos_token=token(self.llm.token_eos()),
                                        bos_token=token(self.llm.token_bos()))

        def render(turns: list[tuple[str, str]]) -> str:
            messages: Any = [{"role": role, "content": text} for role, text in turns]
            try:
                return str(formatter(messages=messages).prompt)
            except Exception as e:  # noqa: BLE001 - the template is the model's own Jinja
                if turns and turns[0][0] == "system" and len(turns) > 1:
                    # some templates refuse a system turn: it opens the first user turn instead
                    (_, system), (role, first), *rest = turns
                    return render([(role, f"{system}\n\n{first}"), *rest])
                raise ModelUnavailableError(f"the chat template of {path} failed: {e}; use it "
                                            "as a base model (generation.chat = false)") from None

        return render

    def chat_template(self) -> ChatTemplate | None:
        self.load()
        return self._template

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

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
    """The registry's factory for generation.backend = "llama-cpp" (model: a name or a path)."""
    return LlamaCppGenerator(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.threads,
                             passage_tokens=cfg.passage_tokens, chat=cfg.chat)
