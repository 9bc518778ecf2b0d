"""A sharded index is a folder of index folders that answers as one index of the same files:
identical top-k ids and scores for dense, BM25 (global statistics), hybrid and weighted; each
document in the one shard its id picks; writes, removals and killed runs as for one index.
(The same on Ray actors and a simulated 2-node cluster: tests/test_scale.py.)"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from ragline import RAG
from ragline.cli import main
from ragline.config import IndexConfig
from ragline.errors import ConfigError, DocumentNotFoundError, RaglineError
from ragline.index.folder import IndexFolder
from ragline.index.index import Index
from ragline.index.shards import ShardedIndex
from ragline.ingest.pipeline import shard_of

from conftest import SHARED_DATA, ScriptedGenerator
from killer import leftovers, run_killed
from shardkit import assert_same_results, per_shard, scifact_files


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("shards")
    # the real encoder: hash vectors tie exactly, and one index and its shards order exact
    # ties differently (by row id)
    docs, queries = scifact_files(base / "docs", n_docs=150, per_file=15)
    RAG.build(base / "single", paths=[docs], encoder="minilm").close()
    Index.open_or_create(base / "sharded", IndexConfig(), "minilm", paths=[docs],
                         shards=3).close()
    with Index.open(base / "sharded") as index:
        index.add([docs])
    return {"base": base, "docs": docs, "queries": queries}


def test_sharded_search_equals_single_index_search(built: dict) -> None:
    with RAG.open(built["base"] / "single") as single, \
            RAG.open(built["base"] / "sharded") as sharded:
        assert isinstance(sharded.index, ShardedIndex)
        assert single.index.counts() == sharded.index.counts()
        assert_same_results(single, sharded, built["queries"])


def test_each_document_lives_in_the_shard_its_id_picks(built: dict) -> None:
    with RAG.open(built["base"] / "sharded") as rag:
        shards = per_shard(rag)
        assert all(shards)  # 150 documents: none of 3 shards is empty
        for i, docs in enumerate(shards):
            assert all(shard_of(d, 3) == i for d in docs)
        assert sum(len(s) for s in shards) == rag.index.counts()["documents"] == 150
        # every shard records every file (with its share of the documents), so a re-run
        # skips what each shard has
        report = rag.add([built["docs"]])
        assert not report.added and len(report.unchanged) == 10


def test_cli_info_lists_the_shards(built: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(built["base"] / "sharded")]) == 0
    out = capsys.readouterr().out
    assert "10 files, 150 documents" in out and "in 3 shards" in out
    assert out.count("shard-00") == 3


def test_removals_and_updates_reach_every_shard(built: dict, tmp_path: Path) -> None:
    idx = tmp_path / "sharded"
    shutil.copytree(built["base"] / "sharded", idx)
    with RAG.open(idx) as rag:
        first = built["docs"] / "part-00.jsonl"
        ids = {d.id for d in rag.documents(str(first.resolve()))}
        assert len(ids) == 15 and len({shard_of(d, 3) for d in ids}) > 1
        assert set(rag.remove(str(first))) == ids
        assert rag.index.counts()["documents"] == 135
        with pytest.raises(DocumentNotFoundError):
            rag.remove(str(first))
        one = sorted(ids)[0]
        other = next(d.id for d in rag.documents() if d.id not in ids)
        rag.remove_documents([other])
        assert not rag.index.has_document(other)
        assert rag.add([built["docs"]]).added  # both files come back
        assert rag.index.has_document(one) and rag.index.has_document(other)
        assert rag.index.counts()["documents"] == 150


def test_shard_count_is_fixed_and_a_shard_root_is_no_plain_folder(built: dict) -> None:
    with pytest.raises(ConfigError, match="3 shards"):
        Index.open_or_create(built["base"] / "sharded", IndexConfig(), shards=4)
    with pytest.raises(ConfigError, match="no shards"):
        Index.open_or_create(built["base"] / "single", IndexConfig(), shards=2)
    with pytest.raises(RaglineError, match="sharded index"):
        IndexFolder.open(built["base"] / "sharded")


def test_a_missing_shard_is_named(built: dict, tmp_path: Path) -> None:
    idx = tmp_path / "sharded"
    shutil.copytree(built["base"] / "sharded", idx)
    shutil.rmtree(idx / "shard-001")
    with pytest.raises(RaglineError, match="shard-001 is missing"):
        Index.open(idx)


def test_killed_sharded_ingestion_finishes_on_rerun(built: dict, tmp_path: Path) -> None:
    """SIGKILL in the middle of the second shard's commits; the re-run finishes that shard
    and the third, and the index equals one built without the kill."""
    idx = tmp_path / "killed"
    argv = ["-q", "index", str(built["docs"]), "--index", str(idx), "--shards", "3",
            "--encoder", "minilm"]
    assert run_killed("commit", 75, argv) == -signal.SIGKILL
    with RAG.open(idx) as rag:
        partial = per_shard(rag)
    assert partial[0] and sum(len(s) for s in partial) < 150
    assert main(argv) == 0
    assert leftovers(idx) == []
    with RAG.open(idx) as rag, RAG.open(built["base"] / "sharded") as ref:
        assert per_shard(rag) == per_shard(ref)
        assert_same_results(ref, rag, built["queries"][:5])


def test_eval_and_the_server_on_a_sharded_index(built: dict, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from fastapi.testclient import TestClient

    from ragline.config import ServerConfig
    from ragline.server import create_app

    scores = []
    for name in ("single", "sharded"):
        argv = ["eval", "retrieval", str(built["base"] / name), "--beir",
                str(SHARED_DATA / "scifact"), "--modes", "bm25,hybrid", "--json"]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        scores.append([{k: v for k, v in r.items() if k != "seconds_per_query"}
                       for r in out["results"]])
    assert 0 < scores[0][0]["ndcg@10"] < 1  # a real measurement, not a trivial one
    assert scores[0] == scores[1]

    idx = tmp_path / "sharded"
    shutil.copytree(built["base"] / "sharded", idx)
    rag = RAG.open(idx, generator=ScriptedGenerator("A giraffid."))
    with TestClient(create_app(rag, ServerConfig())) as client:
        query = built["queries"][0]
        hits = client.get("/v1/search", params={"q": query, "k": 3}).json()["passages"]
        assert [h["passage_id"] for h in hits] == [h.passage.id for h in rag.search(query, k=3)]
        up = client.post("/v1/documents", files={"file": ("okapi.txt", b"The okapi is a "
                                                          b"giraffid of the Ituri rainforest.")})
        assert up.status_code == 201, up.text
        [doc] = up.json()["documents"]
        assert rag.index.has_document(doc["id"])
        top = client.get("/v1/search", params={"q": "okapi Ituri", "k": 1,
                                               "mode": "bm25"}).json()["passages"][0]
        assert top["name"] == "okapi.txt"
        assert client.delete(f"/v1/documents/{doc['id']}").status_code == 200
        assert not rag.index.has_document(doc["id"])
