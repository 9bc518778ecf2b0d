"""Shared by the sharding tests: a real corpus (the first SciFact abstracts), and comparisons
of a sharded index against a single index of the same files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragline import RAG

from conftest import SHARED_DATA

MODES = ("dense", "bm25", "hybrid", "weighted")


def scifact_files(folder: Path, n_docs: int = 300, per_file: int = 25) -> tuple[Path, list[str]]:
    """n_docs SciFact abstracts as jsonl files of per_file rows: those judged relevant to the
    first 20 test queries, then the corpus in order; and those 20 queries."""
    root = SHARED_DATA / "scifact"
    if not (root / "corpus.jsonl").is_file():
        pytest.skip(f"{root} is missing (see ../shared/data)")
    judged: dict[str, list[str]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        if len(judged) < 20 or qid in judged:
            judged.setdefault(qid, []).append(doc)
    wanted = {d for docs in judged.values() for d in docs}
    texts = {}
    for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        texts[q["_id"]] = q["text"]
    rows, filler = [], []
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            row = {"id": d["_id"], "title": d["title"], "text": d["text"]}
            (rows if d["_id"] in wanted else filler).append(row)
    rows = (rows + filler)[:n_docs]
    folder.mkdir(parents=True)
    for i in range(0, len(rows), per_file):
        with (folder / f"part-{i // per_file:02d}.jsonl").open("w", encoding="utf-8") as out:
            for r in rows[i:i + per_file]:
                out.write(json.dumps(r) + "\n")
    return folder, [texts[q] for q in judged]


def ranked(rag: RAG, query: str, mode: str, k: int = 10) -> list[tuple[str, float]]:
    return [(h.passage.id, h.score) for h in rag.search(query, k=k, mode=mode)]


def assert_same_results(single: RAG, sharded: RAG, queries: list[str]) -> None:
    """The same top-k passages with the same scores (within 1e-5) at every rank, in every
    mode. Passages whose scores are equal within 1e-5 are a tie that one index and its shards
    may order differently (by row id, or by float rounding): they compare as sets, except a
    tie that k cuts."""
    for mode in MODES:
        for q in queries:
            a, b = ranked(single, q, mode), ranked(sharded, q, mode)
            assert len(a) == len(b), (mode, q)
            assert all(abs(x - y) <= 1e-5 for (_, x), (_, y) in zip(a, b, strict=True)), \
                (mode, q, a, b)
            groups = _ties([s for _, s in a])
            for lo, hi in groups[:-1]:
                assert {i for i, _ in a[lo:hi]} == {i for i, _ in b[lo:hi]}, (mode, q, a, b)


def _ties(scores: list[float], eps: float = 1e-5) -> list[tuple[int, int]]:
    """[lo, hi) ranges of a descending score list whose neighbours differ by ≤ eps."""
    out: list[tuple[int, int]] = []
    lo = 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or scores[i - 1] - scores[i] > eps:
            out.append((lo, i))
            lo = i
    return out


def per_shard(rag: RAG) -> list[dict[str, int]]:
    """Passages per document id, shard by shard."""
    out = []
    for shard in rag.index.shards:  # type: ignore[attr-defined]
        counts: dict[str, int] = {}
        for d in shard.documents():
            counts[d.id] = d.passages
        out.append(counts)
    return out
