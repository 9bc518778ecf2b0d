"""Local generation with llama.cpp through llama-cpp-python (extra llama-cpp, compiled on
install): generation.backend = "llama-cpp-python". The default backend is the prebuilt
xllamacpp (ragline.generate.xllama); this one also loads the RAG models' llama.cpp runtime
(ragline.model.llama_lm), which needs its low-level API. The model is a name of
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

import numpy as np

from ragline.config import GenerationConfig
from ragline.errors import ModelUnavailableError, missing_extra
from ragline.generate.base import Completion
from ragline.generate.packaged import model_id, resolve_gguf
from ragline.generate.prompted import PromptGenerator
from ragline.generate.prompts import ChatTemplate

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
        self.id = model_id(model)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.passage_tokens = passage_tokens
        self.chat = chat
        self.llm: Any = None
        self._template: ChatTemplate | None = None
        # what the KV cache holds as text and tokens, so a prompt that continues it (a
        # verdict after an answer) reads only what is new
        self._read_text = ""
        self._read_tokens: list[int] = []
        self._prompt_len = 0

    def load(self) -> None:
        if self.llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError:
            raise missing_extra("llama-cpp-python", "llama-cpp") from None
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
        self._read_text = ""  # llama.cpp's own completion leaves the cache holding its tokens
        for chunk in self.llm.create_completion(
                prompt, max_tokens=max_tokens, temperature=temperature, stop=list(stop),
                stream=True, repeat_penalty=1.1, seed=self.seed):
            piece = chunk["choices"][0]["text"]
            if piece:
                yield piece


    # ------------------------------------------------------------ reading its own probabilities

    def complete(self, prompt: str, max_tokens: int = 32, stop: Sequence[str] = ("\n",),
                 head: str = "") -> Completion:
        """Greedy completion with each token's log-probability (no repeat penalty: an answer
        copied from a passage repeats its words). `head`, a prefix of `prompt` shared by
        many prompts (worked examples), is read on its own and kept, so that a result does
        not depend on what was read before."""
        import llama_cpp

        self.load()
        llm = self.llm
        self._read(prompt, head)
        vocab = llm._model.vocab
        out = b""
        logprobs: list[float] = []
        for _ in range(min(max_tokens, self.n_ctx - len(self._read_tokens) - 1)):
            logits = self._logits()
            token = int(np.argmax(logits))
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            piece = llm.detokenize([token])
            text = (out + piece).decode("utf-8", "ignore")
            ends = [text.index(s) for s in stop if s and s in text]
            logprobs.append(float(logits[token] - np.logaddexp.reduce(logits)))
            if ends:
                out = text[:min(ends)].encode("utf-8")
                break
            out += piece
            llm.eval([token])
            self._read_tokens.append(token)
        try:
            self._read_text = prompt + llm.detokenize(
                self._read_tokens[self._prompt_len:]).decode("utf-8")
        except UnicodeDecodeError:  # it ends inside a character: nothing can continue it
            self._read_text = ""
        return Completion(out.decode("utf-8", "ignore"), tuple(logprobs))

    def log_odds(self, prompt: str, yes: Sequence[str], no: Sequence[str],
                 head: str = "") -> float:
        """log p(yes) − log p(no) of the next token, over the first tokens of the words;
        the softmax's normalizer cancels out."""
        self.load()
        self._read(prompt, head)
        self._read_text = prompt
        logits = self._logits()
        return float(np.logaddexp.reduce(logits[self._first_tokens(yes)])
                     - np.logaddexp.reduce(logits[self._first_tokens(no)]))

    def span_logprob(self, prompt: str, span: str, head: str = "") -> float:
        """The mean log-probability of the tokens of `span` after `prompt`, read with the
        logits of every one of them (one batch); the cache then holds prompt + span."""
        self.load()
        llm = self.llm
        self._read(prompt, head)
        before = self._logits()
        tokens = self._read_tokens + list(llm.tokenize(span.encode("utf-8"), add_bos=False,
                                                      special=False))
        new = tokens[len(self._read_tokens):]
        if not new:
            return 0.0
        if len(tokens) >= self.n_ctx:
            raise ModelUnavailableError(f"the prompt ({len(tokens)} tokens) exceeds the "
                                        f"model's context of {self.n_ctx}")
        # llama.cpp returns the logits of every token of a batch only when asked to for each
        # (llama-cpp-python's own eval asks for the last one's); 64 at a time: 39 MB of logits
        picked: list[float] = []
        prev = before  # (vocab,): the logits that predict the next token
        for i in range(0, len(new), 64):
            chunk = new[i:i + 64]
            n = llm.n_tokens
            llm._batch.set_batch(batch=chunk, n_past=n, logits_all=True)
            llm._ctx.decode(llm._batch)
            llm.input_ids[n:n + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(chunk), llm.n_vocab()))
            logits = np.vstack([prev[None, :], rows[:-1]])  # (len(chunk), vocab)
            lse = np.logaddexp.reduce(logits, axis=1)
            picked += (logits[np.arange(len(chunk)), chunk] - lse).tolist()
            prev = rows[-1].copy()
        self._read_tokens = tokens
        self._prompt_len = len(tokens)
        self._read_text = prompt + span
        return float(np.mean(picked))

    def truncate(self, text: str, tokens: int) -> str:
        """`text` cut to its first `tokens` tokens."""
        self.load()
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(ids) <= tokens:
            return text
        return str(self.llm.detokenize(ids[:tokens]).decode("utf-8", "ignore"))

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        return sorted({self.llm.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0]
                       for w in words})

    def _logits(self) -> np.ndarray:
        import llama_cpp

        llm = self.llm
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                     shape=(llm.n_vocab(),)).copy()

    def _read(self, prompt: str, head: str) -> None:
        """Bring the KV cache to `prompt`, its logits current. A prompt that continues what
        the cache holds reads only its new tokens; any other reuses the cache as far as
        `head` (read alone when it is not there yet) and reads the rest in one batch."""
        llm = self.llm
        held = list(llm.input_ids[:llm.n_tokens])
        if (self._read_text and len(prompt) > len(self._read_text)
                and prompt.startswith(self._read_text) and held == self._read_tokens):
            more = llm.tokenize(prompt[len(self._read_text):].encode("utf-8"), add_bos=False,
                                special=True)
            tokens = held + list(more)
        else:
            tokens = list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
            lead = (list(llm.tokenize(head.encode("utf-8"), add_bos=True, special=True))
                    if head else [])
            if tokens[:len(lead)] != lead:
                lead = []  # the head's last token merges with what follows: no safe split
            if not lead or held[:len(lead)] != lead:
                llm.n_tokens = 0
                if lead:
                    llm.eval(lead)
            held = lead
        if len(tokens) >= self.n_ctx:
            raise ModelUnavailableError(f"the prompt ({len(tokens)} tokens) exceeds the "
                                        f"model's context of {self.n_ctx}")
        llm.n_tokens = min(len(held), len(tokens) - 1)  # at least one token read: its logits
        llm.eval(tokens[llm.n_tokens:])
        self._read_tokens = tokens
        self._prompt_len = len(tokens)


def llama_cpp_backend(cfg: GenerationConfig) -> LlamaCppGenerator:
    """The registry's factory for generation.backend = "llama-cpp" (model: a name or a path)."""
    return LlamaCppGenerator(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.threads,
                             passage_tokens=cfg.passage_tokens, chat=cfg.chat)
