import json
from pathlib import Path

import numpy as np
import pytest

from ragline import RAG
from ragline.errors import (
    ConfigError,
    EmptyIndexError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
)
from ragline.index.dense import FaissIndex
from ragline.index.sparse import BM25Index


def test_dense_exact_ranking_with_hand_made_vectors() -> None:
    index = FaissIndex(dim=3)
    vecs = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)
    index.add(np.array([10, 20, 30]), vecs)
    scores, ids = index.search(np.array([[0.8, 0.6, 0]], dtype=np.float32), k=3)
    assert ids[0].tolist() == [20, 10, 30]
    assert scores[0].tolist() == pytest.approx([0.96, 0.8, 0.0])
    index.remove(np.array([20]))
    _, ids = index.search(np.array([[0.8, 0.6, 0]], dtype=np.float32), k=10)
    assert ids[0].tolist() == [10, 30]  # k beyond the corpus returns what exists


def test_bm25_ranking_and_unknown_terms() -> None:
    bm = BM25Index.build([1, 2, 3], [["cat", "sat"], ["dog", "sat", "sat"], ["bird"]])
    scores, ids = bm.search(["sat"], k=5)
    assert ids.tolist() == [2, 1] and scores[0] > scores[1] > 0
    assert bm.search(["unknown"], k=5)[1].tolist() == []
    assert bm.search([], k=5)[1].tolist() == []


def test_three_document_search_modes(hash_rag: RAG) -> None:
    for mode in ("dense", "bm25", "hybrid", "weighted"):
        hits = hash_rag.search("capital of Germany Berlin", k=1, mode=mode)
        assert hits[0].passage.source.endswith("germany.txt"), mode
    hits = hash_rag.search("中国的首都", k=1, mode="bm25")
    assert hits[0].passage.source.endswith("china.txt")


def test_hits_carry_document_posterior(hash_rag: RAG) -> None:
    hits = hash_rag.search("capital Paris", k=3, mode="hybrid")
    probs = [h.prob for h in hits]
    assert sum(probs) == pytest.approx(1.0)
    assert hits[0].passage.source.endswith("france.txt") and probs[0] == max(probs)


def test_k_larger_than_corpus_returns_all_and_bad_k_is_an_error(hash_rag: RAG) -> None:
    assert len(hash_rag.search("capital", k=50, mode="dense")) == 3
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="k must be"):
            hash_rag.search("capital", k=bad)
    with pytest.raises(ConfigError, match="mode"):
        hash_rag.search("capital", mode="magic")


def test_reindexing_same_files_is_a_noop(hash_rag: RAG, corpus: Path) -> None:
    gen = hash_rag.index.folder.store.generation
    report = hash_rag.add([corpus])
    assert report.added == [] and len(report.unchanged) == 3
    assert hash_rag.index.folder.store.generation == gen


def test_changed_file_replaces_its_passages(hash_rag: RAG, corpus: Path) -> None:
    (corpus / "france.txt").write_text("Lyon is a large city in France known for food.")
    report = hash_rag.add([corpus])
    assert len(report.replaced) == 1
    assert hash_rag.index.folder.store.counts()["documents"] == 3
    assert not hash_rag.search("Eiffel", k=3, mode="bm25")
    assert hash_rag.search("Lyon food", k=1, mode="bm25")[0].passage.text.startswith("Lyon")


def test_remove_deletes_from_every_part(hash_rag: RAG, corpus: Path) -> None:
    folder = hash_rag.index.folder
    removed = hash_rag.remove(str(corpus / "germany.txt"))
    assert len(removed) == 1
    assert folder.store.counts() == {"documents": 2, "passages": 2, "sources": 2}
    assert folder.dense is not None and folder.dense.ntotal == 2
    assert folder.sparse is not None and folder.sparse.ntotal == 2
    assert all(not h.passage.source.endswith("germany.txt")
               for h in hash_rag.search("Berlin Germany", k=3, mode="hybrid"))
    reopened = RAG.open(folder.path)
    assert reopened.index.folder.dense is not None and reopened.index.folder.dense.ntotal == 2
    # remove by document id works too
    doc_id = reopened.documents()[0].id
    assert reopened.remove(doc_id) == [doc_id]


def test_duplicate_content_in_two_files_is_kept_once(tmp_path: Path, corpus: Path) -> None:
    (corpus / "copy.txt").write_text((corpus / "france.txt").read_text())
    with RAG.build(tmp_path / "i2", paths=[corpus], encoder="hash") as rag:
        assert rag.index.folder.store.counts()["documents"] == 3


def test_manifest_records_what_the_query_side_needs(hash_rag: RAG) -> None:
    m = json.loads((hash_rag.index.folder.path / "manifest.json").read_text())
    assert m["encoder"]["id"] == "hash-256" and m["encoder"]["dim"] == 256
    assert m["chunking"]["words"] == 100 and m["counts"]["passages"] == 3
    assert m["generation"] == hash_rag.index.folder.store.generation
    assert len(m["files"]["dense.faiss"]["sha256"]) == 64


def test_open_errors(tmp_path: Path, hash_rag: RAG) -> None:
    with pytest.raises(IndexNotFoundError, match="ragline index"):
        RAG.open(tmp_path / "missing")
    with pytest.raises(IndexMismatchError, match="hash-256"):
        RAG.open(hash_rag.index.folder.path, encoder="hash:64")
    (hash_rag.index.folder.path / "manifest.json").write_text("{broken")
    with pytest.raises(IndexCorruptError):
        RAG.open(hash_rag.index.folder.path)


def test_empty_index_search_is_a_clear_error(tmp_path: Path) -> None:
    with RAG.build(tmp_path / "empty", encoder="hash") as rag:
        with pytest.raises(EmptyIndexError, match="ragline index"):
            rag.search("anything")


def test_missing_derived_file_is_rebuilt_from_store(hash_rag: RAG) -> None:
    path = hash_rag.index.folder.path
    (path / "dense.faiss").unlink()
    with RAG.open(path) as rag:
        assert rag.search("Berlin", k=1, mode="dense")[0].passage.source.endswith("germany.txt")
