"""The ingestion pipeline: stages run concurrently with bounded queues, a file is committed
whole even when it spans several batches, and a failure in any stage stops all of them
leaving every committed file and nothing else."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import ragline.ingest.pipeline as pipeline
from ragline.encode.hashing import HashEncoder
from ragline.index.folder import IndexFolder
from ragline.ingest.pipeline import ingest_paths


class Failing(HashEncoder):
    """A hash encoder that raises `error` on its `at`-th call."""

    def __init__(self, at: int, error: BaseException) -> None:
        super().__init__(dim=32)
        self.at, self.error, self.calls = at, error, 0

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return super().encode_passages(texts, batch_size)


def _file(folder: Path, name: str, passages: int) -> Path:
    folder.mkdir(exist_ok=True)
    f = folder / name
    # ≈ 100 words a passage
    f.write_text("\n\n".join(" ".join(f"{name} part{i} w{j}" for j in range(33))
                             for i in range(passages)))
    return f


def _jsonl(folder: Path, name: str, docs: int) -> Path:
    """One file of many documents: a file that spans several batches."""
    folder.mkdir(exist_ok=True)
    f = folder / name
    f.write_text("".join(json.dumps({"_id": f"{name}-{i}", "text": f"{name} document {i} "
                                     "about several things"}) + "\n" for i in range(docs)))
    return f


def _state(folder: IndexFolder) -> tuple[dict[str, int], int, int]:
    per_source: dict[str, int] = {}
    for d in folder.store.documents():
        per_source[Path(d.source).name] = per_source.get(Path(d.source).name, 0) + d.passages
    assert folder.dense is not None and folder.sparse is not None
    return per_source, folder.dense.ntotal, folder.sparse.ntotal


@pytest.mark.parametrize("error", [RuntimeError("encoder died"), KeyboardInterrupt()])
def test_a_failure_mid_file_leaves_committed_files_and_none_of_that_file(
        tmp_path: Path, error: BaseException) -> None:
    docs = tmp_path / "docs"
    small = [_file(docs, f"a{i}.txt", 1) for i in range(3)]
    big = _jsonl(docs, "big.jsonl", 12)  # three batches of 4 passages
    folder = IndexFolder.create(tmp_path / "idx", HashEncoder(dim=32).spec)
    ingest_paths(folder, HashEncoder(dim=32), small, batch_passages=4)
    before = _state(folder)
    encoder = Failing(at=3, error=error)  # the big file's third batch
    with pytest.raises(type(error)):
        ingest_paths(folder, encoder, [big], batch_passages=4)
    assert encoder.calls == 3
    assert not any(t.name in ("ragline-read", "ragline-commit") for t in threading.enumerate())
    # the in-memory additions of the big file were undone with its transaction
    assert _state(folder) == before and set(before[0]) == {"a0.txt", "a1.txt", "a2.txt"}
    folder.close()
    reopened = IndexFolder.open(tmp_path / "idx")
    assert _state(reopened) == before
    # and the file goes in whole the next time
    ingest_paths(reopened, HashEncoder(dim=32), [big], batch_passages=4)
    assert _state(reopened)[0]["big.jsonl"] == 12
    reopened.close()


def test_a_file_larger_than_a_batch_is_committed_in_one_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = _jsonl(tmp_path / "docs", "big.jsonl", 10)
    folder = IndexFolder.create(tmp_path / "idx", HashEncoder(dim=32).spec)
    commits = []
    real_commit = folder.store.commit
    monkeypatch.setattr(folder.store, "commit",
                        lambda: (commits.append(folder.store.n_passages()), real_commit()))
    report = ingest_paths(folder, HashEncoder(dim=32), [big], batch_passages=3)
    assert report.passages == 10 and commits == [10]
    folder.close()


def test_the_reader_runs_ahead_of_the_encoder_by_a_bounded_amount(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [_file(tmp_path / "docs", f"f{i:03d}.txt", 1) for i in range(60)]
    produced = []
    real_pieces = pipeline._Flow._pieces

    def counting(self: pipeline._Flow, f: Path, claimed: dict[str, str]):  # type: ignore[no-untyped-def]
        for piece in real_pieces(self, f, claimed):
            produced.append(piece)
            yield piece

    monkeypatch.setattr(pipeline._Flow, "_pieces", counting)
    flows: list[pipeline._Flow] = []
    real_init = pipeline._Flow.__init__

    def remember(self: pipeline._Flow, *a: object, **kw: object) -> None:
        real_init(self, *a, **kw)  # type: ignore[arg-type]
        flows.append(self)

    monkeypatch.setattr(pipeline._Flow, "__init__", remember)
    seen_ahead = []

    class Stalling(HashEncoder):
        def encode_passages(self, texts: list[str], batch_size: int = 32,
                            progress: bool = False) -> np.ndarray:
            q = flows[0].to_embed
            if len(seen_ahead) < 3:
                # wait (bounded) until the reader has filled its queue and must block
                for _ in range(200_000):
                    if q.full():
                        break
                seen_ahead.append(len(produced) - sum(len(t) for t in texts))
            return super().encode_passages(texts, batch_size)

    folder = IndexFolder.create(tmp_path / "idx", HashEncoder(dim=32).spec)
    report = ingest_paths(folder, Stalling(dim=32), files, batch_passages=1)
    assert len(report.added) == 60
    # read but not yet embedded: what sits in the queue, plus one in the reader's hand
    assert seen_ahead and max(seen_ahead) <= flows[0].to_embed.maxsize + 1
    folder.close()


def test_a_table_that_fails_midway_is_skipped_and_its_old_version_kept(tmp_path: Path) -> None:
    """A large table streams: some of its passages are embedded (and applied) before the
    loader meets a bad byte. The file is then skipped and rolled back, in the store and in
    the search indexes, and its previous version stays whole."""
    docs = tmp_path / "docs"
    docs.mkdir()
    table = docs / "ships.csv"
    rows = "".join(f"Ship {i},{1800 + i},{'oil and rope ' * 3}\n" for i in range(3000))
    table.write_text("ship,year,cargo\n" + rows)
    folder = IndexFolder.create(tmp_path / "idx", HashEncoder(dim=32).spec)
    ingest_paths(folder, HashEncoder(dim=32), [table], batch_passages=8)
    before = _state(folder)
    assert before[0]["ships.csv"] > 16
    # the new version: good rows past the encoding sniff (64 KB), then a byte UTF-8 refuses
    table.write_bytes(b"ship,year,cargo\n" + rows.encode() * 2 + b"Ship \xff,1,x\n")
    report = ingest_paths(folder, HashEncoder(dim=32), [table], batch_passages=8)
    assert [s for s, _ in report.skipped] and "ships.csv" in report.skipped[0][0]
    assert not report.added
    assert _state(folder) == before
    reopened = IndexFolder.open(tmp_path / "idx")
    assert _state(reopened) == before
