"""Ray, on a 2-node cluster simulated on this machine (ray.cluster_utils.Cluster, 2 CPUs a
node): shard actors answer as one index does, a shard actor killed mid-query is restarted and
the query retried, a shard that stays down is named (or left out when asked), an ingestion
whose embedding workers are killed finishes with the same index, and 2 data-parallel training
workers follow the single process's loss curve. The CLI on a local Ray instance:
tests/test_scale_cli.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
from ray.cluster_utils import Cluster

from ragline import RAG
from ragline.config import Config, IndexConfig, ModelConfig, ScaleConfig
from ragline.errors import ShardUnavailableError
from ragline.index.index import Index
from ragline.ingest.pipeline import shard_of
from ragline.model.train import TrainConfig
from ragline.retrieve.sharded import ShardedCollection
from ragline.scale import ingest as ray_ingestion
from ragline.scale.actors import RayShard
from ragline.scale.train import ray_train

from conftest import write_docs
from shardkit import assert_same_results, per_shard, scifact_files


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    c.add_node(num_cpus=2)
    c.wait_for_nodes()  # else the first test may see one node, and place every actor on it
    ray.init(address=c.address, namespace="ragline", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("ray")
    docs, queries = scifact_files(base / "docs", n_docs=60, per_file=10)
    RAG.build(base / "single", paths=[docs], encoder="minilm").close()
    with Index.open_or_create(base / "sharded", IndexConfig(), "minilm", paths=[docs],
                              shards=3) as index:
        index.add([docs])
    return {"base": base, "docs": docs, "queries": queries[:8],
            "ray": Config(scale=ScaleConfig(ray=cluster.address))}


def _shards(rag: RAG) -> list[RayShard]:
    collection = rag.searcher.collection
    assert isinstance(collection, ShardedCollection)
    return [s for s in collection.shards if isinstance(s, RayShard)]


def test_shard_actors_on_two_nodes_answer_as_one_index(built: dict[str, Any]) -> None:
    with RAG.open(built["base"] / "single") as single, \
            RAG.open(built["base"] / "sharded", config=built["ray"]) as sharded:
        shards = _shards(sharded)
        assert len(shards) == 3
        assert len({s.where()[0] for s in shards}) == 2  # spread over both nodes
        assert_same_results(single, sharded, built["queries"])


def test_shard_actors_see_what_the_writer_commits(built: dict[str, Any], tmp_path: Path) -> None:
    """`serve --ray` takes uploads in its own process while the actors search: an actor
    catches up with its shard's store before a query (a document added, then removed)."""
    idx = tmp_path / "sharded"
    shutil.copytree(built["base"] / "sharded", idx)
    note = write_docs(tmp_path / "new", {"okapi.txt": "The okapi is a giraffid mammal native "
                                                      "to the Ituri rainforest of Congo."})
    with RAG.open(idx, config=built["ray"]) as rag:
        assert _shards(rag)  # the actors are up before the write
        rag.add([note])
        hits = rag.search("okapi giraffid Ituri rainforest", k=1, mode="bm25")
        assert hits and hits[0].passage.source.endswith("okapi.txt")
        rag.remove(str(note / "okapi.txt"))
        hits = rag.search("okapi giraffid Ituri rainforest", k=1, mode="bm25")
        assert not hits or not hits[0].passage.source.endswith("okapi.txt")


def test_a_shard_actor_killed_mid_query_is_restarted_and_the_query_retried(
        built: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    query = built["queries"][0]
    with RAG.open(built["base"] / "single") as single, \
            RAG.open(built["base"] / "sharded", config=built["ray"]) as sharded:
        victim = _shards(sharded)[1]
        _, pid = victim.where()
        stats = victim.bm25_stats

        def stats_then_die(tokens: list[list[str]]) -> Any:
            out = stats(tokens)
            os.kill(pid, signal.SIGKILL)  # between the query's two rounds
            return out

        monkeypatch.setattr(victim, "bm25_stats", stats_then_die)
        got = [(h.passage.id, h.score) for h in sharded.search(query, k=10, mode="bm25")]
        want = [(h.passage.id, h.score) for h in single.search(query, k=10, mode="bm25")]
        assert [i for i, _ in got] == [i for i, _ in want]
        assert victim.where()[1] != pid  # a new process serves the shard


def test_a_shard_that_stays_down_is_named_or_left_out(built: dict[str, Any],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    query = built["queries"][1]
    with RAG.open(built["base"] / "sharded", config=built["ray"]) as sharded:
        victim = _shards(sharded)[2]
        ray.kill(victim.handle, no_restart=True)
        with pytest.raises(ShardUnavailableError, match=r"shard 2 \(.*shard-002\) is down"):
            sharded.search(query, k=5, mode="hybrid")
        collection = sharded.searcher.collection
        assert isinstance(collection, ShardedCollection)
        collection.partial = True
        with caplog.at_level(logging.WARNING):
            hits = sharded.search(query, k=5, mode="hybrid")
        assert hits and all(shard_of(h.passage.doc_id, 3) != 2 for h in hits)
        assert "shard 2" in caplog.text and "2 of 3 shards answered" in caplog.text


def _embedding_workers() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if "_Embedder" in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def test_ingestion_whose_embedding_workers_are_killed_finishes_the_same(
        built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = tmp_path / "ray-built"
    killed: list[int] = []
    after_kill = []
    take = ray_ingestion._Assembler.take

    def take_then_kill(self: Any, batch: Any) -> int:
        n = take(self, batch)
        if killed:
            after_kill.append(n)
        else:  # after the first batch came back: every embedding worker dies once
            for p in _embedding_workers():
                killed.append(p.pid)
                p.send_signal(signal.SIGKILL)
        return n

    monkeypatch.setattr(ray_ingestion._Assembler, "take", take_then_kill)
    with Index.open_or_create(idx, IndexConfig(), "minilm", paths=[built["docs"]],
                              shards=3) as index:
        try:
            ray_ingestion.ray_ingest(index, [built["docs"]], built["ray"].scale.ray,
                                     workers=2, batch_passages=8)
        except Exception:  # noqa: BLE001 - Ray gave up: the re-run below must finish the job
            pass
        monkeypatch.setattr(ray_ingestion._Assembler, "take", take)
        again = ray_ingestion.ray_ingest(index, [built["docs"]], built["ray"].scale.ray,
                                         workers=2, batch_passages=8)
    assert killed and sum(after_kill) > 0, "no embedding worker was killed mid-job"
    assert not again.skipped
    with RAG.open(idx) as rag, RAG.open(built["base"] / "sharded") as ref:
        assert per_shard(rag) == per_shard(ref)  # nothing lost, nothing twice
        assert rag.index.counts() == ref.index.counts()
        assert_same_results(ref, rag, built["queries"][:3])


def test_two_training_workers_follow_the_single_process_loss_curve(
        built: dict[str, Any], tmp_path: Path) -> None:
    from test_rag_train import DOCS, QA, _lm

    docs = write_docs(tmp_path / "docs", DOCS)
    with Index.open_or_create(tmp_path / "one", IndexConfig(), "minilm", paths=[docs],
                              shards=2) as index:
        index.add([docs])
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    _lm().save(tmp_path / "lm")
    model = ModelConfig(generator=str(tmp_path / "lm"), device="cpu", adapter="none")
    tc = TrainConfig(model="rag-sequence", k=2, steps=6, batch_size=2, lr=2e-2,
                     lr_question_encoder=1e-4, held_out=0.0, calibrate=False)
    with RAG.open(tmp_path / "one", config=Config(model=model)) as rag:
        alone = rag.train(QA, tc, progress=False)
    config = Config(model=model, scale=built["ray"].scale)
    pair = ray_train(tmp_path / "two", QA, tc, config, workers=2, progress=False)
    assert len(alone.losses) == len(pair.losses) == 6
    assert alone.losses[-1] < alone.losses[0] - 2.0  # it learns
    for a, b in zip(alone.losses, pair.losses, strict=True):
        assert abs(a - b) <= 0.02 * a, (alone.losses, pair.losses)
    with Index.open(tmp_path / "two") as index:
        trained = index.manifest.trained
        assert trained is not None and trained.step == 6
        assert pair.checkpoint == tmp_path / "two" / trained.path


def test_ray_ingestion_reports_duplicates_as_one_process_does(built: dict[str, Any],
                                                              tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "Alpha passage about harbours."},
            {"id": "b", "text": "Beta passage about lighthouses."},
            {"id": "c", "text": "Gamma passage about tides."}]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (docs / "two.jsonl").write_text(json.dumps(rows[1]) + "\n" + json.dumps(rows[2]) + "\n")
    reports = []
    for name, run in (("here", None), ("ray", built["ray"].scale.ray)):
        with Index.open_or_create(tmp_path / name, IndexConfig(), "hash", paths=[docs],
                                  shards=2) as index:
            report = (index.add([docs]) if run is None
                      else ray_ingestion.ray_ingest(index, [docs], run, workers=1))
            reports.append((sorted(report.duplicates), report.documents,
                            index.counts()["documents"]))
    assert reports[0] == reports[1]
    # b and c are one.jsonl's: two.jsonl adds nothing, whichever shard each lands in
    assert reports[0][1:] == (3, 3) and [d for _, d in reports[0][0]] == ["b", "c"]
