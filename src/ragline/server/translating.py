"""POST /v1/translate: retrieval-augmented translation from the server's translation memory.

The memory is the one `ragline serve --tm TM_DIR` names, or the default collection itself when
it is one; a key that may read the default collection may use it. Generation waits in the
same queue as answers (one local model generates one thing at a time).

    {"text": "Open the file", "k": 3}            → {"source": "en", "target": "zh-cn",
    {"text": ["…", "…"], "to": "zh"}                "translations": [{"source", "translation",
                                                                      "matches", "exact"}, …]}
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from ragline.errors import ConfigError
from ragline.retrieve.searcher import check_query
from ragline.server.collections import Collections
from ragline.tm.memory import TranslationMemory
from ragline.tm.translate import Translation, Translator, check_k_matches

MAX_SEGMENTS = 100  # one request's segments: more wait too long in one generation job


class TranslateRequest(BaseModel):
    text: str | list[str] = Field(description="a segment, or a list of segments")
    to: str | None = Field(None, description="the target language (default: the memory's)")
    k: int = Field(3, strict=True, description="matches to condition on; 0: no retrieval")


def register(app: FastAPI, hub: Collections, memory: TranslationMemory | None) -> None:
    from ragline.server.app import access_of

    service = hub.services[hub.default]
    translator: list[Translator] = []  # made on first use: the generator loads then

    def ready() -> Translator:
        if memory is None:
            raise ConfigError("this server has no translation memory; start it with "
                              "ragline serve DIR --tm TM_DIR (or serve the memory itself)")
        if not translator:
            from ragline.generate.prompted import PromptGenerator

            gen = service.answerer.generator("concat")
            assert isinstance(gen, PromptGenerator)  # the registry's concat factory makes one
            translator.append(Translator(memory, gen))
        return translator[0]

    @app.post("/v1/translate")
    async def translate(req: TranslateRequest, request: Request) -> dict[str, Any]:
        """Translates with the closest pairs of the translation memory as examples."""
        hub.get(hub.default, access_of(request))  # the memory goes with the default collection
        segments = [req.text] if isinstance(req.text, str) else list(req.text)
        if not segments or len(segments) > MAX_SEGMENTS:
            raise ConfigError(f"send 1 to {MAX_SEGMENTS} segments, got {len(segments)}")
        for s in segments:
            check_query(s, "text to translate")
        check_k_matches(req.k)
        t = ready()
        t.check_target(req.to)
        job = service.queue.submit(lambda: [t.translate_many(segments, req.k)])
        done: list[Translation] = []
        async for item in job.results():
            done = item
        out = [x.to_dict() for x in done]
        shown = service.sources_shown()
        for x in out:
            for m in x["matches"]:
                m["origin"] = shown(m["origin"])
        return {"source": t.memory.source, "target": t.memory.target, "translations": out}
