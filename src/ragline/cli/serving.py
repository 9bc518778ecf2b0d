"""`ragline serve`: the HTTP API, the OpenAI-compatible endpoint, MCP and the web page, over one
index or several; `ragline mcp`: the same over MCP on stdio, for an agent to launch; `ragline
keys`: keys that each open some of a server's collections."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.options import add_generator, add_model, add_ray, positive_int
from ragline.config import Config, override
from ragline.errors import ConfigError


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="HTTP API, OpenAI-compatible endpoint, MCP and web page "
                                     "(needs ragline[server])")
    _add_indexes(s)
    s.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=positive_int, help="default 8000")
    s.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the "
                   "server's own key, which opens everything; when it is set, every request "
                   "needs a key (default RAGLINE_API_KEY)")
    s.add_argument("--keys", type=Path, metavar="FILE",
                   help="keys that each open some collections (ragline keys add writes it); "
                        "every request then needs a key")
    s.add_argument("--queue-size", type=int, help="generations that may wait (default 32)")
    s.add_argument("--timeout", type=float, help="longest generation in seconds (default 120)")
    s.add_argument("--max-upload-mb", type=float, help="largest upload (default 32)")
    add_model(s, "the default model of /v1/ask")
    s.add_argument("--encoder", help="encoder of a new index (default minilm)")
    s.add_argument("--tm", type=Path, metavar="TM_DIR",
                   help="a translation memory for /v1/translate (default: the first DIR, when "
                        "it is one)")
    _add_writes(s)
    add_generator(s)
    add_ray(s)
    s.set_defaults(run=cmd_serve)

    s = sub.add_parser("mcp", help="serve indexes to an agent over the Model Context Protocol "
                                   "on stdio (needs ragline[server])")
    _add_indexes(s)
    add_model(s, "the model of the ask tool")
    s.add_argument("--encoder", help="encoder of a new index (default minilm)")
    _add_writes(s)
    add_generator(s)
    add_ray(s)
    s.set_defaults(run=cmd_mcp)

    s = sub.add_parser("keys", help="make keys that each open some of a server's collections")
    keys = s.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = keys.add_parser("add", help="make a key, add its hash to FILE, print the key once")
    k.add_argument("file", type=Path, metavar="FILE")
    k.add_argument("--name", required=True, help="who the key is for, e.g. team-a")
    k.add_argument("--read", default="", metavar="A,B",
                   help="collections it may read (comma-separated; * for all)")
    k.add_argument("--write", default="", metavar="A,B",
                   help="collections it may change (and read)")
    k.set_defaults(run=cmd_keys_add)
    k = keys.add_parser("list", help="the keys of FILE: names and collections, never keys")
    k.add_argument("file", type=Path, metavar="FILE")
    k.set_defaults(run=cmd_keys_list)


def _add_indexes(s: argparse.ArgumentParser) -> None:
    s.add_argument("index", nargs="+", type=Path, metavar="DIR",
                   help="the indexes, each a collection named by its folder; the first is the "
                        "default. One DIR that holds index folders serves them all; a new or "
                        "empty DIR gets an empty index")


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


def index_folders(dirs: list[Path]) -> list[Path]:
    """The indexes to serve: the folders named, or, for one folder that is no index but
    holds index folders, those."""
    from ragline.index.index import Index

    if len(dirs) == 1 and not Index.exists(dirs[0]) and dirs[0].is_dir():
        inside = sorted(p for p in dirs[0].iterdir()
                        if p.is_dir() and not p.name.startswith(".") and Index.exists(p))
        if inside:
            return inside
    return dirs


def _open_all(args: argparse.Namespace, cfg: Config,
              stack: ExitStack) -> tuple[dict[str, Any], set[str]]:
    """The collections by name, each a RAG (an empty index is made where there is none),
    closed with `stack`; and the names of those made new."""
    from ragline.index.index import Index
    from ragline.rag import RAG
    from ragline.server.collections import collection_names

    folders = index_folders(args.index)
    rags: dict[str, Any] = {}
    new: set[str] = set()
    for name, folder in zip(collection_names(folders), folders, strict=True):
        if not Index.exists(folder):
            new.add(name)
        rag = (RAG.build(folder, encoder=args.encoder, config=cfg) if name in new
               else RAG.open(folder, config=cfg, encoder=args.encoder))
        rags[name] = stack.enter_context(rag)
    return rags, new


def cmd_mcp(args: argparse.Namespace, cfg: Config) -> int:
    """Stdout carries the protocol: nothing else may be printed there."""
    import anyio

    from ragline.server.collections import Collections
    from ragline.server.mcp_server import build_mcp

    cfg = _server_settings(args, cfg)
    with ExitStack() as stack:
        hub = Collections(_open_all(args, cfg, stack)[0], cfg.server)
        mcp = build_mcp(hub, cfg.server.read_only, [Path(p) for p in cfg.server.allow_paths])

        async def run() -> None:
            hub.start()
            try:
                await mcp.run_stdio_async()
            finally:
                hub.stop()

        anyio.run(run)
    return 0


def cmd_serve(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.server import serve
    from ragline.server.collections import KeyRing

    cfg = _server_settings(args, cfg)
    cfg = replace(cfg, server=override(cfg.server, host=args.host, port=args.port,
                                       api_key_env=args.api_key_env,
                                       queue_size=args.queue_size, timeout_s=args.timeout,
                                       max_upload_mb=args.max_upload_mb))
    keys = KeyRing.load(args.keys) if args.keys else None
    with ExitStack() as stack:
        rags, new = _open_all(args, cfg, stack)
        memory = None
        if args.tm is not None:
            from ragline.tm.memory import TranslationMemory

            memory = stack.enter_context(TranslationMemory.open(args.tm))
        s = cfg.server
        for name, rag in rags.items():
            c = rag.index.counts()
            render.out(f"{'new empty index' if name in new else 'index'} {rag.index.path} as "
                       f"{name!r}{' (default)' if name == next(iter(rags)) else ''}: "
                       f"{c['documents']} documents, {c['passages']} passages")
        keyed = [f"the key in ${s.api_key_env}"] if os.environ.get(s.api_key_env) else []
        if keys is not None:
            keyed.append(f"{len(keys.entries)} keys from {args.keys}")
        render.out(f"serving http://{s.host}:{s.port}/  (API docs /docs, OpenAI-compatible /v1, "
                   "MCP /mcp)" + (f"; keys: {', '.join(keyed)}" if keyed else "")
                   + (" ; read-only" if s.read_only else "") + "; Ctrl-C stops")
        if memory is not None:
            render.out(f"translation memory {args.tm}: {memory.source} → {memory.target}, "
                       f"{memory.index.counts()['documents']} pairs")
        serve(rags, s, memory, keys)
    return 0


def _collections(value: str, what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if "*" in names and names != ["*"]:
        raise ConfigError(f"--{what}: * stands alone (every collection)")
    return names


def cmd_keys_add(args: argparse.Namespace, cfg: Config) -> int:
    import json
    import re

    from ragline.server.collections import KeyRing, key_hash, new_key

    read, write = _collections(args.read, "read"), _collections(args.write, "write")
    if not read and not write:
        raise ConfigError("a key opens something: give --read and/or --write collections")
    if not re.fullmatch(r"[\w .@-]{1,64}", args.name):
        raise ConfigError("--name: letters, digits, spaces and . _ @ - only, at most 64")
    if args.file.exists():
        KeyRing.load(args.file)  # a file it cannot read again is not written to
    key = new_key()

    def names(v: list[str]) -> str:
        return '"*"' if v == ["*"] else json.dumps(v)

    entry = (f'\n[[keys]]\nname = {json.dumps(args.name)}\nsha256 = "{key_hash(key)}"\n'
             f"read = {names(read)}\nwrite = {names(write)}\n")
    with args.file.open("a", encoding="utf-8") as f:
        f.write(entry)
    os.chmod(args.file, 0o600)
    render.out(key)
    print(f"the key for {args.name} (shown once; {args.file} keeps only its hash)",
          file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.server.collections import KeyRing

    ring = KeyRing.load(args.file)

    def shown(v: frozenset[str] | None) -> str:
        return "*" if v is None else ",".join(sorted(v)) or "-"

    render.table(["name", "read", "write", "sha256"],
                 [[a.name, shown(a.read), shown(a.write), digest[:12] + "…"]
                  for digest, a in ring.entries.items()])
    return 0
