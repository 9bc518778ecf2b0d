"""Shard folders that do not belong where they are found: a sharded index re-created over
another's shard folders, a top-level manifest whose shard list was trimmed or reordered, shard
folders whose manifest is lost. Each is refused by name (exit 1, or 2 for a misuse), before the
encoder loads, and nothing stored is lost or stored twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragline.cli import main
from ragline.errors import IndexCorruptError, RaglineError
from ragline.index.index import Index
from ragline.index.shards import ShardedIndex

from conftest import THREE_DOCS, write_docs


@pytest.fixture
def s4(tmp_path: Path) -> Path:
    docs = write_docs(tmp_path / "docs", {**THREE_DOCS, **{f"extra{i}.txt": f"Extra note {i} "
                                                           f"about topic {i * 7}." for i in range(8)}})
    assert main(["-q", "index", str(docs), "--index", str(tmp_path / "s4"), "--shards", "4",
                 "--encoder", "hash"]) == 0
    return tmp_path / "s4"


def _counts(path: Path) -> dict[str, int]:
    with Index.open(path) as index:
        return index.counts()


def test_every_shard_records_its_number_and_the_count(s4: Path) -> None:
    for i in range(4):
        m = json.loads((s4 / f"shard-{i:03d}" / "manifest.json").read_text())
        assert m["shard"] == {"number": i, "of": 4}


@pytest.mark.parametrize("shards", [8, 4, 2])
def test_re_creating_over_another_index_s_shards_is_refused(s4: Path, tmp_path: Path,
                                                            shards: int,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(s4, copy)
    (copy / "manifest.json").unlink()
    x = write_docs(tmp_path / "x", {"x.txt": "A new file."})
    before = sorted(p.name for p in copy.iterdir())
    # the default encoder is never loaded: the refusal comes first
    assert main(["-q", "index", str(x), "--index", str(copy), "--shards", str(shards)]) == 1
    err = capsys.readouterr().err
    assert "belongs to another index" in err or "lost" in err, err
    assert sorted(p.name for p in copy.iterdir()) == before
    assert main(["-q", "search", str(copy), "note"]) == 1
    assert "manifest is lost" in capsys.readouterr().err


def test_a_trimmed_or_reordered_shard_list_is_named_damage(s4: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    before = _counts(s4)
    path = s4 / "manifest.json"
    good = path.read_text()
    for change in (lambda names: names[:3], lambda names: names[::-1],
                   lambda names: [names[0], names[0], names[2], names[3]]):
        m = json.loads(good)
        m["shards"] = change(m["shards"])
        path.write_text(json.dumps(m))
        with pytest.raises(IndexCorruptError, match="damaged manifest"):
            Index.open(s4)
        assert main(["-q", "info", str(s4)]) == 1
        assert "damaged manifest" in capsys.readouterr().err
        assert main(["-q", "index", str(s4.parent / "docs"), "--index", str(s4)]) == 1
    path.write_text(good)  # restored from the backup: everything is there, once
    assert _counts(s4) == before


def test_shards_made_before_they_were_numbered_are_numbered_on_open(s4: Path) -> None:
    for i in range(4):
        p = s4 / f"shard-{i:03d}" / "manifest.json"
        m = json.loads(p.read_text())
        del m["shard"]
        p.write_text(json.dumps(m))
    with Index.open(s4) as index:
        assert isinstance(index, ShardedIndex) and index.counts()["documents"] == 11
    assert json.loads((s4 / "shard-002" / "manifest.json").read_text())["shard"] == {
        "number": 2, "of": 4}


def test_a_killed_sharded_creation_is_finished_not_refused(tmp_path: Path) -> None:
    from killer import run_killed

    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    args = ["-q", "index", str(docs), "--index", str(tmp_path / "s"), "--shards", "3",
            "--encoder", "hash"]
    # the third manifest write: two shards made, the third and the top one not yet
    assert run_killed("manifest", 3, args) == -9
    assert not (tmp_path / "s" / "manifest.json").exists()
    assert main(args) == 0
    assert _counts(tmp_path / "s")["documents"] == 3


def test_info_of_a_sharded_index_sums_its_shards(s4: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    top = s4 / "manifest.json"
    m = json.loads(top.read_text())
    m["created"] = m["updated"] = created = "2026-01-01T00:00:00Z"  # made long ago
    top.write_text(json.dumps(m))
    with Index.open(s4) as index:
        some = index.documents()[0]
        index.remove_documents([some.id])
        info = index.info()
    assert info["counts"]["documents"] == 10
    assert sum(s["counts"]["documents"] for s in info["shards"]) == 10
    assert info["updated"] > created
    assert info["dense_index"].startswith("4 shards")
    assert len(info["sparse"]["segments"]) == sum(s["segments"] for s in info["shards"])


def test_a_plain_index_over_shard_folders_is_refused(s4: Path, tmp_path: Path) -> None:
    (s4 / "manifest.json").unlink()
    with pytest.raises(RaglineError, match="manifest is lost"):
        Index.open_or_create(s4, encoder="hash")


@pytest.mark.parametrize("damage", ["missing", "corrupt store"])
def test_partial_searches_without_a_missing_or_damaged_shard(
        s4: Path, damage: str, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    victim = s4 / "shard-001"
    if damage == "missing":
        shutil.rmtree(victim)
    else:
        (victim / "store.sqlite").write_bytes(b"not a database" * 100)
    assert main(["-q", "search", str(s4), "Extra note"]) == 1
    assert "--partial" in capsys.readouterr().err or damage != "missing"
    assert main(["search", str(s4), "Extra note", "--partial", "--json"]) == 0
    assert "shard-001" in caplog.text and json.loads(capsys.readouterr().out)
    with Index.open(s4, partial=True) as index:
        assert index.down == ("shard-001",)
        with pytest.raises(RaglineError, match="a write needs every shard"):
            index.add([s4.parent / "docs"])


def test_settings_advice_names_the_sharded_index_not_a_shard(s4: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    assert main(["-q", "index", str(s4.parent / "docs"), "--index", str(s4), "--dense",
                 "hnsw"]) == 2
    err = capsys.readouterr().err
    assert f"ragline reindex {s4} --dense hnsw" in err and "shard-000" not in err
