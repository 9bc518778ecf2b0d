"""Scale-out on this machine: what shards and Ray cost and what they buy.

    .venv/bin/python bench/shards.py                          # ≈ 40 min on 2 cores
    .venv/bin/python bench/shards.py --only ingest --ingest-docs 300

1. Ingestion: passages/s of `ragline index` on the same Wikipedia passages (torch MiniLM): in
   this process into one index and into 2 shards, and on a local Ray instance with 1 and 2
   embedding workers (Ray Data; the instance is started before the clock, each run's actors
   and model loads are inside it). The bare encoder's rate on the same passages gives the
   share of each run's time spent in the encoder.
2. Search: p50/p95 of dense, BM25 and hybrid at 100k and 1M passages in 1, 2 and 4 shards,
   in this process and with one Ray actor per shard (a local instance), 200 SciFact queries
   one at a time with their vectors precomputed, each timed on its second pass (the store's
   pages cached, as in a server that has been answering for a while). The passages are those of bench/scale.py
   (real text and int8-MiniLM vectors, replicated with perturbations), routed to shards by
   document id; every shard of a 1M index is IVF-PQ (the automatic kind from 200k passages),
   every shard of a 100k index flat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PrecomputedQueries, bare_encoder, table  # noqa: E402
from scale import DATA, ENCODER, passages_of, real_docs, synthetic, wiki_docs, write_jsonl  # noqa: E402


def bench_ingest(n_docs: int, workers: tuple[int, ...] = (1, 2)) -> None:
    from ragline.config import IndexConfig
    from ragline.index.index import Index
    from ragline.scale.cluster import connect
    from ragline.scale.ingest import ray_ingest

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = write_jsonl(Path(tmp) / "sample.jsonl", wiki_docs()[:n_docs])
        texts = [p.embed_text for p in passages_of(src)]
        n = len(texts)
        enc, _, bare = bare_encoder("minilm", texts)
        rows.append(["bare encoder (this process)", n / bare, 1.0, 1.0])

        def timed(name: str, shards: int | None, run: object) -> None:
            with Index.open_or_create(Path(tmp) / name, IndexConfig(encoder="minilm"),
                                      shards=shards) as ix:
                ix.encoder = enc  # loading the model in this process is not ingestion
                t = time.perf_counter()
                report = run(ix)  # type: ignore[operator]
                took = time.perf_counter() - t
                assert report.passages == n, (name, report.passages, n)
            rows.append([name, n / took, bare / took, took / bare])

        # this process first: a Ray instance keeps a few processes busy for a while after
        # it starts, which would slow what runs beside it
        timed("in-process, one index", None, lambda ix: ix.add([src]))
        timed("in-process, 2 shards", 2, lambda ix: ix.add([src]))
        t = time.perf_counter()
        connect("local", num_cpus=max(workers) + 1)
        warm = write_jsonl(Path(tmp) / "warm.jsonl", wiki_docs()[n_docs:n_docs + 20])
        with Index.open_or_create(Path(tmp) / "warm", IndexConfig(encoder="minilm")) as ix:
            ray_ingest(ix, [warm], "local", workers=1)  # workers' imports and caches, once
        rows.append(["(starting Ray and a first small job, s)", time.perf_counter() - t, "", ""])
        for w in workers:
            timed(f"Ray Data, {w} worker(s), 2 shards", 2,
                  lambda ix, w=w: ray_ingest(ix, [src], "local", workers=w))
    table(f"Ingestion: {n_docs} Wikipedia leads → {n} passages, torch MiniLM, 2 CPU cores",
          ["run", "passages/s", "share of time in the encoder", "× bare encoder time"], rows)


def build_sharded(path: Path, docs: list[dict], size: int, shards: int, cache: Path) -> float:
    """A sharded index of `size` synthetic passages; returns the seconds it took."""
    from ragline.config import IndexConfig
    from ragline.encode import load_encoder
    from ragline.index.shards import ShardedIndex
    from ragline.ingest.pipeline import shard_of

    t0 = time.perf_counter()
    enc = load_encoder(ENCODER)
    index = ShardedIndex.create(path, shards, IndexConfig(encoder=ENCODER), enc)
    folders = [s.folder for s in index.shards]
    made = 0
    for rows in synthetic(docs, size, cache):
        for f in folders:
            f.store.begin()
        for doc, p, vec, toks in rows:
            folders[shard_of(doc.id, shards)].store.add_document(doc, [p], vec, [toks])
        for f in folders:
            f.store.commit()
        made += len(rows)
        print(f"\r{shards} shards: store {made:,}/{size:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for f in folders:
        f.rebuild_dense(f.dense_spec.for_size(f.store.n_passages()) or f.dense_spec)
        f.rebuild_sparse()
        f.persist()
    index.close()
    return time.perf_counter() - t0


def bench_search(sizes: list[int], shard_counts: list[int], n_queries: int, workdir: Path,
                 keep: bool) -> None:
    from ragline.config import RetrievalConfig
    from ragline.encode import load_encoder
    from ragline.index.index import Index
    from ragline.retrieve.searcher import Searcher
    from ragline.scale.actors import ray_collection
    from ragline.scale.cluster import connect

    docs = real_docs()
    queries = [json.loads(line)["text"] for line in (DATA / "scifact" / "queries.jsonl").open()]
    queries = queries[:n_queries]
    enc = load_encoder(ENCODER)
    qvecs = PrecomputedQueries(enc.spec, dict(zip(queries, enc.encode_queries(queries),
                                                  strict=True)))
    connect("local")
    rows, builds = [], []
    for size in sizes:
        for shards in shard_counts:
            path = workdir / f"sharded-{size}-{shards}"
            if not (path / "manifest.json").is_file():
                shutil.rmtree(path, ignore_errors=True)
                builds.append([size, shards, build_sharded(path, docs, size, shards, workdir)])
            with Index.open(path) as index:
                kind = index.info()["dense_index"]
                for where in ("in-process", "Ray actors"):
                    collection = ray_collection(index, "local") if where == "Ray actors" else None
                    searcher = Searcher(index, qvecs, RetrievalConfig(), collection=collection)
                    for mode in ("dense", "bm25", "hybrid"):
                        for q in queries:  # warm: the store's pages cached, as when serving
                            searcher.search(q, k=10, mode=mode)
                        lat = []
                        for q in queries:
                            t = time.perf_counter()
                            searcher.search(q, k=10, mode=mode)
                            lat.append(1000 * (time.perf_counter() - t))
                        lat.sort()
                        rows.append([size, shards, kind, where, mode, statistics.median(lat),
                                     lat[int(0.95 * (len(lat) - 1))]])
                        print(rows[-1], file=sys.stderr, flush=True)
                    if collection is not None:
                        import ray

                        for s in collection.shards:
                            ray.kill(s.handle)  # type: ignore[attr-defined]
            if not keep:
                shutil.rmtree(path)
    if builds:
        table("Building the sharded indexes (store, then each shard's IVF-PQ or flat and BM25)",
              ["passages", "shards", "seconds"], builds)
    table(f"Search, k=10, {n_queries} SciFact queries one at a time (vectors precomputed), "
          "2 CPU cores", ["passages", "shards", "dense kind (per shard)", "where", "mode",
                          "p50 ms", "p95 ms"], rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("ingest", "search"))
    ap.add_argument("--ingest-docs", type=int, default=2000)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "ragline-bench")
    ap.add_argument("--keep", action="store_true", help="keep the sharded indexes for a re-run")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.only in (None, "ingest"):
        bench_ingest(args.ingest_docs)
    if args.only in (None, "search"):
        bench_search([int(s) for s in args.sizes.split(",")],
                     [int(s) for s in args.shards.split(",")], args.queries, args.workdir,
                     args.keep)


if __name__ == "__main__":
    main()
