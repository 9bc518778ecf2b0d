"""ragline benchmarks: ingestion overhead, retrieval latency, answer latency, peak memory.

    .venv/bin/python bench/run.py                 # all, prints tables (takes ~15 min on 2 cores)
    .venv/bin/python bench/run.py --only retrieval --sizes 10000

Data: SciFact (../shared/data/scifact). Ratios are taken in one run, so a noisy machine moves
both sides alike. The 100k retrieval index replicates real SciFact passages and their real
vectors (never random vectors), so latency reflects real posting lists and a real vector set.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
QUESTIONS = ["When was the Eiffel Tower completed?", "Who reached the bottom of the Challenger Deep?",
             "What gas do plants release during photosynthesis?",
             "今天看到的长城大部分是哪个朝代修建的？", "Which planet is the largest?"]


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for i, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scifact_rows(n: int | None = None) -> list[dict]:
    rows = []
    with (SCIFACT / "corpus.jsonl").open() as f:
        for line in f:
            rows.append(json.loads(line))
            if n is not None and len(rows) >= n:
                break
    return rows


def bare_encoder(name: str, texts: list[str]) -> tuple[Any, np.ndarray, float]:
    """The encoder `name`, loaded and warmed up; its vectors for `texts`, and the seconds one
    encode_passages call over them took (what ingestion is measured against)."""
    from ragline.encode import load_encoder

    enc = load_encoder(name)
    enc.load()
    enc.encode_passages(texts[:64])  # warm-up
    t = time.perf_counter()
    vecs = enc.encode_passages(texts, batch_size=32)
    return enc, vecs, time.perf_counter() - t


def bench_ingest(n_docs: int) -> None:
    from ragline import RAG
    from ragline.ingest.chunk import chunk_document
    from ragline.ingest.loaders import load_file

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "corpus.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in scifact_rows(n_docs)))
        passages = [p.embed_text for d in load_file(src) for p in chunk_document(d, 100)]
        _, _, raw = bare_encoder("minilm", passages)
        t = time.perf_counter()
        rag = RAG.build(Path(tmp) / "idx", paths=[src])
        full = time.perf_counter() - t
        n = rag.index.folder.store.counts()["passages"]
        rag.close()
    assert n == len(passages)
    table(f"Ingestion: {n_docs} SciFact abstracts → {n} passages (all-MiniLM-L6-v2, CPU)",
          ["path", "seconds", "passages/s", "vs raw encoder"],
          [["raw encoder (SentenceTransformer.encode)", raw, n / raw, 1.0],
           ["ragline index (load, chunk, embed, store, FAISS, BM25)", full, n / full, raw / full]])


def build_sized_index(path: Path, source: Path, size: int) -> None:
    """An index of `size` passages made of real SciFact passages and their real vectors,
    replicated as new documents when `size` exceeds the corpus (no re-embedding)."""
    from itertools import groupby

    from ragline.index.folder import IndexFolder
    from ragline.types import Document, Passage

    src = IndexFolder.open(source)
    dst = IndexFolder.create(path, src.encoder_spec, src.chunk_words)
    rows = src.store.con.execute(
        'SELECT p.id, p.doc_id, p.text, d.title, p.start, p."end", p.position, p.tokens, p.vector, '
        "d.text FROM passages p JOIN documents d ON d.id = p.doc_id ORDER BY p.doc_id, p.position"
    ).fetchall()
    docs = [list(g) for _, g in groupby(rows, key=lambda r: r[1])]
    made = 0
    copy = 0
    with dst.store.transaction():
        while made < size:
            for group in docs:
                group = group[:size - made]
                if not group:
                    break
                doc = Document(f"{group[0][1]}~{copy}", "bench", group[0][9], group[0][3])
                passages = [Passage(f"{r[0]}~{copy}", doc.id, r[2], r[3], r[4], r[5], r[6])
                            for r in group]
                vecs = np.stack([np.frombuffer(r[8], dtype=np.float32) for r in group])
                tokens = [r[7].split("\t") if r[7] else [] for r in group]
                dst.store.add_document(doc, passages, vecs, tokens)
                made += len(group)
            copy += 1
    dst.rebuild()
    dst.persist()
    dst.close()
    src.close()


class PrecomputedQueries:
    """A query encoder that looks its vectors up: search latency without the encoder's."""

    def __init__(self, spec: object, vectors: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.vectors = vectors

    def load(self) -> None:
        pass

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        raise NotImplementedError("queries only")


def bench_retrieval(source: Path, sizes: list[int], n_queries: int) -> None:
    from ragline import RAG
    from ragline.retrieve.searcher import Searcher

    queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][:n_queries]
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            build_sized_index(Path(tmp) / "idx", source, size)
            with RAG.open(Path(tmp) / "idx") as rag:
                enc = rag.index.encoder
                enc.load()
                # the query encoder is measured apart: it does not change with corpus size
                qvecs = dict(zip(queries, enc.encode_queries(queries), strict=True))
                searcher = Searcher(rag.index, PrecomputedQueries(enc.spec, qvecs),
                                    rag.config.retrieval)
                for mode in ("dense", "bm25", "hybrid"):
                    searcher.search(queries[0], k=10, mode=mode)
                    lat = []
                    for q in queries:
                        t = time.perf_counter()
                        searcher.search(q, k=10, mode=mode)
                        lat.append((time.perf_counter() - t) * 1000)
                    lat.sort()
                    rows.append([size, mode, statistics.median(lat),
                                 lat[int(0.95 * (len(lat) - 1))], peak_rss_mb()])
    enc_ms = []
    with RAG.open(source) as rag:
        rag.index.encoder.load()
        for q in queries[:50]:
            t = time.perf_counter()
            rag.index.encoder.encode_queries([q])
            enc_ms.append((time.perf_counter() - t) * 1000)
    rows.append(["any", "query encoding (MiniLM)", statistics.median(enc_ms),
                 sorted(enc_ms)[int(0.95 * (len(enc_ms) - 1))], peak_rss_mb()])
    table(f"Retrieval latency, k=10, {len(queries)} SciFact queries (query vector precomputed)",
          ["passages", "mode", "p50 ms", "p95 ms", "peak RSS MB"], rows)


def bench_answer() -> None:
    from ragline import RAG

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rag = RAG.build(Path(tmp) / "idx", paths=[REPO / "examples" / "docs"])
        t = time.perf_counter()
        rag.answerer.generator().load()
        load_s = time.perf_counter() - t
        for q in QUESTIONS:
            a = rag.ask(q)
            rows.append([q[:40], a.answered, a.timings["retrieve_s"], a.timings.get("first_token_s", 0.0),
                         a.timings["total_s"], a.text[:40].replace("\n", " ")])
        rag.close()
    table(f"Answer latency (Gemma 3 270M Q4_K_M, llama.cpp, k=5; model load {load_s:.2f}s)",
          ["question", "answered", "retrieve s", "first token s", "total s", "answer"], rows)
    print(f"\npeak RSS of the whole benchmark process: {peak_rss_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("ingest", "retrieval", "answer"))
    ap.add_argument("--ingest-docs", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--scifact-index", type=Path, help="an index of the SciFact corpus to reuse")
    args = ap.parse_args()
    if args.only in (None, "ingest"):
        bench_ingest(args.ingest_docs)
    if args.only in (None, "retrieval"):
        source = args.scifact_index
        if source is None:
            from ragline import RAG

            source = Path(tempfile.mkdtemp()) / "scifact"
            print(f"indexing SciFact into {source} (≈4 min)…", file=sys.stderr)
            RAG.build(source, paths=[SCIFACT / "corpus.jsonl"], progress=True).close()
        bench_retrieval(source, args.sizes, args.queries)
    if args.only in (None, "answer"):
        bench_answer()


if __name__ == "__main__":
    main()
