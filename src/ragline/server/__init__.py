"""`ragline serve`: the HTTP API, the OpenAI-compatible endpoint and the web page.

    from ragline.server import create_app, serve
    serve(RAG.open("my-index"))                      # http://127.0.0.1:8000
    serve({"handbook": rag1, "wiki": rag2}, keys=KeyRing.load(Path("keys.toml")))

Needs the `server` extra (FastAPI, uvicorn, python-multipart, mcp).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ragline.config import ServerConfig
from ragline.errors import missing_extra

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ragline.rag import RAG
    from ragline.server.collections import KeyRing
    from ragline.tm.memory import TranslationMemory

log = logging.getLogger(__name__)

__all__ = ["create_app", "serve"]


def create_app(rag: RAG | Mapping[str, RAG], server: ServerConfig | None = None,
               api_key: str | None = None, memory: TranslationMemory | None = None,
               keys: KeyRing | None = None) -> FastAPI:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
    except ImportError as e:
        raise missing_extra(e.name or "fastapi", "server") from None
    from ragline.server.app import create_app as _create

    return _create(rag, server, api_key, memory, keys)


def serve(rag: RAG | Mapping[str, RAG], server: ServerConfig | None = None,
          memory: TranslationMemory | None = None, keys: KeyRing | None = None) -> None:
    """Run the server until interrupted. The server's own key comes from the environment
    variable `server.api_key_env` names; a server on a non-loopback address without any key
    is warned about."""
    first = rag if not isinstance(rag, Mapping) else next(iter(rag.values()))
    cfg = server or first.config.server
    api_key = os.environ.get(cfg.api_key_env) or None
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and api_key is None and keys is None:
        log.warning("serving on %s without an API key: anyone who can reach this port can read "
                    "and change the index; set %s", cfg.host, cfg.api_key_env)
    app = create_app(rag, cfg, api_key, memory, keys)
    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "server") from None
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
