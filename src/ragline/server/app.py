"""The HTTP API, the web page and the OpenAI-compatible endpoint, on one embedded index.

    app = create_app(RAG.open("my-index"))          # then: uvicorn.run(app, port=8000)

Routes (all JSON; errors are `{"error": {"message", "type", "code"}}`, see server.errors):

    GET    /health                 index counts, generation queue
    GET    /v1/search?q=&k=&mode=  passages with scores and p(z|x)
    POST   /v1/ask                 answer, citations (passage text, source), document posteriors;
                                   {"stream": true}: server-sent events passages, token…, answer
    GET    /v1/documents           what is indexed
    POST   /v1/documents           upload a file (multipart field "file"), indexed at once
    DELETE /v1/documents/{id}      remove a document
    POST   /v1/chat/completions    OpenAI-compatible (see server.openai_api)
    GET    /v1/models
    GET    /                       the web page
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ragline import __version__
from ragline.config import ServerConfig
from ragline.encode.batching import BatchingEncoder
from ragline.errors import ConfigError, RaglineError
from ragline.rag import RAG
from ragline.retrieve.retriever import check_mode
from ragline.server import errors
from ragline.server.jobs import GenerationQueue, Job
from ragline.server.uploads import UploadStore
from ragline.types import Answer, Hit, hit_to_dict

log = logging.getLogger(__name__)

LOCAL_BACKENDS = ("llama-cpp", "llama.cpp", "llama")


class AskRequest(BaseModel):
    question: str = Field(description="the question, in any language")
    k: int | None = Field(None, description="passages to retrieve (default: config)")
    mode: str | None = Field(None, description="dense | bm25 | hybrid | weighted")
    model: str | None = Field(None, description="concat | rag-token | rag-sequence")
    stream: bool = Field(False, description="answer as server-sent events")
    max_tokens: int | None = Field(None, description="concat model: longest answer in tokens")
    temperature: float | None = Field(None, description="concat model: 0 is greedy")


@dataclass(frozen=True)
class Retrieved:
    """A checked question and its passages, ready to be queued for generation."""

    question: str
    hits: list[Hit]
    model: str
    seconds: float


class Service:
    """What the routes share: the RAG, the generation queue, the upload store, the key."""

    def __init__(self, rag: RAG, cfg: ServerConfig, api_key: str | None) -> None:
        backend = rag.config.generation.backend
        if cfg.workers > 1 and backend in LOCAL_BACKENDS:
            raise ConfigError("server.workers > 1 needs generation.backend = 'openai': the local "
                              "model generates one answer at a time")
        self.rag = rag
        self.cfg = cfg
        self.api_key = api_key or None
        self.queue = GenerationQueue(workers=cfg.workers, max_waiting=cfg.queue_size,
                                     queue_timeout=cfg.queue_timeout_s, timeout=cfg.timeout_s)
        self.uploads = UploadStore(rag, max_bytes=int(cfg.max_upload_mb * 2**20))
        # concurrent searches share query-encoder batches (see encode.batching)
        self.query_encoder = BatchingEncoder(rag.retriever.query_encoder)
        rag.retriever.query_encoder = self.query_encoder
        self._torch_model = threading.Lock()  # the RAG models share one torch model

    # ------------------------------------------------------------ ask

    def retrieve(self, question: str, k: int | None, mode: str | None, model: str | None,
                 max_tokens: int | None = None, temperature: float | None = None) -> Retrieved:
        """Check the request and retrieve its passages, before anything is queued."""
        model = self.rag.check_ask(question, k, model, max_tokens=max_tokens,
                                   temperature=temperature)
        if mode is not None:
            check_mode(mode)
        t0 = time.perf_counter()
        hits = self.rag.search(question, k=k, mode=mode)
        return Retrieved(question, hits, model, time.perf_counter() - t0)

    def submit(self, r: Retrieved, max_tokens: int | None = None,
               temperature: float | None = None) -> Job:
        def answers() -> Iterator[str | Answer]:
            if r.model == "concat":
                yield from self.rag.ask_stream(r.question, hits=r.hits, model=r.model,
                                               max_tokens=max_tokens, temperature=temperature)
                return
            with self._torch_model:
                yield from self.rag.ask_stream(r.question, hits=r.hits, model=r.model)

        def work() -> Iterator[str | Answer]:
            for item in answers():
                if isinstance(item, Answer):  # count the retrieval done before the queue
                    t = item.timings
                    item = replace(item, timings={**t, "retrieve_s": r.seconds,
                                                  "total_s": t.get("total_s", 0.0) + r.seconds})
                yield item

        return self.queue.submit(work)

    async def answer(self, job: Job) -> Answer:
        answer = None
        async for item in job.results():
            if isinstance(item, Answer):
                answer = item
        if answer is None:
            raise RaglineError("the generation ended without an answer")
        return answer

    # ------------------------------------------------------------ JSON

    def hits_json(self, hits: Sequence[Hit]) -> dict[str, Any]:
        """Passages (with their file's name: uploads are stored under content hashes) and the
        document posteriors: p(z|x) summed over each document's passages."""
        names = self.rag.folder.store.names([h.passage.doc_id for h in hits])

        def name(h: Hit) -> str:  # a document deleted since its retrieval keeps its file name
            return names.get(h.passage.doc_id) or Path(h.passage.source).name

        passages = [{**hit_to_dict(h), "name": name(h)} for h in hits]
        docs: dict[str, dict[str, Any]] = {}
        for h in hits:
            d = docs.setdefault(h.passage.doc_id, {"doc_id": h.passage.doc_id, "name": name(h),
                                                   "source": h.passage.source, "prob": 0.0})
            d["prob"] += h.prob or 0.0
        return {"passages": passages,
                "documents": sorted(docs.values(), key=lambda d: -d["prob"])}

    def answer_json(self, answer: Answer) -> dict[str, Any]:
        out = answer.to_dict()
        out.update(self.hits_json(answer.hits))
        names = {p["passage_id"]: p["name"] for p in out["passages"]}
        for c in out["citations"]:
            c["name"] = names.get(c["passage_id"], "")
        return out

    # ------------------------------------------------------------ auth

    def authorized(self, request: Request) -> bool:
        if self.api_key is None or request.url.path == "/":  # the page holds no data
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(), self.api_key.encode())


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event: `data` as JSON, under an event name if given."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


@cache
def page() -> str:
    return resources.files("ragline.server").joinpath("static/index.html").read_text("utf-8")


def create_app(rag: RAG, server: ServerConfig | None = None, api_key: str | None = None) -> FastAPI:
    """The ASGI app over an open RAG. `api_key`: when set, every route but the page needs
    `Authorization: Bearer <key>`."""
    service = Service(rag, server or rag.config.server, api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.queue.start()
        service.query_encoder.start()
        if rag.config.model.kind == "concat":
            try:  # load the model now, not on the first question; search works without it
                await run_in_threadpool(rag.generator.load)
            except RaglineError as e:
                log.warning("the generator is not available (%s); /v1/ask will answer 503", e)
        yield
        service.queue.stop()
        service.query_encoder.stop()

    # the body limit also stops a chunked upload that sends no Content-Length
    app = FastAPI(title="ragline", version=__version__, lifespan=lifespan,
                  summary="Retrieval-augmented answers with citations over your documents.",
                  max_body_size=service.uploads.max_bytes + (1 << 20))
    app.state.service = service
    errors.install(app)

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not service.authorized(request):
            return errors.error_response(errors.UnauthorizedError(
                "this server needs an API key: send 'Authorization: Bearer <key>'"))
        length = request.headers.get("content-length", "")
        if request.method == "POST" and length.isdigit():
            # a multipart body is the file plus a little framing: refuse before reading it
            try:
                service.uploads.check_size(int(length) - 64 * 1024)
            except errors.PayloadTooLargeError as e:
                return errors.error_response(e)
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
        return {"status": "ok", "version": __version__, "index": rag.folder.store.counts(),
                "generation": service.queue.stats(),
                "query_encoder": {"queries": enc.queries, "batches": enc.batches}}

    @app.get("/v1/search")
    def search(q: str, k: int | None = None, mode: str | None = None,
               rerank: bool = True) -> dict[str, Any]:
        t0 = time.perf_counter()
        hits = rag.search(q, k=k, mode=mode, rerank=rerank)
        return {"query": q, "mode": mode or rag.config.retrieval.mode, **service.hits_json(hits),
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.post("/v1/ask", response_model=None)
    async def ask(req: AskRequest) -> dict[str, Any] | StreamingResponse:
        r = await run_in_threadpool(service.retrieve, req.question, req.k, req.mode, req.model,
                                    req.max_tokens, req.temperature)
        job = service.submit(r, req.max_tokens, req.temperature)
        if not req.stream:
            return service.answer_json(await service.answer(job))
        return StreamingResponse(_ask_events(service, job, r.hits), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/documents")
    def list_documents() -> dict[str, Any]:
        docs = rag.documents()
        return {"documents": [d.to_dict() for d in docs], "count": len(docs)}

    @app.post("/v1/documents", status_code=201)
    async def upload(file: Annotated[UploadFile, File(description="a .txt .md .html .pdf "
                                                                  ".docx .jsonl .csv file")],
                     ) -> dict[str, Any]:
        # the app's body limit has bounded it; UploadStore.add checks the exact limit
        return await run_in_threadpool(service.uploads.add, file.filename, await file.read())

    @app.delete("/v1/documents/{doc_id:path}")  # ids may hold '/' (a jsonl row's own id)
    def delete_document(doc_id: str) -> dict[str, Any]:
        return service.uploads.remove(doc_id)

    from ragline.server import openai_api

    openai_api.register(app, service)
    return app


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
