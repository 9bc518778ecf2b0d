"""OpenAI-compatible chat completions, so the official `openai` client works unchanged.

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="…")   # any key if none is set
    r = client.chat.completions.create(model="ragline", messages=[{"role": "user",
                                       "content": "When was the Eiffel Tower completed?"}])
    r.choices[0].message.content      # "… 1889 [1]"
    r.citations                       # the extra field: [{"marker": 1, "name", "quote", "text", …}]

Models name a collection too: `ragline/handbook`, `ragline/handbook/concat`. POST
/v1/embeddings embeds texts with a collection's encoder (`encoding_format` float or base64;
`input_type` "query" embeds as search queries).

The question is the last user message; the messages before it are the conversation: a
follow-up ("How tall is it?") is made standalone before it is searched for, system messages
are instructions to the concat model, assistant turns are context (their citation markers
dropped). Models:
`ragline` (the server's default model), `ragline/per-passage`, `ragline/concat`, `ragline/rag-token`,
`ragline/rag-sequence`. Honoured: `stream`, `max_tokens` / `max_completion_tokens` and
`temperature` (concat only), and two extras, `k` and `mode` (pass them with `extra_body`).
Other OpenAI parameters are accepted and ignored; `n` > 1 is refused.

Extra fields: `citations` (as in /v1/ask) and `ragline` (answered, the standalone question
a follow-up was searched as, passages, document posteriors, timings) on the response, or on
the last chunk of a stream. When the passages do not back a streamed draft, a last content
chunk says so, as the CLI does.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ragline.errors import CollectionNotFoundError, ConfigError, ModelNotFoundError
from ragline.generate.followup import turns_from
from ragline.registry import MODELS
from ragline.server import errors
from ragline.server.jobs import Job
from ragline.server.sse import sse
from ragline.types import Answer, Turn

if TYPE_CHECKING:
    from ragline.server.collections import Access, Collections
    from ragline.server.service import Service

PREFIX = "ragline"
MAX_EMBED_INPUTS = 2048       # OpenAI's own bound on one request's inputs
MAX_EMBED_CHARS = 32_000


class Message(BaseModel):
    """A turn of a conversation, in OpenAI's shape (also /v1/ask's history)."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(description="user | assistant | system")
    content: str | list[dict[str, Any]] | None = Field(None, description="the turn's text")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI parameters ragline does not use
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    n: int | None = None
    k: int | None = Field(None, description="ragline: passages to retrieve")
    mode: str | None = Field(None, description="ragline: dense | bm25 | hybrid | weighted")
    collection: str | None = Field(None, max_length=64,
                                   description="ragline: the collection (or model ragline/NAME)")


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(PREFIX, description="ragline or ragline/COLLECTION: whose encoder")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text or a list of texts (token arrays are not taken)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    input_type: Literal["passage", "query"] = Field(
        "passage", description="ragline: embed as documents (default) or as search queries "
        "(the question encoder, with its query prefix)")
    collection: str | None = Field(None, max_length=64)


def model_ids(collections: Sequence[str]) -> list[str]:
    """`ragline` and `ragline/MODEL` on the default collection, `ragline/NAME` and
    `ragline/NAME/MODEL` on collection NAME."""
    per = [f"/{m}" for m in MODELS.names]
    return [PREFIX, *(PREFIX + m for m in per),
            *(f"{PREFIX}/{c}{m}" for c in collections for m in ["", *per])]


def resolve_model(name: str, hub: Collections, access: Access,
                  collection: str | None = None) -> tuple[Service, str | None]:
    """The collection and the model (None: the server's) a model id names; a `collection`
    field, when given, names the collection instead."""
    parts = name.split("/")
    if parts[0] != PREFIX or len(parts) > 3:
        raise ModelNotFoundError(f"unknown model {name[:100]!r}; GET /v1/models lists them")
    rest = parts[1:]
    model = rest.pop() if rest and rest[-1] in MODELS.names else None
    if len(rest) > 1 or (rest and collection is not None and rest[0] != collection):
        raise ModelNotFoundError(f"unknown model {name[:100]!r}; GET /v1/models lists them")
    try:
        service = hub.get(rest[0] if rest else collection, access)
    except CollectionNotFoundError:
        raise ModelNotFoundError(f"unknown model {name[:100]!r}; GET /v1/models lists the ones "
                                 "this key may use") from None
    return service, model


def conversation_of(messages: Sequence[Message]) -> tuple[str, list[Turn]]:
    """The question (the last user message) and the turns before it."""
    turns = turns_from([m.model_dump() for m in messages], what="messages")
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "user":
            return turns[i].content, turns[:i]
    raise ConfigError("messages has no user message to answer")


def register(app: FastAPI, hub: Collections) -> None:
    from ragline.server.app import access_of

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        """The collections as OpenAI models (`ragline/NAME`)."""
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "ragline"}
            for m in model_ids(hub.visible(access_of(request)))]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatRequest,
                               request: Request) -> dict[str, Any] | StreamingResponse:
        """OpenAI-compatible chat: the last user message is asked over the collection;
        earlier turns make a follow-up standalone."""
        if req.n not in (None, 1):
            raise ConfigError("n > 1 is not supported: ragline gives one answer per question")
        service, model = resolve_model(req.model, hub, access_of(request), req.collection)
        question, turns = conversation_of(req.messages)
        max_tokens = req.max_completion_tokens or req.max_tokens
        prepared = await service.prepare_turn(question, req.k, req.mode, model, max_tokens,
                                              req.temperature, turns)
        job = service.submit(prepared)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": req.model}
        if req.stream:
            return StreamingResponse(_chunks(service, job, head),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        answer = await service.answer(job, request)
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": answer.text}}],
                **_extras(service, answer)}

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        """OpenAI-compatible embeddings with the collection's encoder (float or base64)."""
        service, _ = resolve_model(req.model, hub, access_of(request), req.collection)
        raw = [req.input] if isinstance(req.input, str) else req.input
        if not raw or len(raw) > MAX_EMBED_INPUTS:
            raise ConfigError(f"input must hold 1 to {MAX_EMBED_INPUTS:,} texts, got {len(raw)}")
        texts = [t for t in raw if isinstance(t, str)]
        if len(texts) != len(raw):
            raise ConfigError("input must be text: token arrays are not taken (ragline "
                              "tokenizes with the collection's own encoder)")
        for n, t in enumerate(texts):
            if not t.strip() or len(t) > MAX_EMBED_CHARS:
                raise ConfigError(f"input {n}: each text must be 1 to {MAX_EMBED_CHARS:,} "
                                  f"characters, got {len(t):,}")
        index = service.index
        dim = index.manifest.encoder.dim
        if req.dimensions is not None and req.dimensions != dim:
            raise ConfigError(f"this collection's encoder gives {dim} dimensions; "
                              f"dimensions={req.dimensions} cannot be had")
        encode = (service.searcher.query_encoder.encode_queries if req.input_type == "query"
                  else index.encoder.encode_passages)
        vectors = await run_in_threadpool(encode, texts)
        vectors = np.asarray(vectors, dtype=np.float32)  # (n, dim), L2-normalized
        data = [{"object": "embedding", "index": i,
                 "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode()
                               if req.encoding_format == "base64" else v.tolist())}
                for i, v in enumerate(vectors)]
        tokens = sum(len(t.split()) for t in texts)  # words: the encoder's own count differs
        return {"object": "list", "data": data, "model": index.manifest.encoder.id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _extras(service: Service, answer: Answer) -> dict[str, Any]:
    full = service.answer_json(answer)
    return {"citations": full["citations"],
            "ragline": {k: full[k] for k in ("answered", "model", "standalone_question",
                                             "passages", "documents", "timings")}}


async def _chunks(service: Service, job: Job, head: dict[str, Any]) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse({**head, "object": "chat.completion.chunk", **extra,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                   "logprobs": None}]})

    yield chunk({"role": "assistant", "content": ""})
    streamed = ""
    try:
        async for item in job.results():
            if isinstance(item, Answer):
                if not item.answered and streamed.strip() != item.text:
                    note = f"\n\n→ {item.text} (the draft above is not supported by the passages)"
                    yield chunk({"content": note})
                yield chunk({}, "stop", **_extras(service, item))
            else:
                streamed += item
                yield chunk({"content": item})
    except Exception as e:  # the openai client raises APIError on an "error" event
        yield sse(errors.stream_error(e))
        return
    yield "data: [DONE]\n\n"
