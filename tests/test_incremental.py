"""Incremental updates: BM25 segments score as one index, writes cost what they change, the
derived files catch up with the store on open, and the dense kind follows the corpus size."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest

import ragline.index.dense as dense_mod
import ragline.index.folder as folder_mod
import ragline.index.sparse as sparse_mod
from ragline import RAG
from ragline.config import Config, IndexConfig
from ragline.index.index import Index
from ragline.index.sparse import BM25Index, Segment


def _corpus(n: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(200)]
    # a few common words, many rare ones: posting lists of every length
    return [[rng.choice(words[:rng.randint(3, 200)]) for _ in range(rng.randint(0, 30))]
            for _ in range(n)]


def _reference(docs: list[list[str]], query: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """bm25s (Lucene variant) over the same documents: scores and 0-based positions."""
    import bm25s

    model = bm25s.BM25(k1=1.5, b=0.75)
    model.index([d or [""] for d in docs], show_progress=False)
    scores = model.get_scores_from_ids(model.get_tokens_ids(query))
    top = np.lexsort((np.arange(len(scores)), -scores))[:k]
    top = top[scores[top] > 0]
    return scores[top], top


@pytest.mark.parametrize("query", [["w1", "w7", "w150"], ["w3", "w3", "w199"], ["w0"]])
def test_segments_score_as_one_index_through_adds_and_deletes(
        monkeypatch: pytest.MonkeyPatch, query: list[str]) -> None:
    monkeypatch.setattr(sparse_mod, "MIN_TIER", 5)  # tiers and merges at test sizes
    docs = [d or ["w5"] for d in _corpus(1200)]  # bm25s gives an empty document a token
    rowids = np.arange(1, 1201)
    index = BM25Index()
    for i in range(0, 1200, 17):  # many small writes, as an upload at a time
        index.add(rowids[i:i + 17], docs[i:i + 17])
    assert 1 < len(index.segments) < 3 * sparse_mod.MERGE_FACTOR  # merged by tier, not 71
    scores, ids = index.search(query, 10)
    want_scores, want_pos = _reference(docs, query, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert ids.tolist() == (want_pos + 1).tolist()

    dead = sorted(random.Random(1).sample(range(1, 1201), 400))
    index.remove(dead)
    live = [i for i in range(1, 1201) if i not in set(dead)]
    scores, ids = index.search(query, 10)
    want_scores, want_pos = _reference([docs[i - 1] for i in live], query, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert ids.tolist() == [live[p] for p in want_pos]

    index.optimize()  # one segment, deleted passages dropped: the same answer
    assert len(index.segments) == 1 and index.segments[0].size == 800
    again, again_ids = index.search(query, 10)
    np.testing.assert_allclose(again, scores, rtol=1e-6)
    assert again_ids.tolist() == ids.tolist()


def test_a_merge_of_interleaved_segments_keeps_row_ids_sorted() -> None:
    a = Segment.from_tokens([1, 2, 9], [["x"], ["y"], ["x", "z"]])
    b = Segment.from_tokens([5, 6], [["z"], ["x"]])
    merged = Segment.merge([a, b])
    assert merged.rowids.tolist() == [1, 2, 5, 6, 9]
    index = BM25Index([merged])
    index.remove([9])
    assert sorted(index.search(["x"], 10)[1].tolist()) == [1, 6]


def test_a_segment_survives_save_and_load(tmp_path: Path) -> None:
    seg = Segment.from_tokens([3, 4, 8], [["北京", "大学"], ["capit", "franc"], []])
    seg.save(tmp_path)
    back = BM25Index.load(tmp_path, [seg.name or ""], 1.5, 0.75)
    assert back.search(["北京"], 5)[1].tolist() == [3]
    assert back.ntotal == 3


def _files(tmp_path: Path, n: int, words: int = 40) -> list[Path]:
    out = []
    for i in range(n):
        f = tmp_path / "docs" / f"doc{i}.txt"
        f.parent.mkdir(exist_ok=True)
        f.write_text(" ".join(f"topic{i} word{j % 7} item{i}x{j}" for j in range(words)))
        out.append(f)
    return out


def test_one_write_saves_new_segments_and_leaves_a_large_dense_file_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files(tmp_path, 6)
    idx = tmp_path / "idx"
    with Index.open_or_create(idx, IndexConfig(encoder="hash")) as index:
        index.add(files[:5])
    before = json.loads((idx / "manifest.json").read_text())
    dense_stat = (idx / "dense.faiss").stat()
    # as if the dense index were large: a write must not rewrite it
    monkeypatch.setattr(folder_mod, "SMALL_DENSE", 0)
    monkeypatch.setattr(folder_mod, "DENSE_RESAVE", 10.0)
    with Index.open(idx) as index:
        index.add(files[5:])
        assert index.folder.dense is not None
        n = index.folder.store.counts()["passages"]
        assert index.folder.dense.ntotal == n
    after = json.loads((idx / "manifest.json").read_text())
    assert (idx / "dense.faiss").stat().st_mtime_ns == dense_stat.st_mtime_ns
    assert after["files"]["dense.faiss"] == before["files"]["dense.faiss"]
    new = set(after["sparse"]["segments"]) - set(before["sparse"]["segments"])
    assert new, "the added passages are a new segment"
    for name in before["sparse"]["segments"]:  # saved segments are never rewritten
        if name in after["sparse"]["segments"]:
            assert after["files"][f"sparse/{name}/docs.npy"] == \
                before["files"][f"sparse/{name}/docs.npy"]
    assert {p.name for p in (idx / "sparse").iterdir()} == set(after["sparse"]["segments"])
    # the stale dense.faiss is caught up from the store on open, and searches find the file
    with RAG.open(idx) as rag:
        dense = rag.index.folder.dense
        assert dense is not None and dense.ntotal == n
        for mode in ("dense", "bm25"):
            assert rag.search("topic5 item5x3", k=1, mode=mode)[0].passage.source.endswith(
                "doc5.txt")


def test_open_catches_up_with_writes_the_derived_files_missed(tmp_path: Path) -> None:
    """A writer killed after its store commit: the next open applies the commit."""
    files = _files(tmp_path, 4)
    idx = tmp_path / "idx"
    with Index.open_or_create(idx, IndexConfig(encoder="hash")) as index:
        index.add(files[:3])
        index.folder.persist = lambda: None  # type: ignore[method-assign]  # killed before it
        index.add(files[3:])
        index.remove(str(files[0]))
    with RAG.open(idx) as rag:
        folder = rag.index.folder
        n = folder.store.counts()["passages"]
        assert folder.dense is not None and folder.sparse is not None
        assert folder.dense.ntotal == folder.sparse.ntotal == n
        sources = {h.passage.source for h in rag.search("topic0 item0x1 topic3", k=20,
                                                        mode="bm25")}
        assert any(s.endswith("doc3.txt") for s in sources)
        assert not any(s.endswith("doc0.txt") for s in sources)


def test_hnsw_removal_needs_no_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files(tmp_path, 12)
    idx = tmp_path / "idx"
    with Index.open_or_create(idx, IndexConfig(encoder="hash", dense="hnsw")) as index:
        index.add(files)

        def no_rebuild(*a: object, **kw: object) -> None:
            raise AssertionError("the HNSW graph was rebuilt for one removal")

        monkeypatch.setattr(index.folder, "rebuild_dense", no_rebuild)
        index.remove(str(files[0]))
        dense = index.folder.dense
        assert dense is not None and dense.deleted > 0
        rag = RAG(index, Config())
        hits = rag.search("topic0 item0x1", k=30, mode="dense")
        assert hits and not any(h.passage.source.endswith("doc0.txt") for h in hits)


def test_dense_kind_follows_corpus_size_unless_chosen(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dense_mod, "AUTO_LARGE", 300)
    monkeypatch.setattr(dense_mod.IVFPQIndex, "MIN_TRAIN", 300)
    files = _files(tmp_path, 80, words=120)  # 4 passages each
    with caplog.at_level(logging.WARNING):
        with Index.open_or_create(tmp_path / "auto", IndexConfig(encoder="hash:32")) as index:
            index.add(files[:2])
            assert index.folder.dense_spec.kind == "flat"
            index.add(files[2:])
            assert index.folder.dense_spec.kind == "ivfpq" and index.folder.dense_spec.auto
            assert index.folder.dense is not None and index.folder.dense.trained
    assert any("switches from flat to ivfpq" in r.message for r in caplog.records)
    manifest = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    assert manifest["dense"]["kind"] == "ivfpq" and manifest["dense"]["auto"] is True
    with Index.open_or_create(tmp_path / "chosen",
                              IndexConfig(encoder="hash:32", dense="flat")) as index:
        index.add(files)
        assert index.folder.dense_spec.kind == "flat" and not index.folder.dense_spec.auto


def test_a_merge_builds_outside_the_lock_and_swaps_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches go on over the old segments while a merge builds the new one."""
    from contextlib import contextmanager

    monkeypatch.setattr(sparse_mod, "MIN_TIER", 5)
    docs = _corpus(100)
    index = BM25Index()
    for i in range(0, 90, 10):  # nine segments of one tier: the tenth write fills it
        index.add(np.arange(i + 1, i + 11), docs[i:i + 10], merge=False)
    held = []
    real_merge = Segment.merge

    def merge(segments: list[Segment]) -> Segment:
        assert not held, "the merge ran under the search lock"
        return real_merge(segments)

    @contextmanager
    def lock():  # type: ignore[no-untyped-def]
        held.append(True)
        yield
        held.pop()

    monkeypatch.setattr(Segment, "merge", staticmethod(merge))
    index.add(np.arange(91, 101), docs[90:100], merge=False)
    index.merge_tiers(lock)
    assert len(index.segments) == 1 and not held
    whole = BM25Index.build(list(range(1, 101)), docs)
    for query in (["w1", "w2"], ["w0", "w3", "w3"]):
        scores, ids = index.search(query, 10)
        want_scores, want_ids = whole.search(query, 10)
        assert ids.tolist() == want_ids.tolist()
        np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
