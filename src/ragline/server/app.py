"""The HTTP API, the web page, the OpenAI-compatible endpoint and MCP, over one index or
several (collections, each named by its folder; see server.collections).

    app = create_app(RAG.open("my-index"))                      # then: uvicorn.run(app, port=8000)
    app = create_app({"handbook": rag1, "wiki": rag2}, keys=KeyRing.load(Path("keys.toml")))

Routes (all JSON; errors are `{"error": {"message", "type", "code"}}`, see server.errors). Each
takes a collection, `?collection=NAME` or a `collection` field (default: the first served):

    GET    /health                 counts, generation queue
    GET    /v1/collections         the collections this key opens
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
    POST   /v1/chat/completions    OpenAI-compatible (see server.openai_api); model "ragline/NAME"
    POST   /v1/embeddings          OpenAI-compatible: the collection's encoder
    GET    /v1/models
    POST   /mcp                    the Model Context Protocol, streamable HTTP (server.mcp_server)
    GET    /                       the web page
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, File, Query, Request, Response, UploadFile
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
from ragline.server.collections import Access, Collections, KeyRing, collection_names
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

COLLECTION = Field(None, max_length=64, description="the collection (default: the server's first)")


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
    collection: str | None = COLLECTION


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
    collection: str | None = COLLECTION


@cache
def page() -> str:
    return resources.files("ragline.server").joinpath("static/index.html").read_text("utf-8")


def access_of(request: Request) -> Access:
    """What the request's key opens (the guard set it)."""
    access: Access = request.state.access
    return access


def create_app(rags: RAG | Mapping[str, RAG], server: ServerConfig | None = None,
               api_key: str | None = None, memory: TranslationMemory | None = None,
               keys: KeyRing | None = None) -> FastAPI:
    """The ASGI app over one open RAG, or several by name (the first is the default).
    `api_key`: when set, every route but the page needs `Authorization: Bearer <key>`; `keys`:
    keys that each open some collections. `memory`: the translation memory of /v1/translate
    (default: the default collection, when it is one)."""
    if isinstance(rags, RAG):
        rags = {collection_names([rags.index.path])[0]: rags}
    first = next(iter(rags.values()))
    if memory is None and first.index.manifest.languages:
        memory = TranslationMemory(first.index)
    cfg = server or first.config.server
    hub = Collections(rags, cfg, keys, api_key)
    mcp = _mcp(hub, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        default = hub.services[hub.default]
        if first.config.model.kind in ("per-passage", "concat"):
            try:  # load the model now, not on the first question; search works without it
                await run_in_threadpool(default.answerer.generator().load)
            except RaglineError as e:
                log.warning("the generator is not available (%s); /v1/ask will answer 503", e)
        async with AsyncExitStack() as stack:
            if mcp is not None:  # MCP's sessions live as long as the server
                await stack.enter_async_context(mcp.session_manager.run())
            yield
        hub.stop()

    app = FastAPI(title="ragline", version=__version__, lifespan=lifespan,
                  summary="Retrieval-augmented answers with citations over your documents.")
    app.state.collections = hub
    errors.install(app)
    app.add_middleware(BodyLimit, upload_bytes=int(cfg.max_upload_mb * 2**20))

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        access = hub.authenticate(request.headers.get("authorization", ""))
        if access is None and request.url.path != "/":  # the page holds no data
            return errors.error_response(UnauthorizedError(
                "this server needs an API key: send 'Authorization: Bearer <key>'"))
        request.state.access = access
        try:
            return await call_next(request)
        except Exception:  # a bug, not a user mistake: log it here, tell the client little
            log.exception("internal error on %s %s", request.method, request.url.path)
            return errors.internal_error_response()

    def use(request: Request, collection: str | None, write: bool = False) -> Service:
        service = hub.get(collection, access_of(request), write)
        if write:
            service.check_writable()
        return service

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page() -> str:
        return page()

    @app.get("/health")
    def health(request: Request, collection: str | None = Query(None)) -> dict[str, Any]:
        """The index's counts and the server's state: a load balancer's probe."""
        service = use(request, collection)
        enc = service.query_encoder
        return {"status": "ok", "version": __version__, "collection": service.name,
                "index": service.index.counts(), "model": service.rag.config.model.kind,
                "read_only": cfg.read_only, "generation": hub.queue.stats(),
                "query_encoder": {"queries": enc.queries, "batches": enc.batches}}

    @app.get("/v1/collections")
    def collections(request: Request) -> dict[str, Any]:
        """The collections the key opens, with their counts."""
        access = access_of(request)
        names = hub.visible(access)
        return {"default": hub.default_for(access), "collections": [
            {"name": n, **hub.services[n].index.counts(),
             "encoder": hub.services[n].index.manifest.encoder.id,
             "writable": access.can_write(n) and not cfg.read_only} for n in names]}

    @app.get("/v1/search")
    def search(request: Request, q: str, k: int | None = None, mode: str | None = None,
               rerank: bool = True, collection: str | None = Query(None)) -> dict[str, Any]:
        """Ranked passages for `q`: source, position, score and p(z|x)."""
        service = use(request, collection)
        t0 = time.perf_counter()
        hits = service.searcher.search(q, k=k, mode=mode, rerank=rerank)
        return {"query": q, "mode": mode or service.rag.config.retrieval.mode,
                "collection": service.name, **service.hits_json(hits),
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.post("/v1/ask", response_model=None)
    async def ask(req: AskRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        """A cited answer (or a refusal); `stream: true` sends it as server-sent events."""
        service = use(request, req.collection)
        turns = turns_from([m.model_dump() for m in req.history or []])
        prepared = await service.prepare_turn(req.question, req.k, req.mode, req.model,
                                              req.max_tokens, req.temperature, turns)
        return await _respond(service, prepared, req.stream, request)

    @app.post("/v1/write", response_model=None)
    async def write(req: WriteRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        """A few sentences, or a question, written from the retrieved passages, each citing its passages."""
        service = use(request, req.collection)
        prepared = await run_in_threadpool(service.prepare, req.instruction, req.k, req.mode,
                                           req.model, req.max_tokens, req.temperature,
                                           req.task, req.answer)
        return await _respond(service, prepared, req.stream, request)

    @app.get("/v1/documents")
    def list_documents(request: Request,
                       collection: str | None = Query(None)) -> dict[str, Any]:
        """The indexed documents: id, source, title and passage count."""
        service = use(request, collection)
        docs = service.index.documents()
        return {"collection": service.name,
                "documents": service.public_docs([d.to_dict() for d in docs]),
                "count": len(docs)}

    @app.post("/v1/documents", status_code=201)
    async def upload(request: Request,
                     file: Annotated[UploadFile, File(description="a file of a type ragline "
                                                                  "reads (docs/reference/formats.md)")],
                     collection: str | None = Query(None)) -> dict[str, Any]:
        """Indexes an uploaded file (multipart form field `file`)."""
        service = use(request, collection, write=True)
        # the app's body limit has bounded it; UploadStore.add checks the exact limit
        added = await run_in_threadpool(service.uploads.add, file.filename, await file.read())
        return {**added, "documents": service.public_docs(added["documents"])}

    @app.delete("/v1/documents/{doc_id:path}")  # ids may hold '/' (a jsonl row's own id)
    def delete_document(request: Request, doc_id: str,
                        collection: str | None = Query(None)) -> dict[str, Any]:
        """Removes a document, by id or source, from every part of the index."""
        return use(request, collection, write=True).uploads.remove(doc_id)

    openai_api.register(app, hub)
    translating.register(app, hub, memory)
    if mcp is not None:  # behind the guard (the API key) like every route
        app.router.routes.extend(mcp.streamable_http_app(
            streamable_http_path="/mcp", host=cfg.host).routes)
    return app


def _mcp(hub: Collections, cfg: ServerConfig) -> MCPServer[Any] | None:
    """The MCP server /mcp serves, or None without the `mcp` package (an older install of
    the server extra)."""
    try:
        from ragline.server.mcp_server import build_mcp
    except ModelUnavailableError as e:
        log.warning("MCP is off: %s", e)
        return None
    return build_mcp(hub, cfg.read_only, [Path(p) for p in cfg.allow_paths])


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
