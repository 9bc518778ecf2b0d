"""The index over the Model Context Protocol, for the agents people use (desktop and coding
assistants): tools to search, ask, list and read, and, unless read-only, to add and remove
documents; every document is also a resource (`ragline://documents/<id>`).

`ragline mcp DIR` serves it on stdio (what an agent launches); `ragline serve` mounts it at
/mcp over streamable HTTP, behind the server's keys: a tool reaches only the collections the
request's key opens (every tool takes an optional `collection`). Both run on the server's
`Collections`, so an answer waits its turn in the same generation queue as the HTTP routes'.

    server = build_mcp(hub, read_only=False, allowed=[Path("~/notes").expanduser()])
    await server.run_stdio_async()

A tool's failure is an MCP tool error whose text is the one-line message the CLI prints; a
bad argument fails its schema or its check before anything is read or written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar
from urllib.parse import quote, unquote

import anyio
from pydantic import BaseModel, Field, ValidationError

from ragline import __version__
from ragline.errors import ConfigError, RaglineError, missing_extra
from ragline.generate.followup import MAX_TURNS, turns_from
from ragline.retrieve.searcher import check_k, check_query
from ragline.types import Answer, Hit, Passage

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ListResourcesResult, Resource, ToolAnnotations
except ImportError as e:  # the `server` extra
    raise missing_extra("mcp", "server") from e

from ragline.server.collections import FULL, Access, Collections
from ragline.server.service import Service

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DOCUMENT_URI = "ragline://documents/{collection}/{doc_id}"
MAX_SEARCH_K = 100
MAX_NEIGHBOURS = 10
INSTRUCTIONS = (
    "Indexes (collections) of the user's documents. Use `search` to find passages (each with its "
    "source file and place in it), `ask` for an answer with citations (it refuses when the "
    "documents do not say), `get_passage` to read a passage with the passages around it, and "
    "`list_documents` to see what is indexed; `list_collections` names the collections a "
    "tool's `collection` argument takes.")


# ---------------------------------------------------------------- what the tools take and return

CollectionArg = Annotated[str | None, Field(max_length=64, description=(
    "the collection (list_collections names them; default: the server's first)"))]


class PassageOut(BaseModel):
    passage_id: str
    doc_id: str
    name: str = Field(description="the file's name")
    source: str = Field(description="the file, relative to the folder that was indexed")
    title: str
    location: str = Field(description="where in the file: a page, slide, sheet rows, lines…")
    page: int | None
    text: str
    score: float | None = Field(None, description="search: the fused retrieval score")
    prob: float | None = Field(None, description="search: p(z|x), the passage's posterior")


class CitationOut(BaseModel):
    marker: int = Field(description="the [n] in the answer")
    passage_id: str
    name: str
    source: str
    location: str
    page: int | None
    quote: str = Field(description="the sentence of the passage that supports the answer")


class AskOut(BaseModel):
    answer: str
    answered: bool
    refused: bool
    reason: str | None = Field(description="why it refused: not_relevant, low_confidence, …")
    standalone_question: str | None = Field(
        description="a follow-up (with history): the question that was searched for")
    citations: list[CitationOut]


class DocumentOut(BaseModel):
    id: str
    name: str
    source: str
    title: str
    passages: int
    uri: str = Field(description="the document as an MCP resource")


class PassageWindowOut(BaseModel):
    passage: PassageOut
    before: list[PassageOut] = Field(description="the passages before it in its document")
    after: list[PassageOut] = Field(description="the passages after it in its document")


class AddOut(BaseModel):
    added: list[DocumentOut] = Field(description="documents now indexed from what was given")
    unchanged: list[str] = Field(description="files indexed before and not changed since")
    skipped: list[str] = Field(description="what could not be read, each with the reason")
    passages: int


class RemoveOut(BaseModel):
    deleted: list[str]


class CollectionOut(BaseModel):
    name: str
    default: bool = Field(description="used when a tool is given no collection")
    writable: bool = Field(description="add_documents and remove_document may change it")
    documents: int
    passages: int
    sources: int


class HistoryTurn(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str


# ---------------------------------------------------------------- the server

def _tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A RaglineError becomes a tool error with its one-line message; anything else (a bug)
    is logged here and reported in one line, never as a crash of the server."""
    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except RaglineError as e:
            raise ToolError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - reported to the client, logged in full
            log.exception("MCP tool %s failed", fn.__name__)
            raise ToolError(f"internal error ({type(e).__name__}); the server's log has "
                            "the details") from None
    return run


class _RaglineMCP(MCPServer[Any]):
    """MCPServer whose resources are the documents of the collections the caller may read,
    as they are now, and whose schema errors are one line."""

    def __init__(self, hub: Collections, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub = hub

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Any = None) -> Any:
        """The SDK's call, its schema errors (pydantic's, several lines each) said in one."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            cause = e.__cause__
            if not isinstance(cause, ValidationError):
                raise
            raise ToolError(f"bad arguments for {name}: " + "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in cause.errors()[:5])) from None

    async def _handle_list_resources(self, ctx: Any, params: Any) -> ListResourcesResult:
        # the SDK's list_resources() knows no caller; this handler is given its request
        access = _access(ctx)
        found = []
        for name in self.hub.visible(access):
            service = self.hub.services[name]
            shown = service.sources_shown()
            docs = await anyio.to_thread.run_sync(service.index.documents)
            found += [Resource(uri=_uri(name, d.id), name=d.name, title=d.title or d.name,
                               description=f"{name}: {shown(d.source)} · {d.passages} passages",
                               mime_type="text/plain") for d in docs]
        return ListResourcesResult(resources=[*await self.list_resources(), *found])


def _access(ctx: Any) -> Access:
    """What the caller may reach: over HTTP, what the guard found its key opens (nothing
    when it found none); over stdio, everything (the user launched it)."""
    request_context = getattr(ctx, "request_context", ctx)
    request = getattr(request_context, "request", None)
    if request is None:
        return FULL
    access = getattr(getattr(request, "state", None), "access", None)
    if not isinstance(access, Access):
        raise ToolError("this request carries no key the server knows")
    return access


def _uri(collection: str, doc_id: str) -> str:
    return DOCUMENT_URI.format(collection=quote(collection, safe=""), doc_id=quote(doc_id, safe=""))


def build_mcp(hub: Collections, read_only: bool = False,
              allowed: Sequence[Path] = ()) -> MCPServer[Any]:
    """The MCP server over the collections of `hub`. `read_only`: no add_documents, no
    remove_document. `allowed`: the folders add_documents may read files from (none: text
    only)."""
    roots = [p.expanduser().resolve() for p in allowed]
    mcp = _RaglineMCP(hub, name="ragline", title="ragline", version=__version__,
                      instructions=INSTRUCTIONS)
    read = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    def use(ctx: Context[Any, Any], collection: str | None, write: bool = False) -> Service:
        service = hub.get(collection, _access(ctx), write)
        if write:
            service.check_writable()
        return service

    def passage_out(service: Service, p: Passage, hit: Hit | None = None) -> PassageOut:
        shown = service.sources_shown()
        return PassageOut(passage_id=p.id, doc_id=p.doc_id, name=Path(p.source).name,
                          source=shown(p.source), title=p.title, location=p.location,
                          page=p.page, text=p.text, score=hit.score if hit else None,
                          prob=hit.prob if hit else None)

    def documents(service: Service, doc_ids: Sequence[str] | None = None) -> list[DocumentOut]:
        shown = service.sources_shown()
        return [DocumentOut(id=d.id, name=d.name, source=shown(d.source), title=d.title,
                            passages=d.passages, uri=_uri(service.name, d.id))
                for d in service.index.documents()
                if doc_ids is None or d.id in doc_ids]

    @mcp.tool(annotations=read)
    @_tool_errors
    async def list_collections(ctx: Context[Any, Any]) -> list[CollectionOut]:
        """The collections (indexes) this server offers the caller, the default first."""
        access = _access(ctx)
        names = hub.visible(access)
        default = hub.default_for(access)
        return [CollectionOut(name=n, default=n == default,
                              writable=access.can_write(n) and not read_only,
                              **hub.services[n].index.counts())
                for n in sorted(names, key=lambda n: n != default)]

    @mcp.tool(annotations=read)
    @_tool_errors
    async def search(
            ctx: Context[Any, Any],
            query: Annotated[str, Field(description="what to look for, in any language")],
            k: Annotated[int, Field(ge=1, le=MAX_SEARCH_K, description="passages to return")] = 5,
            mode: Annotated[Literal["dense", "bm25", "hybrid", "weighted"] | None, Field(
                description="retrieval: dense vectors, BM25 words, or both fused (default: "
                            "the index's setting)")] = None,
            collection: CollectionArg = None) -> list[PassageOut]:
        """Find the passages of the indexed documents that best match a query, best first,
        each with its file, its place in the file and its score."""
        service = use(ctx, collection)
        check_query(query)
        check_k(k)
        hits = await anyio.to_thread.run_sync(
            functools.partial(service.searcher.search, query, k=k, mode=mode))
        return [passage_out(service, h.passage, h) for h in hits]

    @mcp.tool(annotations=read)
    @_tool_errors
    async def ask(
            ctx: Context[Any, Any],
            question: Annotated[str, Field(description="the question, in any language")],
            k: Annotated[int | None, Field(ge=1, le=50, description="passages to read "
                                                                    "(default 5)")] = None,
            history: Annotated[list[HistoryTurn] | None, Field(
                max_length=MAX_TURNS, description="earlier turns of the conversation, oldest "
                "first: a follow-up (\"How tall is it?\") is made standalone first")] = None,
            collection: CollectionArg = None) -> AskOut:
        """Answer a question from the indexed documents, citing the passages it comes from.
        When the documents do not say, it refuses (answered false, with the reason) instead
        of guessing."""
        service = use(ctx, collection)
        turns = turns_from([t.model_dump() for t in history or []])
        answer = await service.ask(question, k=k, history=turns)
        return _ask_out(service, answer)

    @mcp.tool(annotations=read)
    @_tool_errors
    async def list_documents(ctx: Context[Any, Any],
                             collection: CollectionArg = None) -> list[DocumentOut]:
        """The indexed documents: id, file name, title, number of passages."""
        return await anyio.to_thread.run_sync(documents, use(ctx, collection))

    @mcp.tool(annotations=read)
    @_tool_errors
    async def get_passage(
            ctx: Context[Any, Any],
            passage_id: Annotated[str, Field(description="an id from search or ask")],
            neighbours: Annotated[int, Field(ge=0, le=MAX_NEIGHBOURS, description=(
                "passages of its document to return on each side"))] = 1,
            collection: CollectionArg = None) -> PassageWindowOut:
        """A passage's text with the passages around it in its document."""
        service = use(ctx, collection)
        window = await anyio.to_thread.run_sync(service.index.passage_window, passage_id,
                                                neighbours)
        at = next(i for i, p in enumerate(window) if p.id == passage_id)
        return PassageWindowOut(passage=passage_out(service, window[at]),
                                before=[passage_out(service, p) for p in window[:at]],
                                after=[passage_out(service, p) for p in window[at + 1:]])

    @mcp.resource(DOCUMENT_URI, name="document", mime_type="text/plain",
                  description="an indexed document's text")
    async def document(collection: str, doc_id: str, ctx: Context[Any, Any]) -> str:
        try:
            service = hub.get(unquote(collection), _access(ctx))
        except RaglineError as e:
            raise ValueError(str(e)) from None
        doc = await anyio.to_thread.run_sync(service.index.document, unquote(doc_id))
        if doc is None:
            raise ValueError(f"no document '{unquote(doc_id)[:100]}' in {service.name}")
        return doc.text

    if read_only:
        return mcp

    write = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

    @mcp.tool(annotations=write)
    @_tool_errors
    async def add_documents(
            ctx: Context[Any, Any],
            paths: Annotated[list[str] | None, Field(
                max_length=1000, description="files or folders to index; the server reads "
                "only under the folders it was started with (--allow-path)")] = None,
            text: Annotated[str | None, Field(description="text to index as a document")] = None,
            name: Annotated[str | None, Field(
                max_length=200, description="the text's file name, e.g. notes.md (its "
                "extension picks how it is read)")] = None,
            collection: CollectionArg = None) -> AddOut:
        """Index files and folders the server may read, or a text, at once; re-adding an
        unchanged file changes nothing."""
        service = use(ctx, collection, write=True)
        if (paths is None) == (text is None):
            raise ConfigError("give either paths or text")
        if text is not None:
            added = await anyio.to_thread.run_sync(
                service.uploads.add, name or "note.txt", text.encode("utf-8"))
            return AddOut(added=await anyio.to_thread.run_sync(
                              documents, service, [d["id"] for d in added["documents"]]),
                          unchanged=[], skipped=[], passages=added["passages"])
        checked = [_allowed(p, roots) for p in paths or []]
        if not checked:
            raise ConfigError("paths is empty")
        report = await anyio.to_thread.run_sync(service.index.add, checked)
        shown = service.sources_shown()
        ids = [d.id for f in report.added for d in service.index.documents(f)]
        return AddOut(added=await anyio.to_thread.run_sync(documents, service, ids),
                      unchanged=[shown(f) for f in report.unchanged],
                      skipped=[f"{shown(f)}: {why}" for f, why in report.skipped],
                      passages=report.passages)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                          idempotent_hint=True, open_world_hint=False))
    @_tool_errors
    async def remove_document(
            ctx: Context[Any, Any],
            doc_id: Annotated[str, Field(description="an id from list_documents")],
            collection: CollectionArg = None) -> RemoveOut:
        """Remove a document from the index (an uploaded text's file goes with it)."""
        service = use(ctx, collection, write=True)
        removed = await anyio.to_thread.run_sync(service.uploads.remove, doc_id)
        return RemoveOut(deleted=removed["deleted"])

    return mcp


def _allowed(raw: str, roots: Sequence[Path]) -> Path:
    """A path the server may read: an existing file or folder under one of `roots` once
    links are followed; a ConfigError naming the path otherwise."""
    if not roots:
        raise ConfigError("this server reads no files: add text instead, or start it with "
                          "--allow-path FOLDER")
    if not raw or "\x00" in raw:
        raise ConfigError("a path is empty or holds a NUL character")
    try:
        path = Path(raw).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise ConfigError(f"{raw[:200]}: no such file or folder") from None
    if not any(path == r or path.is_relative_to(r) for r in roots):
        raise ConfigError(f"{raw[:200]}: outside the folders this server may read "
                          f"({', '.join(str(r) for r in roots)})")
    return path


def _ask_out(service: Service, answer: Answer) -> AskOut:
    full = service.answer_json(answer)
    return AskOut(answer=answer.text, answered=answer.answered, refused=answer.refused,
                  reason=answer.reason, standalone_question=answer.standalone_question,
                  citations=[CitationOut(marker=c["marker"], passage_id=c["passage_id"],
                                         name=c["name"], source=c["source"],
                                         location=c["location"], page=c["page"],
                                         quote=c["quote"]) for c in full["citations"]])
