"""What the routes of one collection share: the index, a searcher whose query encoder batches
concurrent callers, the answerer over it, the upload store, and the generation queue (one for
every collection of a server: ragline.server.collections).

    service = Service(rag, ServerConfig(), GenerationQueue())
    rewrite = await service.followup("How tall is it?", history)   # a follow-up, standalone
    prepared = service.prepare("Who built it?", k=5)      # 400s happen here, before queueing
    job = service.submit(prepared)                         # text…, then the Answer
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ragline.answer import Prepared
from ragline.config import ServerConfig
from ragline.encode.batching import BatchingEncoder
from ragline.errors import ClientGoneError, ConfigError, RaglineError, ReadOnlyError
from ragline.generate.followup import Rewrite
from ragline.rag import RAG
from ragline.registry import BACKENDS
from ragline.retrieve.searcher import check_query
from ragline.server.jobs import GenerationQueue, Job
from ragline.server.limits import GONE
from ragline.server.uploads import UploadStore
from ragline.types import Answer, DocumentPosterior, Hit, Turn, document_posteriors, hit_to_dict


class Service:
    def __init__(self, rag: RAG, cfg: ServerConfig, queue: GenerationQueue,
                 name: str = "default") -> None:
        backend = BACKENDS.canonical(rag.config.generation.backend)
        if cfg.workers > 1 and backend in ("llama-cpp", "llama-cpp-python"):
            raise ConfigError("server.workers > 1 needs generation.backend = 'openai': the local "
                              "model generates one answer at a time")
        self.rag = rag
        self.index = rag.index
        self.cfg = cfg
        self.queue = queue
        self.name = name  # the collection's
        self.uploads = UploadStore(rag.index, max_bytes=int(cfg.max_upload_mb * 2**20))
        # concurrent searches share query-encoder batches (see encode.batching)
        self.query_encoder = BatchingEncoder(rag.searcher.query_encoder)
        self.searcher = rag.searcher.using(self.query_encoder)
        self.answerer = rag.answerer.using(self.searcher)
        self._uploads = self.uploads.folder.resolve()
        # (the index generation it was found at, the folder the indexed files share)
        self._root_cache: tuple[int, Path | None] | None = None

    # ------------------------------------------------------------ ask

    def prepare(self, question: str, k: int | None, mode: str | None, model: str | None,
                max_tokens: int | None = None, temperature: float | None = None,
                task: str = "answer", answer: str | None = None,
                history: Sequence[Turn] = (), rewrite: Rewrite | None = None) -> Prepared:
        """Check the request and retrieve its passages, before anything is queued (a
        follow-up's `rewrite` is made first, by `followup`)."""
        return self.answerer.prepare(question, k=k, mode=mode, model=model,
                                     max_tokens=max_tokens, temperature=temperature,
                                     task=task, answer=answer, history=history, rewrite=rewrite)

    async def followup(self, question: str, history: Sequence[Turn]) -> Rewrite | None:
        """A follow-up made standalone (None without a history). The model call, when one is
        needed, waits its turn in the generation queue: the local model runs one thing at a
        time."""
        if not history:
            return None
        check_query(question, "question")
        if not self.answerer.needs_rewrite(question, history):
            return Rewrite(question, question, False)
        job = self.queue.submit(lambda: [self.answerer.rewrite(question, history)])
        rewrite = None
        async for item in job.results():
            rewrite = item
        if not isinstance(rewrite, Rewrite):
            raise RaglineError("the rewrite of the follow-up ended without a question")
        return rewrite

    async def prepare_turn(self, question: str, k: int | None, mode: str | None,
                           model: str | None, max_tokens: int | None = None,
                           temperature: float | None = None,
                           history: Sequence[Turn] = ()) -> Prepared:
        """A question of a conversation, prepared: checked first (a bad argument costs no
        model call), then, a follow-up, made standalone in the queue, then retrieved for."""
        self.answerer.check(question, k, mode, model, None, max_tokens, temperature,
                            followup=bool(history))
        rewrite = await self.followup(question, history)
        return await run_in_threadpool(self.prepare, question, k, mode, model, max_tokens,
                                       temperature, history=history, rewrite=rewrite)

    async def ask(self, question: str, k: int | None = None, mode: str | None = None,
                  history: Sequence[Turn] = ()) -> Answer:
        """One whole answer, through the queue (what a tool call of an agent gets)."""
        prepared = await self.prepare_turn(question, k, mode, None, history=history)
        return await self.answer(self.submit(prepared))

    def submit(self, prepared: Prepared) -> Job:
        return self.queue.submit(lambda: self.answerer.answer(prepared))

    async def answer(self, job: Job, request: Request | None = None) -> Answer:
        """The job's Answer. With `request`: a client that goes away meanwhile (server.limits
        tells) cancels the job, and ClientGoneError says so to the route."""
        async def collect() -> Answer:
            answer = None
            async for item in job.results():
                if isinstance(item, Answer):
                    answer = item
            if answer is None:
                raise RaglineError("the generation ended without an answer")
            return answer

        gone = request.scope.get(GONE) if request is not None else None
        if gone is None:
            return await collect()
        task = asyncio.ensure_future(collect())
        left = asyncio.ensure_future(gone.wait())
        await asyncio.wait({task, left}, return_when=asyncio.FIRST_COMPLETED)
        left.cancel()
        if not task.done():
            job.cancel()
            task.cancel()
            raise ClientGoneError("the client closed the connection")
        return await task

    # ------------------------------------------------------------ JSON

    def sources_shown(self) -> Callable[[str], str]:
        """How sources are shown to clients: never as the server's absolute paths. An upload
        is `uploads/<its file>`; an indexed file is relative to the folder all the index's
        files share (what was indexed: `ragline index ~/docs` shows `a.txt`). The folder is
        found again only when the index has changed since."""
        gen = self.index.committed_generation()
        if self._root_cache is None or self._root_cache[0] != gen:
            paths = [p for s in self.index.source_paths() for p in [Path(s)]
                     if p.is_absolute() and p.parent != self._uploads]
            root = None
            if paths:
                common = Path(os.path.commonpath(paths))
                root = common.parent if len(paths) == 1 or common in paths else common
            self._root_cache = (gen, root)
        root = self._root_cache[1]

        def shown(source: str) -> str:
            path = Path(source)
            if not path.is_absolute():
                return source
            if path.parent == self._uploads:
                return f"uploads/{path.name}"
            try:
                return path.relative_to(root).as_posix() if root else path.name
            except ValueError:  # added since the folder was found
                return path.name

        return shown

    def public_docs(self, docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        shown = self.sources_shown()
        return [{**d, "source": shown(d["source"])} for d in docs]

    def hits_json(self, hits: Sequence[Hit],
                  documents: Sequence[DocumentPosterior] | None = None) -> dict[str, Any]:
        """Passages (with their file's name: uploads are stored under content hashes) and the
        document posteriors (p(z|x) summed over each document's passages)."""
        names = self.index.names([h.passage.doc_id for h in hits])

        def name(doc_id: str, source: str) -> str:  # a document deleted since keeps its file name
            return names.get(doc_id) or Path(source).name

        docs = document_posteriors(hits) if documents is None else documents
        shown = self.sources_shown()
        return {"passages": [{**hit_to_dict(h), "name": name(h.passage.doc_id, h.passage.source),
                              "source": shown(h.passage.source)} for h in hits],
                "documents": [{"doc_id": d.doc_id, "name": name(d.doc_id, d.source),
                               "source": shown(d.source), "prob": d.prob} for d in docs]}

    def answer_json(self, answer: Answer) -> dict[str, Any]:
        out = answer.to_dict()
        out.update(self.hits_json(answer.hits, answer.documents))
        names = {p["passage_id"]: p["name"] for p in out["passages"]}
        shown = self.sources_shown()
        for c in out["citations"]:
            c["name"] = names.get(c["passage_id"], "")
            c["source"] = shown(c["source"])
        return out

    # ------------------------------------------------------------ writes

    def check_writable(self) -> None:
        if self.cfg.read_only:
            raise ReadOnlyError("this server is read-only (server.read_only): it adds and "
                                "removes no documents")
