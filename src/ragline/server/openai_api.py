"""OpenAI-compatible chat completions, so the official `openai` client works unchanged.

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="…")   # any key if none is set
    r = client.chat.completions.create(model="ragline", messages=[{"role": "user",
                                       "content": "When was the Eiffel Tower completed?"}])
    r.choices[0].message.content      # "… 1889 [1]"
    r.citations                       # the extra field: [{"marker": 1, "name", "quote", "text", …}]

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

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ragline.errors import ConfigError, ModelNotFoundError
from ragline.generate.followup import turns_from
from ragline.registry import MODELS
from ragline.server import errors
from ragline.server.jobs import Job
from ragline.server.sse import sse
from ragline.types import Answer, Turn

if TYPE_CHECKING:
    from ragline.server.service import Service

PREFIX = "ragline"


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


def model_ids() -> list[str]:
    return [PREFIX] + [f"{PREFIX}/{m}" for m in MODELS.names]


def resolve_model(name: str, default: str) -> str:
    if name == PREFIX:
        return default
    if name.startswith(PREFIX + "/") and name[len(PREFIX) + 1:] in MODELS.names:
        return name[len(PREFIX) + 1:]
    raise ModelNotFoundError(f"unknown model '{name}'; available: {', '.join(model_ids())}")


def conversation_of(messages: Sequence[Message]) -> tuple[str, list[Turn]]:
    """The question (the last user message) and the turns before it."""
    turns = turns_from([m.model_dump() for m in messages], what="messages")
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "user":
            return turns[i].content, turns[:i]
    raise ConfigError("messages has no user message to answer")


def register(app: FastAPI, service: Service) -> None:
    rag = service.rag

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "ragline"}
            for m in model_ids()]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatRequest,
                               request: Request) -> dict[str, Any] | StreamingResponse:
        if req.n not in (None, 1):
            raise ConfigError("n > 1 is not supported: ragline gives one answer per question")
        model = resolve_model(req.model, rag.config.model.kind)
        question, turns = conversation_of(req.messages)
        max_tokens = req.max_completion_tokens or req.max_tokens
        rewrite = await service.followup(question, turns)
        prepared = await run_in_threadpool(service.prepare, question, req.k, req.mode, model,
                                           max_tokens, req.temperature, history=turns,
                                           rewrite=rewrite)
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
