"""One conformance suite for the dense index kinds (flat, HNSW, IVF-PQ), and the index folder
using them: build, search, remove, reopen, switch kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragline import RAG
from ragline.cli import main
from ragline.config import Config, IndexConfig
from ragline.errors import ConfigError
from ragline.index.dense import DenseSpec, IVFPQIndex, load_dense, make_dense
from ragline.registry import DENSE_KINDS


def clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres: ANN recall on uniform noise says nothing."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def small_train(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IVFPQIndex, "MIN_TRAIN", 300)


def _built(kind: str, vecs: np.ndarray, ids: np.ndarray):
    index = make_dense(DenseSpec(kind, ef_search=64, nprobe=8), dim=vecs.shape[1])
    if not index.trained and len(vecs) >= index.MIN_TRAIN:
        index.train(vecs, len(vecs))
    index.add(ids, vecs)
    return index


MIN_RECALL = {"flat": 1.0, "hnsw": 0.9, "ivfpq": 0.5}


@pytest.mark.parametrize("kind", DENSE_KINDS.names)  # every registered kind runs it
def test_dense_kind_conformance(kind: str, tmp_path: Path, small_train: None) -> None:
    min_recall = MIN_RECALL[kind]
    vecs = clustered(1200)
    ids = np.arange(1200, dtype=np.int64) * 10 + 7  # store row ids, not positions
    index = _built(kind, vecs, ids)
    assert index.ntotal == 1200 and index.trained and index.kind == kind
    queries = clustered(50, seed=1)
    exact = queries @ vecs.T
    truth = [set(ids[np.argsort(-row)[:10]].tolist()) for row in exact]

    scores, found = index.search(queries, 10)
    assert found.shape == scores.shape == (50, 10)
    assert set(found.ravel().tolist()) <= set(ids.tolist())
    recall = np.mean([len(t & set(f.tolist())) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= min_recall
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first

    path = tmp_path / "dense.faiss"
    index.save(path)
    again = load_dense(path, index.spec, 16)
    assert type(again) is type(index)
    assert np.array_equal(again.search(queries, 10)[1], found)

    tiny = _built("flat" if kind == "ivfpq" else kind, vecs[:3], ids[:3])
    s, f = tiny.search(queries[:1], 10)  # k beyond the corpus: what exists
    assert sorted(f[0][f[0] >= 0].tolist()) == sorted(ids[:3].tolist())


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_every_kind_removes_without_a_rebuild(small_train: None, kind: str) -> None:
    vecs = clustered(400)
    ids = np.arange(400, dtype=np.int64)
    index = _built(kind, vecs, ids)
    index.remove(np.array([5, 7, 9999]))  # an id it does not hold changes nothing
    assert index.ntotal == 398
    assert {5, 7}.isdisjoint(index.ids().tolist()) and len(index.ids()) == 398
    for i in (5, 7):
        found = index.search(vecs[i:i + 1], 10)[1][0].tolist()
        assert i not in found and len(found) == 10
    # HNSW keeps the node as a tombstone until compaction; the others drop it
    assert index.deleted == (2 if kind == "hnsw" else 0)


def test_untrained_ivfpq_is_exact_and_says_so() -> None:
    index = make_dense(DenseSpec("ivfpq"), dim=16)
    vecs = clustered(50)
    index.add(np.arange(50), vecs)
    assert not index.trained and "untrained" in index.describe()
    _, found = index.search(vecs[:5], 1)
    assert found[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_dense_spec_validation() -> None:
    with pytest.raises(ConfigError, match="unknown dense index kind"):
        DenseSpec("annoy")
    with pytest.raises(ConfigError, match="ef_search"):
        DenseSpec("hnsw", ef_search=0)
    assert DenseSpec.from_dict({"kind": "hnsw", "metric": "inner_product", "extra": 1}).kind == "hnsw"


def _row_corpus(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega rho".split()
    rows = [{"_id": f"doc{i}", "text": " ".join(rng.choice(words, 12)) + f" item{i}"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_index_folder_with_an_approximate_kind(kind: str, tmp_path: Path, corpus: Path,
                                               small_train: None) -> None:
    cfg = Config(index=IndexConfig(encoder="hash:32", dense=kind))
    rows = _row_corpus(tmp_path / "rows.jsonl", 320)  # crosses MIN_TRAIN: IVF-PQ trains
    with RAG.build(tmp_path / "idx", paths=[corpus, rows], config=cfg) as rag:
        assert rag.index.manifest.to_dict()["dense"]["kind"] == kind
        if kind == "ivfpq":
            assert rag.index.folder.dense.trained
        # the exact text of a passage is its own nearest vector; refine rescoring makes it rank 1
        for i in (0, 7, 311):
            hits = rag.search(f"{json.loads(rows.read_text().splitlines()[i])['text']}", k=3,
                              mode="dense")
            assert hits[0].passage.doc_id == f"doc{i}"
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert rag.search("capital of Germany Berlin", k=1)[0].passage.source.endswith("germany.txt")
        rag.remove(str(corpus / "germany.txt"))  # HNSW: rebuilt from the store
        n = rag.index.folder.dense.ntotal
    with RAG.open(tmp_path / "idx") as rag:
        assert rag.index.folder.dense.ntotal == n == rag.index.folder.store.counts()["passages"]
        assert all(not h.passage.source.endswith("germany.txt")
                   for h in rag.search("Berlin Germany", k=5, mode="dense"))


def test_reindex_switches_kinds_and_index_refuses_a_silent_switch(
        tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    assert main(["-q", "index", str(corpus), "--index", idx, "--encoder", "hash"]) == 0
    capsys.readouterr()
    assert main(["search", idx, "capital of France", "--mode", "dense", "--json"]) == 0
    flat = json.loads(capsys.readouterr().out)
    assert main(["-q", "reindex", idx, "--dense", "hnsw", "--ef-search", "16"]) == 0
    assert "hnsw (M=32" in capsys.readouterr().out
    assert json.loads((Path(idx) / "manifest.json").read_text())["dense"]["ef_search"] == 16
    assert main(["search", idx, "capital of France", "--mode", "dense", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == flat  # three vectors: HNSW finds them all
    assert main(["-q", "index", str(corpus), "--index", idx, "--dense", "flat"]) == 2
    assert "ragline reindex" in capsys.readouterr().err
    assert main(["info", idx]) == 0
    assert "hnsw" in capsys.readouterr().out
