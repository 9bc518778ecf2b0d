"""`ragline search · ask · write · score`: passages for a query, cited answers, cited texts
and questions, answer likelihoods."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.chatting import read_history, save_turns
from ragline.cli.options import (
    add_generator,
    add_index_arg,
    add_json,
    add_mode,
    add_model,
    add_ray,
    add_retrieval,
    positive_int,
)
from ragline.config import Config, override
from ragline.errors import ConfigError
from ragline.generate.tasks import WRITE_TASKS
from ragline.types import Answer, Turn, hit_to_dict

log = logging.getLogger("ragline")


def register(sub: Any) -> None:
    s = sub.add_parser("search", help="retrieve passages for a query")
    add_index_arg(s)
    s.add_argument("query")
    add_retrieval(s)
    add_json(s)
    add_ray(s)
    s.set_defaults(run=cmd_search)

    s = sub.add_parser("ask", help="answer a question from the index, with citations")
    add_index_arg(s)
    s.add_argument("question")
    add_retrieval(s, "passages to condition on (default 5)")
    add_json(s, "print the answer as JSON")
    add_model(s, "concat: all passages in one prompt (default); rag-token / rag-sequence: "
                 "the RAG model, marginalizing over passages")
    s.add_argument("--beams", type=positive_int, help="beam size of the RAG models (default 1: greedy)")
    s.add_argument("--fast", action="store_true", help="RAG-Sequence fast decoding")
    add_generator(s)
    s.add_argument("--max-tokens", type=positive_int)
    s.add_argument("--history", type=Path, metavar="FILE.jsonl",
                   help="the conversation so far (JSON Lines of {\"role\", \"content\"}): "
                        "a follow-up is made standalone before it is searched for")
    s.add_argument("--save", action="store_true",
                   help="with --history: append the question and its answer to the file")
    add_ray(s)
    s.set_defaults(run=cmd_ask)

    s = sub.add_parser("write", help="write a text from the index, every sentence cited (or, "
                                     "with --task question, a question for a given answer)")
    add_index_arg(s)
    s.add_argument("instruction", help="what to write about, e.g. \"Explain how the tower was "
                                       "built\"; with --task question, the topic")
    s.add_argument("--task", choices=WRITE_TASKS, default="text",
                   help="text: a few sentences, each cited (default); question: a question "
                        "whose answer is --answer (Jeopardy-style)")
    s.add_argument("--answer", metavar="A", help="the answer the question is to have")
    add_retrieval(s, "passages to write from (default 5)")
    add_json(s, "print the text as JSON (the shape of ask --json)")
    add_model(s, "concat: all passages in one prompt (default); rag-token: the RAG model, "
                 "mixing the passages at every token (the paper's best for questions)")
    s.add_argument("--beams", type=positive_int, help="beam size of the RAG models (default 1: greedy)")
    add_generator(s)
    s.add_argument("--max-tokens", type=positive_int,
                   help="longest output (default 200 for a text, 48 for a question)")
    add_ray(s)
    s.set_defaults(run=cmd_write)

    s = sub.add_parser("score", help="log p(answer | question) under each model")
    add_index_arg(s)
    s.add_argument("question")
    s.add_argument("answer")
    s.add_argument("-k", type=positive_int, help="passages to condition on (default 5)")
    add_mode(s)
    add_model(s, "only this model (repeatable)", action="append")
    add_json(s)
    add_ray(s)
    s.set_defaults(run=cmd_score)


def cmd_search(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    with RAG.open(args.index, config=cfg) as rag:
        hits = rag.search(args.query, k=args.k, mode=args.mode)
    if args.json:
        render.out(json.dumps([hit_to_dict(h) for h in hits], ensure_ascii=False, indent=2))
    else:
        render.hits(hits)
    return 0


def cmd_ask(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    if args.save and args.history is None:
        raise ConfigError("--save appends to the conversation file: give it with --history FILE")
    history = read_history(args.history, missing_ok=args.save) if args.history else []
    cfg = replace(cfg, model=override(cfg.model, thorough=False if args.fast else None))
    with RAG.open(args.index, config=cfg) as rag:
        answer: list[Answer] = []
        status = _show(rag.ask_stream(args.question, k=args.k, mode=args.mode, model=args.model,
                                      beams=args.beams, history=history), args.json,
                       cfg.generation.min_confidence, answer)
    if args.save:
        save_turns(args.history, [Turn("user", args.question), Turn("assistant", answer[0].text)])
    return status


def cmd_write(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    with RAG.open(args.index, config=cfg) as rag:
        return _show(rag.write_stream(args.instruction, task=args.task, answer=args.answer,
                                      k=args.k, mode=args.mode, model=args.model,
                                      beams=args.beams, max_tokens=args.max_tokens), args.json)


def _show(pieces: Iterator[str | Answer], as_json: bool, min_confidence: float = 0.0,
          keep: list[Answer] | None = None) -> int:
    """Stream the text as it comes (or, as JSON, the Answer at the end), then its sources;
    the Answer is appended to `keep`."""
    answer: Answer | None = None
    streamed = ""
    for piece in pieces:
        if isinstance(piece, Answer):
            answer = piece
        elif not as_json:
            streamed += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
    if answer is None:
        raise RuntimeError("the generation ended without an answer")
    if keep is not None:
        keep.append(answer)
    if as_json:
        render.out(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    render.answer_tail(answer, streamed)
    t = answer.timings
    log.info("retrieval %.2fs, first token %.2fs, total %.2fs", t.get("retrieve_s", 0),
             t.get("first_token_s", 0), t.get("total_s", 0))
    if answer.confidence is not None:
        log.info("confidence %.2f (answers from %.2f, generation.min_confidence)",
                 answer.confidence, min_confidence)
    return 0


def cmd_score(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG, SCORED

    with RAG.open(args.index, config=cfg) as rag:
        scores = rag.score(args.question, args.answer, k=args.k, mode=args.mode,
                           models=args.model or SCORED)
    if args.json:
        render.out(json.dumps({"question": args.question, "answer": args.answer,
                               "log_prob": scores}, ensure_ascii=False, indent=2))
        return 0
    for name, lp in scores.items():
        render.out(f"{name:<13} log p(y|x) = {lp:9.3f}")
    return 0
