"""Any OpenAI-compatible server (llama.cpp server, vLLM, Ollama, OpenAI) as the generator.
Standard library only: streaming chat completions over server-sent events.

    gen = OpenAIGenerator("http://127.0.0.1:8080/v1", model="qwen2.5-7b-instruct")
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

from ragline.config import GenerationConfig
from ragline.errors import ConfigError, ModelUnavailableError
from ragline.generate.prompted import PromptGenerator


class OpenAIGenerator(PromptGenerator):
    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, n_ctx: int = 4096) -> None:
        self.n_ctx = n_ctx
        self.base_url = base_url.rstrip("/")
        self.id = model
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1  # the server owns the tokenizer; a safe over-estimate

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        body = {"model": self.model, "stream": True, "max_tokens": max_tokens,
                "temperature": temperature, "messages": [{"role": "user", "content": prompt}]}
        if stop:
            body["stop"] = list(stop)[:4]  # the OpenAI API accepts at most 4 stop strings
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions",
                                     data=json.dumps(body).encode(), headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise ModelUnavailableError(f"{self.base_url}: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ModelUnavailableError(f"{self.base_url}: cannot connect ({e})") from None
        with resp:
            for raw in resp:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    delta = json.loads(data)["choices"][0].get("delta", {})
                except (ValueError, KeyError, IndexError):
                    continue
                if delta.get("content"):
                    yield delta["content"]


def openai_backend(cfg: GenerationConfig) -> OpenAIGenerator:
    """The registry's factory for generation.backend = "openai"."""
    if not cfg.base_url or not cfg.model:
        raise ConfigError("the openai backend needs generation.base_url and generation.model")
    return OpenAIGenerator(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, n_ctx=cfg.n_ctx)
