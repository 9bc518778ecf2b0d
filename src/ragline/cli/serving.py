"""`ragline serve`: the HTTP API, the OpenAI-compatible endpoint, MCP and the web page;
`ragline mcp`: the index over MCP on stdio, for an agent to launch."""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.options import add_generator, add_index_arg, add_model, add_ray, positive_int
from ragline.config import Config, override


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="HTTP API, OpenAI-compatible endpoint and web page "
                                     "(needs ragline[server])")
    add_index_arg(s, "the index (an empty one is created if DIR is new or empty)")
    s.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=positive_int, help="default 8000")
    s.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API "
                   "key; when it is set, every request needs it (default RAGLINE_API_KEY)")
    s.add_argument("--queue-size", type=int, help="generations that may wait (default 32)")
    s.add_argument("--timeout", type=float, help="longest generation in seconds (default 120)")
    s.add_argument("--max-upload-mb", type=float, help="largest upload (default 32)")
    add_model(s, "the default model of /v1/ask")
    s.add_argument("--encoder", help="encoder of a new index (default minilm)")
    s.add_argument("--tm", type=Path, metavar="TM_DIR",
                   help="a translation memory for /v1/translate (default: DIR itself, when it "
                        "is one)")
    _add_writes(s)
    add_generator(s)
    add_ray(s)
    s.set_defaults(run=cmd_serve)

    s = sub.add_parser("mcp", help="serve the index to an agent over the Model Context Protocol "
                                   "on stdio (needs ragline[server])")
    add_index_arg(s, "the index (an empty one is created if DIR is new or empty)")
    add_model(s, "the model of the ask tool")
    s.add_argument("--encoder", help="encoder of a new index (default minilm)")
    _add_writes(s)
    add_generator(s)
    add_ray(s)
    s.set_defaults(run=cmd_mcp)


def _add_writes(s: argparse.ArgumentParser) -> None:
    s.add_argument("--read-only", action="store_true", default=None,
                   help="add and remove no documents (no uploads, no MCP add_documents or "
                        "remove_document)")
    s.add_argument("--allow-path", action="append", metavar="FOLDER",
                   help="a folder MCP's add_documents may read files from (repeatable; "
                        "default: none, it takes text only)")


def _server_settings(args: argparse.Namespace, cfg: Config) -> Config:
    allow = tuple(args.allow_path) if args.allow_path else None
    return replace(cfg, server=override(cfg.server, read_only=args.read_only, allow_paths=allow),
                   model=override(cfg.model, kind=args.model))


def _open(args: argparse.Namespace, cfg: Config) -> Any:
    """The RAG over DIR; an empty index is made there when there is none."""
    from ragline.index.index import Index
    from ragline.rag import RAG

    new = not Index.exists(args.index)
    rag = (RAG.build(args.index, encoder=args.encoder, config=cfg) if new
           else RAG.open(args.index, config=cfg, encoder=args.encoder))
    return rag, new


def cmd_mcp(args: argparse.Namespace, cfg: Config) -> int:
    """Stdout carries the protocol: nothing else may be printed there."""
    import anyio

    from ragline.server.mcp_server import build_mcp
    from ragline.server.service import Service

    cfg = _server_settings(args, cfg)
    rag, _ = _open(args, cfg)
    with rag:
        service = Service(rag, cfg.server, api_key=None)
        mcp = build_mcp(service, cfg.server.read_only, [Path(p) for p in cfg.server.allow_paths])

        async def run() -> None:
            service.queue.start()
            service.query_encoder.start()
            try:
                await mcp.run_stdio_async()
            finally:
                service.queue.stop()
                service.query_encoder.stop()

        anyio.run(run)
    return 0


def cmd_serve(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.server import serve

    cfg = _server_settings(args, cfg)
    cfg = replace(cfg, server=override(cfg.server, host=args.host, port=args.port,
                                       api_key_env=args.api_key_env,
                                       queue_size=args.queue_size, timeout_s=args.timeout,
                                       max_upload_mb=args.max_upload_mb))
    rag, new = _open(args, cfg)
    with ExitStack() as stack:
        stack.enter_context(rag)
        memory = None
        if args.tm is not None:
            from ragline.tm.memory import TranslationMemory

            memory = stack.enter_context(TranslationMemory.open(args.tm))
        s = cfg.server
        keyed = bool(os.environ.get(s.api_key_env))
        c = rag.index.counts()
        render.out(f"{'new empty index' if new else 'index'} {args.index}: {c['documents']} "
                   f"documents, {c['passages']} passages")
        render.out(f"serving http://{s.host}:{s.port}/  (API docs /docs, OpenAI-compatible /v1, "
                   "MCP /mcp)"
                   + (f"; API key from ${s.api_key_env}" if keyed else "") + "; Ctrl-C stops")
        if memory is not None:
            render.out(f"translation memory {args.tm}: {memory.source} → {memory.target}, "
                       f"{memory.index.counts()['documents']} pairs")
        serve(rag, s, memory)
    return 0
