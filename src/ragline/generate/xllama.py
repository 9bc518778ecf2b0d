"""Local generation with llama.cpp through xllamacpp: a prebuilt wheel of llama.cpp's own
server, so the default install compiles nothing. The model is a name of ragline.registry.LLMS
(packaged GGUF files, assembled once into the cache) or a GGUF path; instruct models get their
own chat template.

    gen = XLlamaGenerator()                          # the default model (LLMS' first)
    gen = XLlamaGenerator("my-model.Q4_K_M.gguf", n_ctx=8192)

xllamacpp runs llama.cpp's server in this process and gives no tokenizer or logits of its own:
tokens come from the server's /tokenize, and the per-passage reader's probabilities from the
log-probabilities the server reports with each token it samples (`n_probs`). Those are the
model's, before sampling, so a token forced by a grammar or a logit bias is scored as the model
would score it: that is how a given span is teacher-forced. The server also listens on a
loopback port, behind a random key made here.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import urllib.error
import urllib.request
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

# the server listens on 127.0.0.1: an HTTP(S)_PROXY in the environment must not carry requests
# to it elsewhere
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_TOP = 64        # log-probabilities the server reports for a yes/no verdict's token
_FORCE = 100.0   # a logit bias that makes greedy sampling pick the token


class XLlamaGenerator(PromptGenerator):
    """`model`: a name of ragline.registry.LLMS or a GGUF path (None: the default name).
    `chat`: use the model's chat template (None: when the model is an instruct model, as its
    registry entry or, for a file, its GGUF metadata says)."""

    def __init__(self, model: str | Path | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0,
                 passage_tokens: int | None = None, chat: bool | None = None) -> None:
        self.model = model
        self.id = model_id(model)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.passage_tokens = passage_tokens
        self.chat = chat
        self._server: Any = None
        self._url = ""
        self._key = ""
        self._template: ChatTemplate | None = None
        # the last prompt read, as text and tokens: a prompt that continues it (a verdict
        # after an answer) is tokenized as those tokens plus its new part, as it was read
        self._read_text = ""
        self._read_tokens: list[int] = []

    # ------------------------------------------------------------ loading

    def load(self) -> None:
        if self._server is not None:
            return
        try:
            import xllamacpp
        except ImportError:
            raise missing_extra("xllamacpp", "llama") from None
        path, instruct = resolve_gguf(self.model)
        threads = self.n_threads or max(1, min(os.cpu_count() or 1, 8))
        p = xllamacpp.CommonParams()
        p.model.path = str(path)
        p.n_ctx = self.n_ctx
        p.n_parallel = 1  # one sequence: callers take turns (the server's queue, our lock)
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
        p.warmup = False
        p.verbosity = -1  # its log goes to stderr, from C: nothing unless it fails
        # flash attention reads a prompt ≈8 % faster on CPU (Qwen 0.5B, 2 cores)
        p.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self._key = secrets.token_urlsafe(24)
        p.api_keys = [self._key]  # the loopback listener is open to every local user
        try:
            server = xllamacpp.Server(p)
        except RuntimeError as e:
            raise ModelUnavailableError(f"llama.cpp could not load {path}: {e}") from None
        self._server, self._url = server, server.listening_address
        if self.chat is False or (self.chat is None and instruct is False):
            return  # a base model's prompt
        if not instruct and not _gguf_template(path):  # a packaged instruct model has one
            if self.chat:
                raise ModelUnavailableError(f"{path} has no chat template in its metadata; "
                                            "use it as a base model (generation.chat = false)")
            return
        self._template = self._render

    def _open(self, route: str, body: dict[str, Any]) -> Any:
        """POST `body` to the server's `route`; the open response."""
        request = urllib.request.Request(
            self._url + route, data=json.dumps(body).encode("utf-8"),
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"})
        try:
            return _LOOPBACK.open(request, timeout=600)
        except urllib.error.HTTPError as e:
            raise ModelUnavailableError(f"llama.cpp refused {route}: {_reason(e)}") from None
        except OSError as e:
            raise ModelUnavailableError(f"llama.cpp did not answer {route}: {e}") from None

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        with self._open(route, body) as response:
            return json.load(response)

    def _render(self, turns: list[tuple[str, str]]) -> str:
        messages = [{"role": role, "content": text} for role, text in turns]
        try:
            return str(self._post("/apply-template", {"messages": messages})["prompt"])
        except ModelUnavailableError as e:
            if turns and turns[0][0] == "system" and len(turns) > 1:
                # some templates refuse a system turn: it opens the first user turn instead
                (_, system), (role, first), *rest = turns
                return self._render([(role, f"{system}\n\n{first}"), *rest])
            raise ModelUnavailableError(f"the chat template of {self.id} failed: {e}; use it "
                                        "as a base model (generation.chat = false)") from None

    def chat_template(self) -> ChatTemplate | None:
        self.load()
        return self._template

    # ------------------------------------------------------------ tokens

    def tokenize(self, text: str, bos: bool = True, special: bool = True) -> list[int]:
        self.load()
        out = self._post("/tokenize", {"content": text, "add_special": bos,
                                       "parse_special": special})
        return [int(t) for t in out["tokens"]]

    def detokenize(self, tokens: Sequence[int]) -> str:
        self.load()
        # a cut inside a character leaves a replacement character at the end: drop it
        return str(self._post("/detokenize", {"tokens": list(tokens)})["content"]).rstrip("\ufffd")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def truncate(self, text: str, tokens: int) -> str:
        """`text` cut to its first `tokens` tokens."""
        ids = self.tokenize(text, bos=False, special=False)
        return text if len(ids) <= tokens else self.detokenize(ids[:tokens])

    # ------------------------------------------------------------ streaming

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        self.load()
        self._read_text = ""
        body = {"prompt": prompt, "n_predict": max_tokens, "temperature": temperature,
                "stop": list(stop), "stream": True, "repeat_penalty": 1.1, "seed": self.seed,
                "cache_prompt": True}
        # closing the connection (the caller stops reading) stops the generation
        with self._open("/completion", body) as response:
            for line in response:
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise ModelUnavailableError(f"llama.cpp: {event['error'].get('message')}")
                if event.get("content"):
                    yield str(event["content"])
                if event.get("stop"):
                    break

    # ------------------------------------------------------------ reading its own probabilities

    def complete(self, prompt: str, max_tokens: int = 32, stop: Sequence[str] = ("\n",),
                 head: str = "") -> Completion:
        """Greedy completion with each token's log-probability, the token that holds the stop
        string included (no repeat penalty: an answer copied from a passage repeats its words).
        `head`: a prefix many prompts share, read from the same split point (see _tokens)."""
        tokens = self._tokens(prompt, head)
        room = min(max_tokens, self.n_ctx - len(tokens) - 1)
        if room < 1:
            return Completion("")
        out = self._post("/completion", {
            "prompt": tokens, "n_predict": room,
            "temperature": 0, "n_probs": 1, "stop": list(stop), "return_tokens": True,
            "repeat_penalty": 1.0, "cache_prompt": True})
        made = [int(t) for t in out["tokens"]]
        logprobs = [float(c["logprob"]) for c in out["completion_probabilities"]]
        if out["stop_type"] == "eos":
            made, logprobs = made[:-1], logprobs[:len(made) - 1]  # the end token is no text
        elif out["stop_type"] == "word" and len(logprobs) < len(made):
            # the server reports no probability for the token that held the stop string
            logprobs.append(self._forced(tokens + made[:-1], made[-1]))
            made = made[:-1]
        text = str(out["content"])
        self._read_tokens = tokens + made
        try:
            self._read_text = prompt + self.detokenize(made) if made else prompt
        except ModelUnavailableError:
            self._read_text = ""
        return Completion(text, tuple(logprobs))

    def log_odds(self, prompt: str, yes: Sequence[str], no: Sequence[str],
                 head: str = "") -> float:
        """log p(yes) − log p(no) of the next token, over the first tokens of the words;
        the softmax's normalizer cancels out."""
        tokens = self._tokens(prompt, head)
        out = self._post("/completion", {"prompt": tokens, "n_predict": 1, "temperature": 0,
                                         "n_probs": _TOP, "cache_prompt": True})
        top = {int(t["id"]): float(t["logprob"])
               for t in out["completion_probabilities"][0]["top_logprobs"]}

        def logprob(words: Sequence[str]) -> float:
            ids = self._first_tokens(words)
            return float(np.logaddexp.reduce(
                [top[i] if i in top else self._forced(tokens, i) for i in ids]))

        self._read_tokens, self._read_text = tokens, prompt
        return logprob(yes) - logprob(no)

    def span_logprob(self, prompt: str, span: str, head: str = "") -> float:
        """The mean log-probability of the tokens of `span` after `prompt`, teacher-forced: a
        grammar admits only the span and a logit bias favours its own tokens, so greedy
        sampling writes exactly them, each scored by the model."""
        tokens = self._tokens(prompt, head)
        new = self.tokenize(span, bos=False, special=False)
        if not new:
            return 0.0
        if len(tokens) + len(new) >= self.n_ctx:
            raise ModelUnavailableError(f"the prompt ({len(tokens) + len(new)} tokens) "
                                        f"exceeds the model's context of {self.n_ctx}")
        try:
            out = self._post("/completion", {
                "prompt": tokens, "n_predict": len(new), "temperature": 0, "n_probs": 1,
                "grammar": "root ::= " + _gbnf_literal(span), "return_tokens": True,
                "logit_bias": [[t, _FORCE] for t in sorted(set(new))], "cache_prompt": True})
            made = [int(t) for t in out["tokens"]][:len(new)]
            picked = [float(c["logprob"]) for c in out["completion_probabilities"]]
        except ModelUnavailableError:  # a grammar it would not take (a NUL in the span)
            made = []
        if made != new:
            # the grammar let another split of the same text through: force token by token
            picked = [self._forced(tokens + new[:i], t) for i, t in enumerate(new)]
        self._read_tokens, self._read_text = tokens + new, prompt + span
        return float(np.mean(picked[:len(new)]))

    def _forced(self, tokens: list[int], token: int) -> float:
        """log p(token | tokens), the token forced by a logit bias."""
        out = self._post("/completion", {"prompt": tokens, "n_predict": 1, "temperature": 0,
                                         "n_probs": 1, "logit_bias": [[token, _FORCE]],
                                         "cache_prompt": True})
        return float(out["completion_probabilities"][0]["logprob"])

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        return sorted({self.tokenize(w, bos=False, special=False)[0] for w in words})

    def _tokens(self, prompt: str, head: str = "") -> list[int]:
        """`prompt` as tokens: the last prompt's tokens and the new part's when it continues
        that one (as the model read them), else the whole prompt's. In that case a `head` it
        starts with is made the server's cached prefix first, so that the rest is read from
        the same split point whatever was read before: reading from another split changes
        log-probabilities by up to 0.1."""
        self.load()
        if (self._read_text and len(prompt) > len(self._read_text)
                and prompt.startswith(self._read_text)):
            tokens = self._read_tokens + self.tokenize(prompt[len(self._read_text):], bos=False)
        else:
            tokens = self.tokenize(prompt)
            if head and len(tokens) < self.n_ctx:
                lead = self.tokenize(head)
                split = 0  # the head's last token may merge with what follows: split before it
                while split < min(len(lead), len(tokens) - 1) and lead[split] == tokens[split]:
                    split += 1
                if split:
                    # n_predict 0 reads the prefix and leaves the cache holding it alone. A
                    # prefix the cache holds already has its last token read again, alone (the
                    # server needs its logits): one read afresh is primed twice, so that its
                    # last token is always the one read alone
                    prime = {"prompt": tokens[:split], "n_predict": 0, "cache_prompt": True}
                    if self._post("/completion", prime)["timings"]["prompt_n"] > 1:
                        self._post("/completion", prime)
        if len(tokens) >= self.n_ctx:
            raise ModelUnavailableError(f"the prompt ({len(tokens)} tokens) exceeds the "
                                        f"model's context of {self.n_ctx}")
        return tokens


def _gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal: quotes, backslashes and control characters escaped
    (a NUL would end the grammar's C string)."""
    return '"' + "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or c in '"\\' else c
                         for c in text) + '"'


def _gguf_template(path: Path) -> str:
    """The chat template in a GGUF file's metadata ("" when it has none)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise missing_extra("gguf", "llama") from None
    try:
        field = GGUFReader(path).fields.get("tokenizer.chat_template")
    except (ValueError, OSError) as e:
        raise ModelUnavailableError(f"{path} is not a readable GGUF file: {e}") from None
    return "" if field is None else bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def _reason(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read())["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {e.code}"


def xllama_backend(cfg: GenerationConfig) -> XLlamaGenerator:
    """The registry's factory for generation.backend = "llama-cpp" (model: a name or a path)."""
    return XLlamaGenerator(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.threads,
                           passage_tokens=cfg.passage_tokens, chat=cfg.chat)
