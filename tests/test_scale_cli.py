"""The command line on a local Ray instance (started by the command, 2 CPUs): `index --shards
--ray` builds the index an in-process run builds, and `search --ray` answers as in-process
search does. (A 2-node cluster: tests/test_scale.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ragline import RAG

from shardkit import per_shard, scifact_files


def _ragline(*argv: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "ragline.cli", "-q", *argv], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_index_and_search_on_a_local_ray_instance(tmp_path: Path) -> None:
    docs, queries = scifact_files(tmp_path / "docs", n_docs=40, per_file=10)
    here, there = tmp_path / "here", tmp_path / "there"
    common = ["--shards", "2", "--encoder", "hash"]
    _ragline("index", str(docs), "--index", str(here), *common)
    out = _ragline("index", str(docs), "--index", str(there), *common, "--ray", "--workers", "2")
    assert "40 document(s)" in out.stdout
    with RAG.open(here) as a, RAG.open(there) as b:
        assert per_shard(a) == per_shard(b)
    for mode in ("bm25", "hybrid"):
        local = json.loads(_ragline("search", str(here), queries[0], "--json", "--mode",
                                    mode).stdout)
        remote = json.loads(_ragline("search", str(there), queries[0], "--json", "--mode",
                                     mode, "--ray").stdout)
        assert [h["passage_id"] for h in local] == [h["passage_id"] for h in remote]
