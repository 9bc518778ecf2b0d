"""The `ragline` command: index · search · ask · serve · score · train · eval · reindex · rm · info.

    ragline index docs/ --index my-index
    ragline ask my-index "What is the capital of France?"

Errors are one line on stderr; exit status 0 on success, 1 when the command failed,
2 for bad arguments or settings, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from ragline import __version__
from ragline.config import MODELS, Config, load_config, override
from ragline.errors import ConfigError, RaglineError
from ragline.eval.ranking import DEFAULT_METRICS
from ragline.index.dense import DENSE_KINDS
from ragline.ingest.loaders import TABLE_SUFFIXES, supported_suffixes
from ragline.ingest.pipeline import display_path
from ragline.retrieve.retriever import MODES
from ragline.types import Answer, Hit, hit_to_dict

log = logging.getLogger("ragline")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{s}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {v}")
    return v


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other error (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see: {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ragline", description=__doc__.split("\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"ragline {__version__}")
    p.add_argument("--config", type=Path, help="TOML settings file (default: ./ragline.toml if present)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("index", help="add files or folders to an index (created if missing)")
    s.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    s.add_argument("--index", "-i", required=True, type=Path, metavar="DIR")
    s.add_argument("--encoder", help="minilm (default), hash[:DIM], or a sentence-transformers folder")
    s.add_argument("--chunk-words", type=_positive_int, help="passage size in words (default 100)")
    s.add_argument("--dense", choices=DENSE_KINDS,
                   help="dense index of a new index: flat (exact, default), hnsw or ivfpq")
    s.add_argument("--query-prefix", help='encoder prefix for queries, e.g. "query: " (default: '
                                          "what the model's config names; kept in the manifest)")
    s.add_argument("--passage-prefix", help='encoder prefix for passages, e.g. "passage: "')

    s = sub.add_parser("search", help="retrieve passages for a query")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("query")
    s.add_argument("-k", type=_positive_int, help="number of passages (default 5)")
    s.add_argument("--mode", choices=MODES, help="retrieval mode (default hybrid)")
    _rerank_args(s)
    s.add_argument("--json", action="store_true", help="print JSON")

    s = sub.add_parser("ask", help="answer a question from the index, with citations")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("question")
    s.add_argument("-k", type=_positive_int, help="passages to condition on (default 5)")
    s.add_argument("--mode", choices=MODES, help="retrieval mode (default hybrid)")
    _rerank_args(s)
    s.add_argument("--json", action="store_true", help="print the answer as JSON")
    s.add_argument("--model", choices=MODELS,
                   help="concat: all passages in one prompt (default); rag-token / rag-sequence: "
                        "the RAG model, marginalizing over passages")
    s.add_argument("--beams", type=_positive_int, help="beam size of the RAG models (default 4)")
    s.add_argument("--fast", action="store_true", help="RAG-Sequence fast decoding")
    s.add_argument("--llm", help="concat's generator: GGUF file (llama-cpp) or model name (openai)")
    s.add_argument("--backend", choices=("llama-cpp", "openai"))
    s.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    s.add_argument("--max-tokens", type=_positive_int)

    s = sub.add_parser("serve", help="HTTP API, OpenAI-compatible endpoint and web page "
                                     "(needs ragline[server])")
    s.add_argument("index", type=Path, metavar="DIR",
                   help="the index (an empty one is created if DIR is new or empty)")
    s.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=_positive_int, help="default 8000")
    s.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API "
                   "key; when it is set, every request needs it (default RAGLINE_API_KEY)")
    s.add_argument("--queue-size", type=int, help="generations that may wait (default 32)")
    s.add_argument("--timeout", type=float, help="longest generation in seconds (default 120)")
    s.add_argument("--max-upload-mb", type=float, help="largest upload (default 32)")
    s.add_argument("--model", choices=MODELS, help="the default model of /v1/ask")
    s.add_argument("--encoder", help="encoder of a new index (default minilm)")
    s.add_argument("--llm", help="concat's generator: GGUF file (llama-cpp) or model name (openai)")
    s.add_argument("--backend", choices=("llama-cpp", "openai"))
    s.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")

    s = sub.add_parser("score", help="log p(answer | question) under each model")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("question")
    s.add_argument("answer")
    s.add_argument("-k", type=_positive_int, help="passages to condition on (default 5)")
    s.add_argument("--mode", choices=MODES, help="retrieval mode (default hybrid)")
    s.add_argument("--model", choices=MODELS, action="append", help="only this model (repeatable)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("train", help="fine-tune the question encoder and the generator end to end")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("--data", required=True, type=Path,
                   help='jsonl rows {"question": ..., "answers": [...]} or SQuAD-format JSON')
    s.add_argument("--model", choices=("rag-sequence", "rag-token"), default="rag-sequence")
    s.add_argument("--steps", type=_positive_int, default=100, help="total optimizer steps")
    s.add_argument("-k", type=_positive_int, default=4, help="passages per question")
    s.add_argument("--batch-size", type=_positive_int, default=2)
    s.add_argument("--lr", type=float, default=2e-5, help="generator learning rate")
    s.add_argument("--lr-question-encoder", type=float, default=1e-5)
    s.add_argument("--held-out", type=float, default=0.2,
                   help="share of articles kept out for evaluation (default 0.2)")
    s.add_argument("--eval-every", type=_positive_int, default=50)
    s.add_argument("--eval-questions", type=_positive_int, default=50)
    s.add_argument("--save-every", type=_positive_int, default=50)
    s.add_argument("--freeze-question-encoder", action="store_true",
                   help="train the generator only")
    s.add_argument("--restart", action="store_true",
                   help="start from the base models instead of resuming the last checkpoint")

    _eval_parser(sub)

    s = sub.add_parser("reindex", help="rebuild the search indexes from the store, e.g. as "
                                       "HNSW or IVF-PQ for a large corpus")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("--dense", choices=DENSE_KINDS, help="switch the dense index to this kind")
    s.add_argument("--hnsw-m", type=_positive_int, help="HNSW links per node (default 32)")
    s.add_argument("--ef-search", type=_positive_int, help="HNSW candidates per query (default 128)")
    s.add_argument("--nlist", type=_positive_int, help="IVF lists (default ≈ √passages)")
    s.add_argument("--nprobe", type=_positive_int, help="IVF lists visited per query (default 32)")
    s.add_argument("--refine", type=_positive_int,
                   help="approximate kinds: rescore refine·k candidates exactly (default 4)")

    s = sub.add_parser("rm", help="remove a document (by id) or a source file from an index")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("targets", nargs="+", metavar="DOC")

    s = sub.add_parser("info", help="describe an index")
    s.add_argument("index", type=Path, metavar="DIR")
    s.add_argument("--documents", action="store_true", help="list every document")
    s.add_argument("--json", action="store_true")
    return p


def _rerank_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--rerank", metavar="RERANKER",
                   help="rerank the top passages: query-likelihood (the bundled generator "
                        "scores log p(query | passage)) or cross-encoder:PATH")
    s.add_argument("--rerank-depth", type=_positive_int,
                   help="first-stage passages to rerank (default 20)")


def _eval_parser(sub: Any) -> None:
    s = sub.add_parser("eval", help="measure retrieval (BEIR data) or question answering "
                                    "(SQuAD-format or QA jsonl)")
    ev = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    r = ev.add_parser("retrieval", help="nDCG@10, recall@k, MRR@10 per retrieval mode")
    r.add_argument("index", type=Path, metavar="DIR",
                   help="the index; built from the corpus first if DIR has none")
    r.add_argument("--beir", type=Path, metavar="FOLDER",
                   help="BEIR data folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    r.add_argument("--split", default="test", help="qrels split in a BEIR folder (default test)")
    r.add_argument("--queries", type=Path, help="BEIR queries.jsonl (instead of --beir)")
    r.add_argument("--qrels", type=Path, help="BEIR qrels .tsv (instead of --beir)")
    r.add_argument("--corpus", type=Path, help="corpus.jsonl to build DIR from if it has no index")
    r.add_argument("--modes", default="bm25,dense,hybrid",
                   help=f"comma-separated, of {', '.join(MODES)} (default bm25,dense,hybrid)")
    r.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated ndcg@K, recall@K, mrr@K")
    _rerank_args(r)
    r.add_argument("--limit", type=_positive_int,
                   help="evaluate N queries, evenly spread (e.g. to try a slow reranker)")
    r.add_argument("--chunk-words", type=_positive_int,
                   help="passage size when building (default 100; BEIR scores whole documents: "
                        "use a size above the longest, e.g. 100000, to index them unsplit)")
    r.add_argument("--dense", choices=DENSE_KINDS, help="dense index kind when building")
    r.add_argument("--json", action="store_true", help="print JSON")

    q = ev.add_parser("qa", help="retrieval hit@k, exact match, F1 and seconds per question")
    q.add_argument("index", type=Path, metavar="DIR",
                   help="the index; for SQuAD-format data built from its paragraphs if DIR has none")
    q.add_argument("--data", required=True, type=Path,
                   help='SQuAD-format JSON or jsonl rows {"question": ..., "answers": [...]}')
    q.add_argument("-k", type=_positive_int, default=5, help="passages to answer from (default 5)")
    q.add_argument("--mode", choices=MODES, help="retrieval mode (default hybrid)")
    _rerank_args(q)
    q.add_argument("--model", choices=MODELS, help="generator model (default concat)")
    q.add_argument("--limit", type=_positive_int,
                   help="evaluate N questions, evenly spread over the file")
    q.add_argument("--retrieval-only", action="store_true", help="hit@k only, no generation")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--out", type=Path, help="write every question's answer and scores as jsonl")


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path("ragline.toml").is_file():
        path = Path("ragline.toml")
    cfg = load_config(path)
    if getattr(args, "rerank", None) or getattr(args, "rerank_depth", None):
        cfg = replace(cfg, retrieval=override(cfg.retrieval, rerank=args.rerank,
                                              rerank_depth=args.rerank_depth))
    return cfg


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _shorten(path: str) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path
    except ValueError:
        return path


def _where(hit_or_passage: Any) -> str:
    p = getattr(hit_or_passage, "passage", hit_or_passage)
    where = _shorten(p.source)
    if Path(p.source).suffix.lower() in TABLE_SUFFIXES:
        where += f" · doc {p.doc_id}"  # a table of documents: the row's id says which
    where += f" · passage {p.position + 1}"
    return where + (f" · page {p.page}" if p.page else "")


# ---------------------------------------------------------------- commands


def cmd_index(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    cfg = replace(cfg, index=override(cfg.index, encoder=args.encoder,
                                      chunk_words=args.chunk_words, dense=args.dense,
                                      query_prefix=args.query_prefix,
                                      passage_prefix=args.passage_prefix))
    rag = RAG.build(args.index, config=cfg, encoder=args.encoder)
    with rag:
        have = rag.folder.dense_spec.kind
        if args.dense and args.dense != have:
            raise ConfigError(f"{args.index} already has a {have} dense index; switch it with: "
                              f"ragline reindex {args.index} --dense {args.dense}")
        spec = rag.folder.encoder_spec
        for flag, given, have_prefix in (("--query-prefix", args.query_prefix, spec.query_prefix),
                                         ("--passage-prefix", args.passage_prefix,
                                          spec.passage_prefix)):
            if given is not None and given != have_prefix:
                raise ConfigError(f"{args.index} was built with {flag} {have_prefix!r}; a "
                                  "different prefix needs a new index")
        report = rag.add(args.paths, progress=not args.quiet)
        counts = rag.folder.store.counts()
    for path in report.missing:
        print(f"error: {path}: no such file or folder", file=sys.stderr)
    new = len(report.added) - len(report.replaced)
    _out(f"indexed {new} new and {len(report.replaced)} changed file(s): {report.documents} "
         f"document(s), {report.passages} passage(s); {len(report.unchanged)} unchanged")
    if report.duplicates:
        _out(f"{len(report.duplicates)} document(s) were already indexed from another file "
             "and are kept once")
    if report.ignored:
        kinds = sorted({Path(f).suffix or "(none)" for f in report.ignored})
        _out(f"ignored {len(report.ignored)} file(s) of unsupported types in folders: "
             f"{' '.join(kinds)}")
    if report.skipped:
        _out(f"skipped {len(report.skipped)} file(s):")
        for path, why in report.skipped:
            _out(f"  {_shorten(path)}: {why}")
    _out(f"{args.index}: {counts['documents']} documents, {counts['passages']} passages")
    if report.failed and not report.missing:
        why = (f"{len(report.skipped)} file(s) skipped (the reasons are listed above)"
               if report.skipped else "no file of a supported type was found; supported: "
               + " ".join(supported_suffixes()))
        print(f"error: nothing could be read: {why}", file=sys.stderr)
    return 1 if report.failed else 0


def _print_hits(hits: list[Hit]) -> None:
    for h in hits:
        p = h.passage
        extra = f"  p(z|x)={h.prob:.2f}" if h.prob is not None else ""
        _out(f"[{h.rank}] {h.score:.4f}{extra}  {_where(h)}")
        if p.title:
            _out(f"    {p.title}")
        snippet = " ".join(p.text.split())
        _out(textwrap.indent(textwrap.fill(snippet[:400] + ("…" if len(snippet) > 400 else ""),
                                           width=96), "    "))


def cmd_search(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    with RAG.open(args.index, config=cfg) as rag:
        hits = rag.search(args.query, k=args.k, mode=args.mode)
    if args.json:
        _out(json.dumps([hit_to_dict(h) for h in hits], ensure_ascii=False, indent=2))
    elif not hits:
        _out("no passages match")
    else:
        _print_hits(hits)
    return 0


def cmd_ask(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    gen = override(cfg.generation, model=args.llm, backend=args.backend,
                   base_url=args.base_url, max_tokens=args.max_tokens)
    model = override(cfg.model, thorough=False if args.fast else None)
    cfg = replace(cfg, generation=gen, model=model)
    answer: Answer | None = None
    streamed = ""
    with RAG.open(args.index, config=cfg) as rag:
        for piece in rag.ask_stream(args.question, k=args.k, mode=args.mode, model=args.model,
                                    beams=args.beams):
            if isinstance(piece, Answer):
                answer = piece
            elif not args.json:
                streamed += piece
                sys.stdout.write(piece)
                sys.stdout.flush()
    assert answer is not None
    if args.json:
        _out(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    _out()
    if not answer.answered:
        if streamed.strip() != answer.text:
            # the model's draft was a refusal or is not backed by the passages
            _out(f"\n→ {answer.text} (the draft above is not supported by the passages)")
        _out("Closest passages:")
        for h in answer.hits[:3]:
            _out(f"  [{h.rank}] {_where(h)}")
        return 0
    _out("\nSources:")
    for c in answer.citations:
        what = "p(z|x)" if (args.model or cfg.model.kind) == "concat" else "p(z|x,y)"
        prob = f"  {what}={c.prob:.2f}" if c.prob is not None else ""
        _out(f"  [{c.marker}] {_where(c.passage)}{prob}")
        quote = " ".join(c.quote.split())
        _out(textwrap.indent(textwrap.fill(f"“{quote[:300]}”", width=96), "      "))
    t = answer.timings
    log.info("retrieval %.2fs, first token %.2fs, total %.2fs", t.get("retrieve_s", 0),
             t.get("first_token_s", 0), t.get("total_s", 0))
    return 0


def cmd_serve(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG
    from ragline.server import serve

    cfg = replace(
        cfg,
        server=override(cfg.server, host=args.host, port=args.port, api_key_env=args.api_key_env,
                        queue_size=args.queue_size, timeout_s=args.timeout,
                        max_upload_mb=args.max_upload_mb),
        generation=override(cfg.generation, model=args.llm, backend=args.backend,
                            base_url=args.base_url),
        model=override(cfg.model, kind=args.model))
    new = not (args.index / "manifest.json").exists()
    rag = (RAG.build(args.index, encoder=args.encoder, config=cfg) if new
           else RAG.open(args.index, config=cfg, encoder=args.encoder))
    with rag:
        s = cfg.server
        keyed = bool(os.environ.get(s.api_key_env))
        c = rag.folder.store.counts()
        _out(f"{'new empty index' if new else 'index'} {args.index}: {c['documents']} documents, "
             f"{c['passages']} passages")
        _out(f"serving http://{s.host}:{s.port}/  (API docs /docs, OpenAI-compatible /v1)"
             + (f"; API key from ${s.api_key_env}" if keyed else "") + "; Ctrl-C stops")
        serve(rag, s)
    return 0


def cmd_score(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    with RAG.open(args.index, config=cfg) as rag:
        scores = rag.score(args.question, args.answer, k=args.k, mode=args.mode,
                           models=args.model or MODELS)
    if args.json:
        _out(json.dumps({"question": args.question, "answer": args.answer,
                         "log_prob": scores}, ensure_ascii=False, indent=2))
        return 0
    for name, lp in scores.items():
        _out(f"{name:<13} log p(y|x) = {lp:9.3f}")
    return 0


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.eval.qa_data import read_qa
    from ragline.model.train import TrainConfig
    from ragline.rag import RAG

    tc = TrainConfig(model=args.model, k=args.k, steps=args.steps, batch_size=args.batch_size,
                     lr=args.lr, lr_question_encoder=args.lr_question_encoder,
                     held_out=args.held_out, eval_every=args.eval_every,
                     eval_questions=args.eval_questions, save_every=args.save_every,
                     train_question_encoder=not args.freeze_question_encoder)
    examples = read_qa(args.data)
    with RAG.open(args.index, config=cfg) as rag:
        done = (rag.folder.manifest.get("trained") or {}).get("step", 0)
        if done >= args.steps and not args.restart:
            _out(f"{args.index} is already trained for {done} steps; ask for more with "
                 f"--steps N (N > {done}) or start over with --restart")
            return 0
        result = rag.train(examples, tc, progress=not args.quiet, restart=args.restart)
    for ev in result.evals:
        _out(f"step {int(ev['step'])}: held-out exact match {100 * ev['em']:.1f}, "
             f"F1 {100 * ev['f1']:.1f} ({int(ev['questions'])} questions)")
    if result.losses:
        _out(f"trained to step {result.step}; loss {result.losses[0]:.3f} → {result.losses[-1]:.3f}; "
             f"checkpoint {result.checkpoint}")
    return 0


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        _out("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def _open_or_build(path: Path, cfg: Config, corpus: list[Path], progress: bool) -> Any:
    """Open the index at `path`, or build it from `corpus` when there is none yet."""
    from ragline.rag import RAG

    if (path / "manifest.json").exists() or not corpus:
        return RAG.open(path, config=cfg)
    missing = [c for c in corpus if not c.exists()]
    if missing:
        raise ConfigError(f"corpus not found: {missing[0]}")
    log.warning("building %s from %s", path, ", ".join(str(c) for c in corpus))
    rag = RAG.build(path, config=cfg)
    report = rag.add(corpus, progress=progress)
    if report.failed:
        rag.close()
        raise ConfigError(f"could not index {corpus[0]}: {report.skipped[0][1] if report.skipped else ''}")
    return rag


def cmd_eval(args: argparse.Namespace, cfg: Config) -> int:
    if args.what == "retrieval":
        return _eval_retrieval(args, cfg)
    return _eval_qa(args, cfg)


def _eval_retrieval(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.eval.beir import BeirData
    from ragline.eval.ranking import parse_metric
    from ragline.eval.retrieval import evaluate_retrieval

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown retrieval mode '{m}'; choose from {', '.join(MODES)}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        try:
            parse_metric(m)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if args.beir is not None:
        if args.queries or args.qrels:
            raise ConfigError("give either --beir FOLDER or --queries and --qrels, not both")
        data = BeirData.from_folder(args.beir, args.split)
    elif args.queries and args.qrels:
        data = BeirData.from_files(args.queries, args.qrels)
    else:
        raise ConfigError("say what to evaluate on: --beir FOLDER, or --queries Q --qrels R")
    if args.limit:
        data = data.spread(args.limit)
    corpus = args.corpus or data.corpus
    cfg = replace(cfg, index=override(cfg.index, chunk_words=args.chunk_words, dense=args.dense))
    with _open_or_build(args.index, cfg, [corpus] if corpus else [], not args.quiet) as rag:
        results = evaluate_retrieval(rag, data, modes, metrics, progress=not args.quiet)
        if cfg.retrieval.rerank:
            results += evaluate_retrieval(rag, data, modes, metrics, rerank=True,
                                          progress=not args.quiet)
    if args.json:
        _out(json.dumps({"index": str(args.index), "queries": len(data.queries),
                         "results": [r.to_dict() for r in results]}, indent=2))
        return 0
    _out(f"{len(data.queries)} queries, {sum(len(r) for r in data.qrels.values())} judgements")
    _table(["mode", *metrics, "ms/query"],
           [[r.name, *[f"{r.metrics[m]:.4f}" for m in metrics], f"{1000 * r.seconds_per_query:.1f}"]
            for r in results])
    return 0


def _eval_qa(args: argparse.Namespace, cfg: Config) -> int:
    import tempfile

    from ragline.eval.qa import evaluate_qa
    from ragline.eval.qa_data import read_qa, write_paragraphs_jsonl

    examples = read_qa(args.data)
    if args.limit and args.limit < len(examples):
        stride = len(examples) / args.limit  # evenly spread: the file is ordered by article
        examples = [examples[int(i * stride)] for i in range(args.limit)]
    with tempfile.TemporaryDirectory(prefix="ragline-eval-") as tmp:
        corpus: list[Path] = []
        if not (args.index / "manifest.json").exists():
            if not any(e.context for e in examples):
                raise ConfigError(f"no index at {args.index}, and {args.data} has no paragraphs "
                                  "to build one from; index your corpus first")
            corpus = [write_paragraphs_jsonl(args.data,
                                             Path(tmp) / f"{args.data.stem}-paragraphs.jsonl")]
        with _open_or_build(args.index, cfg, corpus, not args.quiet) as rag:
            report = evaluate_qa(rag, examples, k=args.k, mode=args.mode, model=args.model,
                                 generate=not args.retrieval_only, progress=not args.quiet)
    if args.out:
        args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.rows),
                            "utf-8")
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2))
        return 0
    _out(f"{report.questions} questions")
    _table(["metric", "value"],
           [[f"hit@{k}", f"{100 * v:.1f}"] for k, v in report.hit_at.items()]
           + [["retrieval ms/question", f"{1000 * report.retrieval_seconds:.1f}"]]
           + ([[f"exact match ({report.model}, k={args.k})", f"{100 * report.em:.1f}"],
               ["F1", f"{100 * (report.f1 or 0):.1f}"],
               ["answered", f"{100 * (report.answered or 0):.1f}"],
               ["s/question", f"{report.seconds_per_question:.2f}"]]
              if report.em is not None else []))
    return 0


def cmd_reindex(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.index.dense import DenseSpec
    from ragline.rag import RAG

    with RAG.open(args.index, config=cfg) as rag:
        old = rag.folder.dense_spec
        spec = DenseSpec.from_dict({**old.to_dict(), **{k: v for k, v in {
            "kind": args.dense, "hnsw_m": args.hnsw_m, "ef_search": args.ef_search,
            "nlist": args.nlist, "nprobe": args.nprobe, "refine": args.refine}.items()
            if v is not None}})
        rag.reindex(spec, progress=not args.quiet)
        assert rag.folder.dense is not None
        _out(f"{args.index}: dense index {rag.folder.dense.describe()}, "
             f"{rag.folder.dense.ntotal} passages")
    return 0


def cmd_rm(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    status = 0
    with RAG.open(args.index, config=cfg) as rag:
        for target in args.targets:
            try:
                ids = rag.remove(target)
                _out(f"removed {len(ids)} document(s) for {display_path(target)}")
            except RaglineError as e:
                print(f"error: {e}", file=sys.stderr)
                status = 1
    return status


def cmd_info(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    with RAG.open(args.index, config=cfg) as rag:
        info = rag.info()
        docs = rag.documents() if args.documents else []
    if args.json:
        if args.documents:
            info["documents"] = [d.to_dict() for d in docs]
        _out(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    enc = info["encoder"]
    c = info["counts"]
    _out(f"index      {info['path']}  (format {info['format']}, ragline {info['ragline_version']})")
    _out(f"encoder    {enc['id']}  dim={enc['dim']} pooling={enc['pooling']} "
         f"normalized={enc['normalized']}")
    _out(f"chunking   {info['chunking']['words']} words per passage")
    _out(f"dense      {info['dense_index']} ({info['dense']['metric']})   "
         f"sparse {info['sparse']['kind']} k1={info['sparse']['k1']} b={info['sparse']['b']}")
    _out(f"contents   {c.get('sources', 0)} files, {c.get('documents', 0)} documents, "
         f"{c.get('passages', 0)} passages")
    _out(f"updated    {info['updated']}  (created {info['created']})")
    for d in docs:
        _out(f"  {d.id}  {_shorten(d.source)}  {d.title[:40]!r}  {d.passages} passage(s)")
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "ask": cmd_ask, "serve": cmd_serve,
            "score": cmd_score, "train": cmd_train, "eval": cmd_eval, "reindex": cmd_reindex,
            "rm": cmd_rm, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 still prints
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="ragline: %(message)s", stream=sys.stderr)
    # libraries' own notices (pypdf: "EOF marker not found") are not the user's business;
    # ragline reports what they mean (a file skipped, and why)
    for noisy in ("sentence_transformers", "transformers", "faiss", "bm25s", "numba", "jieba",
                  "httpx", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return COMMANDS[args.command](args, _config(args))
    except RaglineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except (MemoryError, RecursionError) as e:
        print(f"error: out of {'memory' if isinstance(e, MemoryError) else 'stack'}; the index "
              "keeps everything committed before it", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; the index keeps everything committed before the interruption",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ragline search … | head`): stop quietly, as C tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug: one line, the traceback with -v
        if args.verbose:
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
              " (a bug in ragline: run again with -v for the traceback, and report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
