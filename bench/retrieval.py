"""Retrieval benchmarks: BM25 libraries side by side, and dense index kinds at scale.

    .venv/bin/python bench/retrieval.py --only bm25
    .venv/bin/python bench/retrieval.py --only dense --sizes 100000,1000000 --vectors IDX

bm25:  ragline's BM25 (its tokenizer: jieba + Snowball + stopwords, over bm25s with numba)
       against bm25s with its own tokenizer and rank_bm25 (BM25Okapi) on ragline's tokens, on the
       SciFact corpus (5,183 abstracts) and its 300 test queries: indexing time, queries/s
       (one query at a time, top 10) and nDCG@10, all in one run.
dense: flat, HNSW and IVF-PQ (ragline's defaults) at each size: build time, index bytes,
       p50/p95 latency of one query at a time, recall@10 against exact search, raw and after
       ragline's exact rescoring of refine·k candidates.

The dense vectors come from a real ragline index (`--vectors`: MiniLM vectors of SciFact
passages). Sizes beyond it are filled with convex mixtures of two real vectors plus a little
noise, renormalized: they stay on the manifold of real text embeddings (uniform random vectors
would make ANN recall meaningless). Queries are the real SciFact query vectors. One run gives
all columns, so a noisy machine moves them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import SCIFACT, peak_rss_mb, table  # noqa: E402


def _scifact():
    from ragline.eval.beir import BeirData

    data = BeirData.from_folder(SCIFACT)
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    return data, [d["_id"] for d in docs], [f"{d['title']}\n{d['text']}" for d in docs]


def _ndcg(data, runs: dict[str, list[str]]) -> float:
    from ragline.eval.ranking import evaluate_run

    return evaluate_run(runs, data.qrels, ["ndcg@10"])["ndcg@10"]


def bench_bm25() -> None:
    import bm25s
    from rank_bm25 import BM25Okapi

    from ragline.index.sparse import BM25Index
    from ragline.text import tokenize

    data, ids, texts = _scifact()
    qids = list(data.queries)
    queries = [data.queries[q] for q in qids]
    rows = []

    t0 = time.perf_counter()
    tokens = [tokenize(t) for t in texts]
    t_tok = time.perf_counter() - t0
    index = BM25Index.build(list(range(len(texts))), tokens)
    t_index = time.perf_counter() - t0
    index.search(tokenize(queries[0]), 10)  # warm-up
    t0 = time.perf_counter()
    runs = {}
    for q, text in zip(qids, queries, strict=True):
        _, found = index.search(tokenize(text), 10)
        runs[q] = [ids[i] for i in found]
    t_q = time.perf_counter() - t0
    rows.append(["ragline (jieba+Snowball, segments, numba)", t_index, t_tok, len(qids) / t_q,
                 _ndcg(data, runs)])

    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    corpus_tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    t_tok = time.perf_counter() - t0
    model = bm25s.BM25(backend="numba")
    model.index(corpus_tokens, show_progress=False)
    t_index = time.perf_counter() - t0
    model.retrieve(bm25s.tokenize(queries[:1], stopwords="en", stemmer=stemmer, show_progress=False),
                   k=10, show_progress=False, n_threads=1)  # warm-up, as above
    t0 = time.perf_counter()
    runs = {}
    for q, text in zip(qids, queries, strict=True):
        qt = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        found, _ = model.retrieve(qt, k=10, show_progress=False, n_threads=1)
        runs[q] = [ids[i] for i in found[0]]
    t_q = time.perf_counter() - t0
    rows.append(["bm25s 0.3 (own tokenizer, numba)", t_index, t_tok, len(qids) / t_q,
                 _ndcg(data, runs)])

    t0 = time.perf_counter()
    okapi = BM25Okapi(tokens)  # ragline's tokens: the same text analysis, another engine
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = {}
    for q, text in zip(qids, queries, strict=True):
        scores = okapi.get_scores(tokenize(text))
        runs[q] = [ids[i] for i in np.argsort(-scores)[:10]]
    t_q = time.perf_counter() - t0
    rows.append(["rank_bm25 BM25Okapi (ragline tokens)", t_index, 0.0, len(qids) / t_q,
                 _ndcg(data, runs)])
    table(f"BM25 on SciFact ({len(texts):,} docs, {len(qids)} queries, top 10, one query at a time)",
          ["engine", "index s (incl. tokenizing)", "of which tokenizing s", "queries/s", "nDCG@10"],
          rows)


def real_vectors(index: Path) -> np.ndarray:
    from ragline.index.store import Store

    store = Store(index / "store.sqlite")
    store.open()
    vecs = np.concatenate([v for _, v in store.iter_vectors()])
    store.close()
    return vecs


def grow(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n vectors: the real ones, then normalized mixtures a·x_i + (1-a)·x_j + noise."""
    if n <= len(real):
        return real[:n].copy()
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), np.float32)
    out[:len(real)] = real
    for start in range(len(real), n, 100_000):
        m = min(100_000, n - start)
        i, j = rng.integers(0, len(real), m), rng.integers(0, len(real), m)
        a = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
        x = a * real[i] + (1 - a) * real[j] + 0.02 * rng.standard_normal((m, real.shape[1]),
                                                                           dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bench_dense(vectors_index: Path, sizes: list[int], n_queries: int) -> None:
    import faiss

    from ragline.encode import load_encoder
    from ragline.index.dense import DenseSpec, IVFPQIndex, make_dense

    faiss.omp_set_num_threads(2)
    data, _, _ = _scifact()
    enc = load_encoder("minilm")
    queries = enc.encode_queries(list(data.queries.values())[:n_queries])
    real = real_vectors(vectors_index)
    rows = []
    for n in sizes:
        vecs = grow(real, n)
        ids = np.arange(n, dtype=np.int64)
        exact = make_dense(DenseSpec("flat"), vecs.shape[1])
        exact.add(ids, vecs)
        _, truth = exact.search(queries, 10)
        for kind, variants in (("flat", [{}]), ("hnsw", [{}, {"ef_search": 512}]),
                               ("ivfpq", [{}, {"nprobe": 128, "refine": 10}])):
            t0 = time.perf_counter()
            index = make_dense(DenseSpec(kind), vecs.shape[1]) if kind != "flat" else exact
            if isinstance(index, IVFPQIndex):
                stride = max(1, n // index.MAX_TRAIN)
                index.train(vecs[::stride][:index.MAX_TRAIN], n)
            if kind != "flat":
                for s in range(0, n, 50_000):
                    index.add(ids[s:s + 50_000], vecs[s:s + 50_000])
            build = time.perf_counter() - t0 if kind != "flat" else 0.0
            with tempfile.TemporaryDirectory() as tmp:
                index.save(Path(tmp) / "d.faiss")
                size = (Path(tmp) / "d.faiss").stat().st_size
            for change in variants:
                index.spec = spec = replace(index.spec, **change)  # search-time knobs only
                lat, found = [], []
                for q in queries:
                    t0 = time.perf_counter()
                    _, f = index.search(q[None, :], 10 * (1 if spec.exact else spec.refine))
                    lat.append(time.perf_counter() - t0)
                    found.append(f[0])
                raw = np.mean([len(set(t) & set(f[:10])) / 10
                               for t, f in zip(truth, found, strict=True)])
                refined = []
                for q, t, f in zip(queries, truth, found, strict=True):
                    f = f[f >= 0]
                    best = f[np.argsort(-(vecs[f] @ q))[:10]]  # the retriever's exact rescoring
                    refined.append(len(set(t) & set(best)) / 10)
                lat.sort()
                rows.append([f"{n:,}", index.describe() + (f", refine={spec.refine}"
                                                           if not spec.exact else ""),
                             round(build, 1), f"{size / n:.0f}", f"{size / 2**20:.0f}",
                             1000 * statistics.median(lat), 1000 * lat[int(0.95 * (len(lat) - 1))],
                             raw, float(np.mean(refined))])
                print(rows[-1], flush=True)
            if index is not exact:
                del index
        del exact, vecs
    table(f"Dense search, {n_queries} real SciFact queries one at a time (2 threads)",
          ["vectors", "index", "build s", "bytes/vector", "MiB", "p50 ms", "p95 ms",
           "recall@10 raw", "recall@10 rescored"], rows)
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("bm25", "dense"))
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--vectors", type=Path,
                    help="a ragline index of real text (e.g. SciFact) to take vectors from")
    args = ap.parse_args()
    if args.only in (None, "bm25"):
        bench_bm25()
    if args.only in (None, "dense"):
        if args.vectors is None:
            sys.exit("--vectors IDX: a ragline index to take real vectors from, e.g. one built "
                     "with: ragline index ../shared/data/scifact/corpus.jsonl --index IDX")
        bench_dense(args.vectors, [int(s) for s in args.sizes.split(",")], args.queries)


if __name__ == "__main__":
    main()
