"""Option groups the commands share, and the settings they override.

    add_retrieval(parser)            # -k, --mode, --rerank, --rerank-depth
    cfg = settings(args)             # ragline.toml (or --config), then the flags given
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from ragline.config import RAG_RUNTIMES, Config, load_config, override
from ragline.registry import BACKENDS, DENSE_KINDS, LLMS, MODELS, RETRIEVERS


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other error (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see: {self.prog} --help\n")


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{s}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {v}")
    return v


def add_index_arg(s: argparse.ArgumentParser, help: str | None = None) -> None:
    s.add_argument("index", type=Path, metavar="DIR", help=help)


def add_retrieval(s: argparse.ArgumentParser, k_help: str = "number of passages (default 5)",
                  k_default: int | None = None) -> None:
    s.add_argument("-k", type=positive_int, default=k_default, help=k_help)
    add_mode(s)
    add_rerank(s)


def add_mode(s: argparse.ArgumentParser) -> None:
    s.add_argument("--mode", choices=RETRIEVERS.names, help="retrieval mode (default weighted)")


def add_rerank(s: argparse.ArgumentParser) -> None:
    s.add_argument("--rerank", metavar="RERANKER",
                   help="rerank the top passages: query-likelihood (the bundled generator "
                        "scores log p(query | passage)) or cross-encoder:PATH")
    s.add_argument("--rerank-depth", type=positive_int,
                   help="first-stage passages to rerank (default 20)")


def add_model(s: argparse.ArgumentParser, help: str, **kwargs: Any) -> None:
    s.add_argument("--model", choices=MODELS.names, help=help, **kwargs)
    s.add_argument("--rag-lm", metavar="NAME|FOLDER",
                   help=f"the RAG models' generator: {', '.join(LLMS.names)} (default "
                        f"{LLMS.names[0]}) or a transformers causal-LM folder")
    s.add_argument("--runtime", choices=RAG_RUNTIMES,
                   help="where the RAG models decode (default auto: llama-cpp for a packaged "
                        "model on CPU when llama-cpp-python is installed, else torch)")
    s.add_argument("--adapter", metavar="auto|none|FOLDER",
                   help="a LoRA adapter on the RAG models' generator (default auto: the one "
                        "ragline ships for its default generator, if any; none: the bare model)")


def add_generator(s: argparse.ArgumentParser) -> None:
    s.add_argument("--llm", metavar="NAME|GGUF",
                   help=f"concat's generator: {', '.join(LLMS.names)} (default {LLMS.names[0]}), "
                        "a GGUF file (llama-cpp), or the server's model name (openai)")
    s.add_argument("--passage-tokens", type=positive_int, metavar="N",
                   help="the passages' share of the prompt (default 200): fewer answer sooner")
    s.add_argument("--backend", choices=BACKENDS.names)
    s.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")


def add_dense(s: argparse.ArgumentParser, help: str) -> None:
    s.add_argument("--dense", choices=DENSE_KINDS.names, help=help)


def add_ray(s: argparse.ArgumentParser, searches: bool = True, workers: str = "") -> None:
    """--ray [ADDRESS] (the extra ragline[ray]); --partial for commands that search shards,
    --workers for those that start a pool."""
    s.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray: on this machine (no ADDRESS, or 'local'), the cluster "
                        "this machine is in ('auto'), or host:port")
    if searches:
        s.add_argument("--partial", action="store_true", default=None,
                       help="a sharded index: answer from the shards that are up when one "
                            "stays down (default: fail, naming it)")
    if workers:
        s.add_argument("--workers", type=positive_int, help=workers)


def add_json(s: argparse.ArgumentParser, help: str = "print JSON") -> None:
    s.add_argument("--json", action="store_true", help=help)


def settings(args: argparse.Namespace) -> Config:
    """ragline.toml (--config, else ./ragline.toml if present), overridden by the flags given."""
    path = args.config
    if path is None and Path("ragline.toml").is_file():
        path = Path("ragline.toml")
    cfg = load_config(path)
    get = lambda name: getattr(args, name, None)  # noqa: E731 - flags a command may not have
    return replace(
        cfg,
        retrieval=override(cfg.retrieval, rerank=get("rerank"), rerank_depth=get("rerank_depth")),
        model=override(cfg.model, generator=get("rag_lm"), runtime=get("runtime"),
                       adapter=get("adapter")),
        generation=override(cfg.generation, model=get("llm"), backend=get("backend"),
                            base_url=get("base_url"), max_tokens=get("max_tokens"),
                            passage_tokens=get("passage_tokens")),
        scale=override(cfg.scale, ray=get("ray"), partial=get("partial"),
                       workers=get("workers")))
