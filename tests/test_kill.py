"""SIGKILL anywhere: `ragline index` in each phase of a write, `serve` in the middle of an
upload, `train` in the middle of a checkpoint. After each kill the index opens, nothing
committed is lost, a file is either wholly in or wholly out, the next open leaves no temporary
file, and running the command again finishes with exactly one copy of everything.
bench/break_it.py kills at random points of every phase and prints the table."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from ragline import RAG

from conftest import THREE_DOCS, write_docs
from killer import (
    INDEX_PHASES,
    RUN_SERVER,
    RUN_TRAINING,
    count_calls,
    leftovers,
    run_killed,
    spawn_killed,
)
from serving import free_port

NEW_DOCS = {f"n{i}.txt": f"Harbour {i} shelters {i * 3} fishing boats. " * (6 + i)
            for i in range(6)}
NEW_ROWS = "".join(f'{{"id": "row/{i}", "text": "Row {i} tells of the lighthouse number {i}."}}\n'
                   for i in range(4))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A three-document index, a folder of new files, and what indexing them should give."""
    base = tmp_path_factory.mktemp("kill")
    docs = write_docs(base / "docs", THREE_DOCS)
    RAG.build(base / "idx", paths=[docs], encoder="hash").close()
    new = write_docs(base / "new", NEW_DOCS)
    (new / "rows.jsonl").write_text(NEW_ROWS)
    # small batches: several embedding batches and commits in one run
    (base / "ragline.toml").write_text("[index]\nbatch_passages = 2\n")
    return {"base": base, "idx": base / "idx", "new": new, "config": base / "ragline.toml"}


def expected(world: dict[str, Path], tmp_path: Path) -> dict[str, int]:
    """Passages per source file when nothing is killed."""
    ref = tmp_path / "reference"
    shutil.copytree(world["idx"], ref)
    with RAG.open(ref) as rag:
        rag.add([world["new"]])
        return _per_source(rag)


def _per_source(rag: RAG) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in rag.documents():
        out[Path(d.source).name] = out.get(Path(d.source).name, 0) + d.passages
    return out


def check_after_kill(index: Path, want: dict[str, int]) -> None:
    with RAG.open(index) as rag:
        assert leftovers(index) == []  # the open removed what the kill left
        have = _per_source(rag)
        for name in THREE_DOCS:  # committed before: never lost
            assert have.get(name) == want[name]
        for name, n in have.items():  # a file is wholly in or wholly out
            assert n == want[name], (name, n, want[name])
        n = rag.index.folder.store.counts()["passages"]
        assert rag.index.folder.dense is not None and rag.index.folder.dense.ntotal == n
        assert rag.index.folder.sparse is not None and rag.index.folder.sparse.ntotal == n
        assert rag.search("capital of France Paris", k=1)[0].passage.source.endswith("france.txt")


def finish_and_check(index: Path, new: Path, want: dict[str, int]) -> None:
    with RAG.open(index) as rag:
        rag.add([new])
        assert _per_source(rag) == want  # exactly one copy of everything
        counts = rag.index.folder.store.counts()
        assert counts["passages"] == sum(want.values())
        assert rag.index.folder.dense is not None and rag.index.folder.dense.ntotal == counts["passages"]
    assert leftovers(index) == []


@pytest.mark.parametrize("phase", list(INDEX_PHASES))
def test_index_killed_in_each_phase(world: dict[str, Path], tmp_path: Path, phase: str) -> None:
    want = expected(world, tmp_path)
    idx = tmp_path / "idx"
    shutil.copytree(world["idx"], idx)
    argv = ["-q", "--config", str(world["config"]), "index", str(world["new"]), "--index", str(idx)]
    calls = count_calls(phase, argv)
    shutil.rmtree(idx)
    shutil.copytree(world["idx"], idx)
    # in the middle of the phase (bench/break_it.py kills at random calls of it)
    assert run_killed(phase, (calls + 1) // 2, argv) == -signal.SIGKILL, phase
    check_after_kill(idx, want)
    finish_and_check(idx, world["new"], want)


def test_index_killed_with_every_stage_in_flight(world: dict[str, Path], tmp_path: Path) -> None:
    """The pipeline's committer mirrors each piece into the in-memory indexes while the reader
    and the encoder work ahead, and rows.jsonl spans two pieces of one transaction: kill at
    the first, a middle and the last of those updates."""
    want = expected(world, tmp_path)
    idx = tmp_path / "idx"
    argv = ["-q", "--config", str(world["config"]), "index", str(world["new"]), "--index", str(idx)]
    shutil.copytree(world["idx"], idx)
    calls = count_calls("index-update", argv)
    assert calls > 4  # pieces of several files: the stages overlap
    for nth in sorted({1, calls // 3, 2 * calls // 3, calls}):
        shutil.rmtree(idx)
        shutil.copytree(world["idx"], idx)
        assert run_killed("index-update", nth, argv) == -signal.SIGKILL, nth
        check_after_kill(idx, want)
    finish_and_check(idx, world["new"], want)


def test_index_killed_during_creation_is_finished_by_the_next_run(world: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    idx = tmp_path / "fresh"
    rc = run_killed("manifest", 1, ["-q", "index", str(world["new"]), "--index", str(idx),
                                    "--encoder", "hash"])
    assert rc == -signal.SIGKILL
    with RAG.build(idx, paths=[world["new"]], encoder="hash") as rag:
        assert rag.index.folder.store.counts()["documents"] == len(NEW_DOCS) + 4
    assert leftovers(idx) == []


def test_serve_killed_mid_upload_leaves_no_file_behind(world: dict[str, Path],
                                                       tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(world["idx"], idx)
    port = free_port()
    proc = spawn_killed("commit", 1, [str(idx), str(port)], RUN_SERVER)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for the server to listen
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):  # the server dies inside the upload's commit
            httpx.post(f"{url}/v1/documents", timeout=30,
                       files={"file": ("spain.txt", b"Madrid is the capital of Spain.")})
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list((idx / "uploads").iterdir()), "the upload's file was written before the commit"
    with RAG.open(idx) as rag:
        assert list((idx / "uploads").iterdir()) == []  # the orphan went at open
        assert rag.index.folder.store.counts()["documents"] == 3
        assert leftovers(idx) == []
    from fastapi.testclient import TestClient

    from ragline.server import create_app

    with RAG.open(idx) as rag, TestClient(create_app(rag)) as client:  # uploading again works
        r = client.post("/v1/documents", files={"file": ("spain.txt", b"Madrid is the capital "
                                                                      b"of Spain.")})
        assert r.status_code == 201 and r.json()["status"] == "added"


@pytest.mark.parametrize("target", ["ragline.model.train:save_optimizer",
                                    "ragline.index.folder:IndexFolder.save_manifest"])
def test_train_killed_mid_checkpoint_keeps_the_last_one(world: dict[str, Path], tmp_path: Path,
                                                        target: str) -> None:
    from ragline.model.lm import CausalLM

    idx = tmp_path / "idx"
    shutil.copytree(world["idx"], idx)
    assert run_killed(target, 2, [str(idx), "3"], run=RUN_TRAINING) == -signal.SIGKILL
    with RAG.open(idx) as rag:
        trained = rag.index.manifest.trained
        assert trained.step == 1  # the first checkpoint, whole
        CausalLM.from_folder(idx / trained.generator.path, device="cpu")
        assert sorted(p.name for p in (idx / "model").iterdir()) == ["step-000001"]
        assert leftovers(idx) == []
        assert rag.index.folder.store.counts()["documents"] == 3
    assert run_killed(target, 10**6, [str(idx), "3"], run=RUN_TRAINING) == 0  # resumes
    with RAG.open(idx) as rag:
        assert rag.index.manifest.trained.step == 3
        assert sorted(p.name for p in (idx / "model").iterdir()) == ["step-000003"]


@pytest.mark.parametrize("phase", ["commit", "index-update", "sparse-save", "manifest"])
def test_a_sharded_index_killed_mid_write_opens_and_the_rerun_finishes_it(
        world: dict[str, Path], tmp_path: Path, phase: str) -> None:
    """Shards commit one after another: a kill leaves some shards with the new files and
    some without; the index opens with everything it had, and the next run finishes the
    shards it had not reached, one copy of everything."""
    want = expected(world, tmp_path)
    base = tmp_path / "s3"
    assert run_killed("manifest", 10**6, ["-q", "index", str(world["base"] / "docs"), "--index",
                                          str(base), "--shards", "3", "--encoder",
                                          "hash"]) == 0
    argv = ["-q", "--config", str(world["config"]), "index", str(world["new"]), "--index",
            str(tmp_path / "s")]
    shutil.copytree(base, tmp_path / "s")
    calls = count_calls(phase, argv)
    shutil.rmtree(tmp_path / "s")
    shutil.copytree(base, tmp_path / "s")
    assert run_killed(phase, (calls + 1) // 2, argv) == -signal.SIGKILL
    with RAG.open(tmp_path / "s") as rag:
        have = _per_source(rag)
        for name in THREE_DOCS:
            assert have.get(name) == want[name]
    assert run_killed(phase, 10**6, argv) == 0
    with RAG.open(tmp_path / "s") as rag:
        assert _per_source(rag) == want
        assert rag.index.counts()["passages"] == sum(want.values())
