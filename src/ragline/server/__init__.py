"""`ragline serve`: the HTTP API, the OpenAI-compatible endpoint and the web page.

    from ragline.server import create_app, serve
    serve(RAG.open("my-index"))                      # http://127.0.0.1:8000

Needs the `server` extra (FastAPI, uvicorn, python-multipart).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ragline.config import ServerConfig
from ragline.errors import missing_extra

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ragline.rag import RAG
    from ragline.tm.memory import TranslationMemory

log = logging.getLogger(__name__)

__all__ = ["create_app", "serve"]


def create_app(rag: RAG, server: ServerConfig | None = None, api_key: str | None = None,
               memory: TranslationMemory | None = None) -> FastAPI:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
    except ImportError as e:
        raise missing_extra(e.name or "fastapi", "server") from None
    from ragline.server.app import create_app as _create

    return _create(rag, server, api_key, memory)


def serve(rag: RAG, server: ServerConfig | None = None,
          memory: TranslationMemory | None = None) -> None:
    """Run the server until interrupted. The API key comes from the environment variable
    `server.api_key_env` names; a server on a non-loopback address without one is warned about."""
    cfg = server or rag.config.server
    api_key = os.environ.get(cfg.api_key_env) or None
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach this port can read "
                    "and change the index; set %s", cfg.host, cfg.api_key_env)
    app = create_app(rag, cfg, api_key, memory)
    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "server") from None
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
