"""The HTTP API, the web page and the OpenAI-compatible endpoint, on one embedded index.

    app = create_app(RAG.open("my-index"))          # then: uvicorn.run(app, port=8000)

Routes (all JSON; errors are `{"error": {"message", "type", "code"}}`, see server.errors):

    GET    /health                 index counts, generation queue
    GET    /v1/search?q=&k=&mode=  passages with scores and p(z|x)
    POST   /v1/ask                 answer, citations (passage text, source), document posteriors;
                                   {"stream": true}: server-sent events passages, token…, answer;
                                   "history": earlier turns, a follow-up made standalone first
    POST   /v1/write               a text written from the passages, every sentence cited (or a
                                   question for a given answer); the shape and events of /v1/ask
    POST   /v1/translate           translations from a translation memory (see server.translating)
    GET    /v1/documents           what is indexed
    POST   /v1/documents           upload a file (multipart field "file"), indexed at once
    DELETE /v1/documents/{id}      remove a document
    POST   /v1/chat/completions    OpenAI-compatible (see server.openai_api)
    GET    /v1/models
    POST   /mcp                    the Model Context Protocol, streamable HTTP (server.mcp_server)
    GET    /                       the web page
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, File, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ragline import __version__
from ragline.answer import Prepared
from ragline.config import ServerConfig
from ragline.errors import ModelUnavailableError, RaglineError, UnauthorizedError
from ragline.generate.followup import MAX_TURNS, turns_from
from ragline.rag import RAG
from ragline.server import errors, openai_api, translating
from ragline.server.jobs import Job
from ragline.server.limits import BodyLimit
from ragline.server.openai_api import Message
from ragline.server.service import Service
from ragline.server.sse import sse
from ragline.tm.memory import TranslationMemory
from ragline.types import Answer, Hit

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

log = logging.getLogger(__name__)


class AskRequest(BaseModel):
    question: str = Field(description="the question, in any language")
    history: list[Message] | None = Field(
        None, max_length=MAX_TURNS, description="the conversation so far, oldest first: a "
        "follow-up (\"How tall is it?\") is made standalone before it is searched for; the "
        "answer's standalone_question says what was searched")
    k: int | None = Field(None, strict=True, description="passages to retrieve (default: config)")
    mode: str | None = Field(None, description="dense | bm25 | hybrid | weighted")
    model: str | None = Field(None, description="per-passage | concat | rag-token | rag-sequence")
    stream: bool = Field(False, strict=True, description="answer as server-sent events")
    max_tokens: int | None = Field(None, strict=True,
                                   description="concat and per-passage: longest answer in tokens")
    temperature: float | None = Field(None, description="concat model: 0 is greedy")


class WriteRequest(BaseModel):
    instruction: str = Field(description="what to write about; for the question task, the topic")
    task: Literal["text", "question"] = Field("text", description="text: sentences, each cited; "
                                              "question: a question whose answer is `answer`")
    answer: str | None = Field(None, description="the question task: the answer to ask for")
    k: int | None = Field(None, strict=True, description="passages to retrieve (default: config)")
    mode: str | None = Field(None, description="dense | bm25 | hybrid | weighted")
    model: str | None = Field(None, description="per-passage | concat | rag-token | rag-sequence")
    stream: bool = Field(False, strict=True, description="the text as server-sent events")
    max_tokens: int | None = Field(None, strict=True, description="longest output in tokens")
    temperature: float | None = Field(None, description="concat model: 0 is greedy")


@cache
def page() -> str:
    return resources.files("ragline.server").joinpath("static/index.html").read_text("utf-8")


def create_app(rag: RAG, server: ServerConfig | None = None, api_key: str | None = None,
               memory: TranslationMemory | None = None) -> FastAPI:
    """The ASGI app over an open RAG. `api_key`: when set, every route but the page needs
    `Authorization: Bearer <key>`. `memory`: the translation memory of /v1/translate (default:
    the served index, when it is one)."""
    if memory is None and rag.index.manifest.languages:
        memory = TranslationMemory(rag.index)
    cfg = server or rag.config.server
    service = Service(rag, cfg, api_key)

    mcp = _mcp(service, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.queue.start()
        service.query_encoder.start()
        if rag.config.model.kind in ("per-passage", "concat"):
            try:  # load the model now, not on the first question; search works without it
                await run_in_threadpool(service.answerer.generator().load)
            except RaglineError as e:
                log.warning("the generator is not available (%s); /v1/ask will answer 503", e)
        async with AsyncExitStack() as stack:
            if mcp is not None:  # MCP's sessions live as long as the server
                await stack.enter_async_context(mcp.session_manager.run())
            yield
        service.queue.stop()
        service.query_encoder.stop()

    app = FastAPI(title="ragline", version=__version__, lifespan=lifespan,
                  summary="Retrieval-augmented answers with citations over your documents.")
    app.state.service = service
    errors.install(app)
    app.add_middleware(BodyLimit, upload_bytes=service.uploads.max_bytes)

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not service.authorized(request):
            return errors.error_response(UnauthorizedError(
                "this server needs an API key: send 'Authorization: Bearer <key>'"))
        try:
            return await call_next(request)
        except Exception:  # a bug, not a user mistake: log it here, tell the client little
            log.exception("internal error on %s %s", request.method, request.url.path)
            return errors.internal_error_response()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page() -> str:
        return page()

    @app.get("/health")
    def health() -> dict[str, Any]:
        enc = service.query_encoder
        return {"status": "ok", "version": __version__, "index": rag.index.counts(),
                "model": rag.config.model.kind, "generation": service.queue.stats(),
                "query_encoder": {"queries": enc.queries, "batches": enc.batches}}

    @app.get("/v1/search")
    def search(q: str, k: int | None = None, mode: str | None = None,
               rerank: bool = True) -> dict[str, Any]:
        t0 = time.perf_counter()
        hits = service.searcher.search(q, k=k, mode=mode, rerank=rerank)
        return {"query": q, "mode": mode or rag.config.retrieval.mode, **service.hits_json(hits),
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.post("/v1/ask", response_model=None)
    async def ask(req: AskRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        turns = turns_from([m.model_dump() for m in req.history or []])
        rewrite = await service.followup(req.question, turns)
        prepared = await run_in_threadpool(service.prepare, req.question, req.k, req.mode,
                                           req.model, req.max_tokens, req.temperature,
                                           history=turns, rewrite=rewrite)
        return await _respond(service, prepared, req.stream, request)

    @app.post("/v1/write", response_model=None)
    async def write(req: WriteRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        prepared = await run_in_threadpool(service.prepare, req.instruction, req.k, req.mode,
                                           req.model, req.max_tokens, req.temperature,
                                           req.task, req.answer)
        return await _respond(service, prepared, req.stream, request)

    @app.get("/v1/documents")
    def list_documents() -> dict[str, Any]:
        docs = rag.index.documents()
        return {"documents": service.public_docs([d.to_dict() for d in docs]),
                "count": len(docs)}

    @app.post("/v1/documents", status_code=201)
    async def upload(file: Annotated[UploadFile, File(description="a file of a type ragline "
                                                                  "reads (README: File types)")],
                     ) -> dict[str, Any]:
        service.check_writable()
        # the app's body limit has bounded it; UploadStore.add checks the exact limit
        added = await run_in_threadpool(service.uploads.add, file.filename, await file.read())
        return {**added, "documents": service.public_docs(added["documents"])}

    @app.delete("/v1/documents/{doc_id:path}")  # ids may hold '/' (a jsonl row's own id)
    def delete_document(doc_id: str) -> dict[str, Any]:
        service.check_writable()
        return service.uploads.remove(doc_id)

    openai_api.register(app, service)
    translating.register(app, service, memory)
    if mcp is not None:  # behind the guard (the API key) like every route
        app.router.routes.extend(mcp.streamable_http_app(
            streamable_http_path="/mcp", host=cfg.host).routes)
    return app


def _mcp(service: Service, cfg: ServerConfig) -> MCPServer[Any] | None:
    """The MCP server /mcp serves, or None without the `mcp` package (an older install of
    the server extra)."""
    try:
        from ragline.server.mcp_server import build_mcp
    except ModelUnavailableError as e:
        log.warning("MCP is off: %s", e)
        return None
    return build_mcp(service, cfg.read_only, [Path(p) for p in cfg.allow_paths])


async def _respond(service: Service, prepared: Prepared, stream: bool,
                   request: Request) -> dict[str, Any] | StreamingResponse:
    """Queue the generation; the Answer as JSON, or (stream) its events as they come. A
    client that goes away cancels it either way."""
    job = service.submit(prepared)
    if not stream:
        return service.answer_json(await service.answer(job, request))
    return StreamingResponse(_ask_events(service, job, prepared.hits),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _ask_events(service: Service, job: Job, hits: Sequence[Hit]) -> AsyncIterator[str]:
    """passages (at once, even while queued), queued, token…, then answer, or error."""
    yield sse(service.hits_json(hits), "passages")
    yield sse(service.queue.stats(), "queued")
    try:
        async for item in job.results():
            if isinstance(item, Answer):
                yield sse(service.answer_json(item), "answer")
            else:
                yield sse({"text": item}, "token")
    except Exception as e:  # the status line is sent: the error travels as an event
        yield sse(errors.stream_error(e), "error")
