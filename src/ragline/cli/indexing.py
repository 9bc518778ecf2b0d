"""`ragline index · rm · info · reindex`: what an index holds and how it changes."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.options import add_dense, add_index_arg, add_json, add_ray, positive_int
from ragline.config import Config, override
from ragline.errors import RaglineError
from ragline.index.dense import DenseSpec
from ragline.ingest.files import document_reader
from ragline.ingest.loaders import supported_suffixes
from ragline.ingest.pipeline import IngestReport
from ragline.registry import ENCODERS
from ragline.text import display_path


def register(sub: Any) -> None:
    s = sub.add_parser("index", help="add files or folders to an index (created if missing)")
    s.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    s.add_argument("--index", "-i", required=True, type=Path, metavar="DIR")
    s.add_argument("--encoder", help=f"{ENCODERS.usage()}, or a sentence-transformers folder "
                                     "(default minilm; use-multilingual for mostly Chinese files)")
    s.add_argument("--chunk-words", type=positive_int, help="passage size in words (default 100)")
    add_dense(s, "dense index of a new index: flat (exact, default), hnsw or ivfpq")
    s.add_argument("--query-prefix", help='encoder prefix for queries, e.g. "query: " (default: '
                                          "what the model's config names; kept in the manifest)")
    s.add_argument("--passage-prefix", help='encoder prefix for passages, e.g. "passage: "')
    s.add_argument("--no-ocr", action="store_true",
                   help="do not run OCR on images and on PDF pages without a text layer "
                        "(they are listed as skipped)")
    s.add_argument("--shards", type=positive_int, metavar="N",
                   help="a new index: split it into N shards (documents go by their id); "
                        "search them here or with one Ray actor each (--ray)")
    add_ray(s, searches=False, workers="embedding actors with --ray (default 2; a GPU each "
                                       "when the cluster has GPUs)")
    s.set_defaults(run=cmd_index)

    s = sub.add_parser("reindex", help="rebuild the search indexes from the store, e.g. as "
                                       "HNSW or IVF-PQ for a large corpus")
    add_index_arg(s)
    add_dense(s, "switch the dense index to this kind")
    s.add_argument("--hnsw-m", type=positive_int, help="HNSW links per node (default 32)")
    s.add_argument("--ef-search", type=positive_int, help="HNSW candidates per query (default 128)")
    s.add_argument("--nlist", type=positive_int, help="IVF lists (default ≈ √passages)")
    s.add_argument("--nprobe", type=positive_int, help="IVF lists visited per query (default 32)")
    s.add_argument("--refine", type=positive_int,
                   help="approximate kinds: rescore refine·k candidates exactly (default 4)")
    s.set_defaults(run=cmd_reindex)

    s = sub.add_parser("rm", help="remove a document (by id) or a source file from an index")
    add_index_arg(s)
    s.add_argument("targets", nargs="+", metavar="DOC")
    s.set_defaults(run=cmd_rm)

    s = sub.add_parser("info", help="describe an index")
    add_index_arg(s)
    s.add_argument("--documents", action="store_true", help="list every document")
    add_json(s)
    s.set_defaults(run=cmd_info)


def cmd_index(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.index.index import Index

    cfg = replace(cfg, index=override(cfg.index, encoder=args.encoder,
                                      chunk_words=args.chunk_words, dense=args.dense,
                                      query_prefix=args.query_prefix,
                                      passage_prefix=args.passage_prefix))
    with Index.open_or_create(args.index, cfg.index, args.encoder, cfg.model.device,
                              args.paths, shards=args.shards) as index:
        if cfg.scale.ray is None:
            reader = document_reader(ocr=not args.no_ocr, progress=not args.quiet)
            report = index.add(args.paths, progress=not args.quiet, reader=reader)
        else:
            from ragline.scale.ingest import ray_ingest

            with index.write_lock():
                report = ray_ingest(index, args.paths, cfg.scale.ray, cfg.scale.workers,
                                    progress=not args.quiet, device=cfg.model.device)
        counts = index.counts()
    return index_report(report, args.index, counts)


def index_report(report: IngestReport, path: Path, counts: dict[str, int],
                 pairs: bool = False) -> int:
    """Print what an ingestion did; `pairs`: a translation memory's import (ragline.tm)."""
    for missing in report.missing:
        render.error(f"{missing}: no such file or folder")
    new = len(report.added) - len(report.replaced)
    found = (f"{report.documents} pair(s)" if pairs else
             f"{report.documents} document(s), {report.passages} passage(s)")
    render.out(f"{'imported' if pairs else 'indexed'} {new} new and {len(report.replaced)} "
               f"changed file(s): {found}; {len(report.unchanged)} unchanged")
    if report.duplicates:
        render.out(f"{len(report.duplicates)} {'pair' if pairs else 'document'}(s) were already "
                   f"{'imported' if pairs else 'indexed'} from another file and are kept once")
    if report.ignored:
        kinds = sorted({Path(f).suffix or "(none)" for f in report.ignored})
        render.out(f"ignored {len(report.ignored)} file(s) of unsupported types in folders: "
                   f"{' '.join(kinds)}")
    if report.skipped:
        render.out(f"skipped {len(report.skipped)} file(s):")
        for skipped, why in report.skipped:
            render.out(f"  {render.shorten(skipped)}: {why}")
    render.out(f"{path}: {counts['documents']} pairs" if pairs else
               f"{path}: {counts['documents']} documents, {counts['passages']} passages")
    if report.failed and not report.missing:
        from ragline.tm.formats import SUFFIXES

        why = (f"{len(report.skipped)} file(s) skipped (the reasons are listed above)"
               if report.skipped else "no file of a supported type was found; supported: "
               + " ".join(SUFFIXES if pairs else supported_suffixes()))
        render.error(f"nothing could be read: {why}")
    return 1 if report.failed else 0


def cmd_reindex(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.index.index import Index

    with Index.open(args.index, device=cfg.model.device) as index:
        old = index.manifest.dense
        spec = DenseSpec.from_dict({**old.to_dict(), **{k: v for k, v in {
            "kind": args.dense, "hnsw_m": args.hnsw_m, "ef_search": args.ef_search,
            "nlist": args.nlist, "nprobe": args.nprobe, "refine": args.refine}.items()
            if v is not None}, "auto": old.auto and args.dense is None})  # a chosen kind stays
        index.reindex(spec, progress=not args.quiet)
        info = index.info()
        render.out(f"{args.index}: dense index {info['dense_index']}, "
                   f"{info['counts']['passages']} passages")
    return 0


def cmd_rm(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.index.index import Index
    from ragline.index.store import source_key

    status = 0
    with Index.open(args.index, device=cfg.model.device) as index:
        for target in args.targets:
            try:
                held = len(index.documents(source_key(Path(target).expanduser())))
                ids = index.remove(target)
                kept = f"; {held - len(ids)} stay, held by other files too" if held > len(ids) \
                    else ""
                render.out(f"removed {len(ids)} document(s) for {display_path(target)}{kept}")
            except RaglineError as e:
                render.error(str(e))
                status = 1
    return status


def cmd_info(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.index.index import Index

    with Index.open(args.index, device=cfg.model.device) as index:
        info = index.info()
        docs = index.documents() if args.documents else []
    if args.json:
        if args.documents:
            info["documents"] = [d.to_dict() for d in docs]
        render.out(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    enc = info["encoder"]
    c = info["counts"]
    render.out(f"index      {info['path']}  (format {info['format']}, "
               f"ragline {info['ragline_version']})")
    render.out(f"encoder    {enc['id']}  dim={enc['dim']} pooling={enc['pooling']} "
               f"normalized={enc['normalized']}")
    render.out(f"chunking   {info['chunking']['words']} words per passage")
    render.out(f"dense      {info['dense_index']} ({info['dense']['metric']})   "
               f"sparse {info['sparse']['kind']} ({_segments(info)}) "
               f"k1={info['sparse']['k1']} b={info['sparse']['b']}")
    render.out(f"contents   {c.get('sources', 0)} files, {c.get('documents', 0)} documents, "
               f"{c.get('passages', 0)} passages"
               + (f" in {len(info['shards'])} shards:" if info.get("shards") else ""))
    render.out(f"updated    {info['updated']}  (created {info['created']})")
    if (tm := info.get("translation_memory")) is not None:
        render.out(f"translates {tm['source']} → {tm['target']}  (a translation memory: "
                   "documents are pairs)")
    if (t := info["trained"]) is not None:
        parts = [f"{t['model']} step {t['step']}"]
        if t.get("generator"):
            parts.append(f"generator {t['generator']['base']}"
                         + (" + LoRA adapter" if t.get("adapter") else " (all weights)"))
        if t.get("question_encoder"):
            parts.append("question encoder")
        if t.get("prior_scale") is not None:
            parts.append(f"prior scale {t['prior_scale']:.1f}")
        render.out(f"trained    {', '.join(parts)}  ({t['updated']})")
    for shard in info.get("shards", []):
        sc = shard["counts"]
        render.out(f"  {shard['name']}  {sc.get('documents', 0)} documents, "
                   f"{sc.get('passages', 0)} passages, {shard['dense_index']}, "
                   f"{shard['segments']} BM25 segment" + ("" if shard["segments"] == 1 else "s"))
    for d in docs:
        render.out(f"  {d.id}  {render.shorten(d.source)}  {d.title[:40]!r}  "
                   f"{d.passages} passage(s)")
    return 0


def _segments(info: dict[str, Any]) -> str:
    n = len(info["sparse"].get("segments", []))
    return f"{n} segment" + ("" if n == 1 else "s")
