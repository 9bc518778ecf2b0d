"""`ragline eval retrieval · qa`: BEIR retrieval metrics, and open-domain QA (hit@k, EM, F1)."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.options import (
    add_dense,
    add_generator,
    add_index_arg,
    add_json,
    add_mode,
    add_model,
    add_ray,
    add_rerank,
    positive_int,
)
from ragline.config import Config, override
from ragline.errors import ConfigError
from ragline.eval.ranking import DEFAULT_METRICS
from ragline.registry import MODELS, RETRIEVERS

log = logging.getLogger("ragline")


def register(sub: Any) -> None:
    s = sub.add_parser("eval", help="measure retrieval (BEIR data) or question answering "
                                    "(SQuAD-format or QA jsonl)")
    ev = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    r = ev.add_parser("retrieval", help="nDCG@10, recall@k, MRR@10 per retrieval mode")
    add_index_arg(r, "the index; built from the corpus first if DIR has none")
    r.add_argument("--beir", type=Path, metavar="FOLDER",
                   help="BEIR data folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    r.add_argument("--split", default="test", help="qrels split in a BEIR folder (default test)")
    r.add_argument("--queries", type=Path, help="BEIR queries.jsonl (instead of --beir)")
    r.add_argument("--qrels", type=Path, help="BEIR qrels .tsv (instead of --beir)")
    r.add_argument("--corpus", type=Path, help="corpus.jsonl to build DIR from if it has no index")
    r.add_argument("--modes", default="bm25,dense,hybrid,weighted",
                   help=f"comma-separated, of {', '.join(RETRIEVERS.names)} "
                        "(default bm25,dense,hybrid,weighted)")
    r.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated ndcg@K, recall@K, mrr@K")
    add_rerank(r)
    r.add_argument("--limit", type=positive_int,
                   help="evaluate N queries, evenly spread (e.g. to try a slow reranker)")
    r.add_argument("--chunk-words", type=positive_int,
                   help="passage size when building (default 100; BEIR scores whole documents: "
                        "use a size above the longest, e.g. 100000, to index them unsplit)")
    add_dense(r, "dense index kind when building")
    add_json(r)
    add_ray(r)
    r.set_defaults(run=cmd_eval_retrieval)

    q = ev.add_parser("qa", help="retrieval hit@k, exact match, F1 and seconds per question")
    _add_qa_data(q)
    add_rerank(q)
    add_model(q, "generator model (default concat)")
    q.add_argument("--retrieval-only", action="store_true", help="hit@k only, no generation")
    add_json(q)
    q.add_argument("--out", type=Path, help="write every question's answer and scores as jsonl")
    add_ray(q)
    q.set_defaults(run=cmd_eval_qa)

    f = ev.add_parser("faithfulness", help="answers when the documents say, refusals when they "
                                           "don't, citations that back each sentence")
    _add_qa_data(f)
    add_model(f, "the model to judge (default: the configured one, per-passage)")
    add_json(f)
    f.add_argument("--out", type=Path, help="write every question's two answers as jsonl")
    f.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="draw the answered/refused trade-off over thresholds (needs matplotlib: "
                        "pip install 'ragline[plot]')")
    add_ray(f)
    f.set_defaults(run=cmd_eval_faithfulness)


def _open_or_build(path: Path, cfg: Config, corpus: list[Path], progress: bool) -> Any:
    """Open the index at `path`, or build it from `corpus` when there is none yet."""
    from ragline.index.index import Index
    from ragline.rag import RAG

    if Index.exists(path) or not corpus:
        return RAG.open(path, config=cfg)
    missing = [c for c in corpus if not c.exists()]
    if missing:
        raise ConfigError(f"corpus not found: {missing[0]}")
    log.warning("building %s from %s", path, ", ".join(str(c) for c in corpus))
    # the corpus decides the encoder of a new index (mostly Chinese: the multilingual one)
    rag = RAG(Index.open_or_create(path, cfg.index, None, cfg.model.device, corpus), cfg)
    report = rag.add(corpus, progress=progress)
    if report.failed:
        rag.close()
        raise ConfigError(f"could not index {corpus[0]}: "
                          f"{report.skipped[0][1] if report.skipped else ''}")
    return rag


def cmd_eval_retrieval(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.eval.beir import BeirData
    from ragline.eval.retrieval import check_evaluation, evaluate_retrieval

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    check_evaluation(modes, metrics)  # before an index is built to evaluate
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
        render.out(json.dumps({"index": str(args.index), "queries": len(data.queries),
                               "results": [r.to_dict() for r in results]}, indent=2))
        return 0
    render.out(f"{len(data.queries)} queries, "
               f"{sum(len(r) for r in data.qrels.values())} judgements")
    render.table(["mode", *metrics, "ms/query"],
                 [[r.name, *[f"{r.metrics[m]:.4f}" for m in metrics],
                   f"{1000 * r.seconds_per_query:.1f}"] for r in results])
    return 0


def _add_qa_data(s: argparse.ArgumentParser) -> None:
    """What `eval qa` and `eval faithfulness` share: the index, the data, k, the mode, the
    answer model and --limit."""
    add_index_arg(s, "the index; for SQuAD-format data built from its paragraphs if DIR has none")
    s.add_argument("--data", required=True, type=Path,
                   help='SQuAD-format JSON or jsonl rows {"question": ..., "answers": [...]}')
    s.add_argument("-k", type=positive_int, default=5, help="passages to answer from (default 5)")
    add_mode(s)
    add_generator(s)
    s.add_argument("--limit", type=positive_int,
                   help="evaluate N questions, evenly spread over the file")


def _qa_rag(args: argparse.Namespace, cfg: Config, tmp: str) -> Any:
    """The examples of --data (--limit spread) and the index to ask them over, built from the
    data's paragraphs when DIR has none."""
    from ragline.eval.qa_data import read_qa, write_paragraphs_jsonl
    from ragline.index.index import Index
    from ragline.qa import spread

    examples = read_qa(args.data)
    if args.limit:
        examples = spread(examples, args.limit)  # the file is ordered by article
    corpus: list[Path] = []
    if not Index.exists(args.index):
        if not any(e.context for e in examples):
            raise ConfigError(f"no index at {args.index}, and {args.data} has no paragraphs "
                              "to build one from; index your corpus first")
        corpus = [write_paragraphs_jsonl(args.data,
                                         Path(tmp) / f"{args.data.stem}-paragraphs.jsonl")]
    return examples, _open_or_build(args.index, cfg, corpus, not args.quiet)


def _write_rows(path: Path | None, rows: list[dict[str, Any]]) -> None:
    if path is not None:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def cmd_eval_faithfulness(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.eval.faithfulness import evaluate_faithfulness

    if args.plot is not None:
        from ragline.eval.plot import check_plot

        check_plot(args.plot)  # before the (long) evaluation
        if MODELS.canonical(args.model or cfg.model.kind) != "per-passage":
            raise ConfigError("--plot draws the per-passage reader's trade-off over "
                              "generation.min_confidence; the other models have no threshold")
    with tempfile.TemporaryDirectory(prefix="ragline-eval-") as tmp:
        examples, rag = _qa_rag(args, cfg, tmp)
        with rag:
            report = evaluate_faithfulness(rag, examples, k=args.k, mode=args.mode,
                                           progress=not args.quiet, model=args.model)
    _write_rows(args.out, report.rows)
    if args.json:
        render.out(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    render.out(f"{report.questions} questions, k={report.k}; judge: {report.judge}")
    render.table(["metric", "value"], [
        ["answerable questions answered", pct(report.answered_answerable)],
        ["unanswerable questions refused", pct(report.refused_unanswerable)],
        ["exact match / F1 (answerable)", f"{pct(report.em)} / {pct(report.f1)}"],
        ["citation precision", pct(report.citation_precision)],
        ["citation recall", pct(report.citation_recall)],
        ["answers no passage supports", pct(report.unsupported)],
        ["refusal reasons", ", ".join(f"{k} {v}" for k, v in
                                      sorted(report.refusal_reasons.items())) or "–"],
        ["s/question (two answers)", f"{report.seconds_per_question:.2f}"]])
    if report.sweep is not None:
        render.out(f"\nThe trade-off over generation.min_confidence (* the setting, "
                   f"{report.min_confidence:g}):")
        render.table(["threshold", "answerable answered", "unanswerable refused", "EM", "F1",
                      "refused, answer in top k"],
                     [[f"{p.threshold:.2f}{' *' if p.threshold == report.min_confidence else ''}",
                       pct(p.answered_answerable), pct(p.refused_unanswerable), pct(p.em),
                       pct(p.f1), pct(p.refused_with_answer)] for p in report.sweep])
    if args.plot is not None:
        from ragline.eval.plot import plot_tradeoff

        plot_tradeoff(report, args.plot)
        render.out(f"\nwrote {args.plot}")
    return 0


def cmd_eval_qa(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.eval.qa import evaluate_qa

    with tempfile.TemporaryDirectory(prefix="ragline-eval-") as tmp:
        examples, rag = _qa_rag(args, cfg, tmp)
        with rag:
            report = evaluate_qa(rag, examples, k=args.k, mode=args.mode, model=args.model,
                                 generate=not args.retrieval_only, progress=not args.quiet)
    _write_rows(args.out, report.rows)
    if args.json:
        render.out(json.dumps(report.to_dict(), indent=2))
        return 0
    render.out(f"{report.questions} questions")
    render.table(["metric", "value"],
                 [[f"hit@{k}", f"{100 * v:.1f}"] for k, v in report.hit_at.items()]
                 + [["retrieval ms/question", f"{1000 * report.retrieval_seconds:.1f}"]]
                 + ([[f"exact match ({report.model}, k={args.k})", f"{100 * report.em:.1f}"],
                     ["F1", f"{100 * (report.f1 or 0):.1f}"],
                     ["answered", f"{100 * (report.answered or 0):.1f}"],
                     ["s/question", f"{report.seconds_per_question:.2f}"],
                     ["first token s (median)", f"{report.first_token_s or 0:.2f}"]]
                    if report.em is not None else []))
    return 0
