"""One Ray actor per shard serves that shard's part of every search (the `Shard` methods of
ragline.retrieve.sharded); the driver fans out and merges.

Failures: Ray restarts a shard actor that dies (up to MAX_RESTARTS times, reopening its
folder) and retries the calls it was serving, so a query that meets a dying actor still
returns whole results. A shard that stays down (its restarts spent, or its folder unreadable)
raises ShardUnavailableError naming it; with `partial=True` the query answers from the other
shards and logs which one it left out. Handles are passed to whoever needs them (never looked
up by name), so nothing waits on an actor that does not exist.

    collection = ray_collection(sharded_index, address="local")
    Searcher(index, collection=collection)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ragline.errors import ShardUnavailableError
from ragline.index.folder import IndexFolder
from ragline.index.index import Index
from ragline.index.shards import ShardedIndex
from ragline.index.sparse import BM25Stats
from ragline.retrieve.base import Ranked
from ragline.retrieve.collection import Rows
from ragline.retrieve.sharded import LocalShard, ShardedCollection
from ragline.scale.cluster import connect

MAX_RESTARTS = 3
MAX_CONCURRENCY = 8   # calls one shard actor serves at once (threads)
CALL_TIMEOUT_S = 120.0  # a shard that answers nothing for this long counts as down


class ShardServer:
    """The actor: a shard folder opened read-only in its own process."""

    def __init__(self, path: str) -> None:
        self.folder = IndexFolder.open(Path(path))
        self.folder.refresh()  # note the generation it opened at
        self.shard = LocalShard(self.folder)

    def where(self) -> tuple[str, int]:
        """(node id, process id): where this shard is served."""
        import os

        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    # LocalShard's query-start calls catch up with what the writer (another process:
    # `ragline serve` taking an upload, `ragline index`) committed meanwhile

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]:
        return self.shard.dense_top(qvecs, n)

    def bm25_stats(self, token_lists: list[list[str]]) -> list[BM25Stats]:
        return self.shard.bm25_stats(token_lists)

    def bm25_top(self, token_lists: list[list[str]], n: int,
                 stats: list[BM25Stats] | None) -> list[Ranked]:
        return self.shard.bm25_top(token_lists, n, stats)

    def passages(self, rowids: list[int]) -> Rows:
        return self.shard.passages(rowids)

    def size(self) -> int:
        return self.shard.size()


class RayShard:
    """A Shard whose calls go to a ShardServer actor."""

    def __init__(self, handle: Any, name: str, timeout: float = CALL_TIMEOUT_S) -> None:
        self.handle = handle
        self.name = name
        self.timeout = timeout

    def _call(self, method: str, *args: Any) -> Any:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            return ray.get(getattr(self.handle, method).remote(*args), timeout=self.timeout)
        except (RayActorError, GetTimeoutError) as e:
            why = (f"no answer in {self.timeout:.0f} s" if isinstance(e, GetTimeoutError)
                   else f"its actor died {MAX_RESTARTS + 1} times or cannot open the folder")
            raise ShardUnavailableError(
                f"{self.name} is down ({why}); check that the folder is readable from every "
                "node, or search with --partial to leave it out") from None

    def where(self) -> tuple[str, int]:
        node, pid = self._call("where")
        return str(node), int(pid)

    def dense_top(self, qvecs: np.ndarray, n: int) -> list[Ranked]:
        return list(self._call("dense_top", qvecs, n))

    def bm25_stats(self, token_lists: list[list[str]]) -> list[BM25Stats]:
        return list(self._call("bm25_stats", token_lists))

    def bm25_top(self, token_lists: list[list[str]], n: int,
                 stats: list[BM25Stats] | None) -> list[Ranked]:
        return list(self._call("bm25_top", token_lists, n, stats))

    def passages(self, rowids: list[int]) -> Rows:
        return dict(self._call("passages", rowids))

    def size(self) -> int:
        return int(self._call("size"))


def start_shards(index: Index, address: str | None = None,
                 timeout: float = CALL_TIMEOUT_S) -> list[RayShard]:
    """One actor per shard, spread over the cluster's nodes; waits until each has opened
    its folder (a shard that cannot is a ShardUnavailableError now, not at the first query)."""
    ray = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    server = ray.remote(ShardServer)
    options = dict(
        num_cpus=0,  # it waits on queries; CPU-bound work would starve beside the encoders
        # a hybrid query's dense and BM25 parts run side by side in the actor, as they do in
        # one process (FAISS and the BM25 kernel release the GIL; reads share the folder)
        max_concurrency=MAX_CONCURRENCY,
        max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
    # shards dealt round-robin over the nodes. Neither "SPREAD" nor soft node affinity holds
    # for actors that need no CPU: Ray 2.60 put all three of a test's actors on one node half
    # the time. Hard affinity does; the price is that a shard whose node is lost stays down
    # (a named ShardUnavailableError, or left out with --partial) until the actors are started
    # again, while a shard whose process dies is restarted on its node.
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    # an index that is not sharded is served as a shard of its own
    parts = index.shards if isinstance(index, ShardedIndex) else [index]
    shards = [RayShard(server.options(**options, scheduling_strategy=NodeAffinitySchedulingStrategy(
                  nodes[i % len(nodes)], soft=False)).remote(str(s.path.resolve())),
              f"shard {i} ({s.path})", timeout) for i, s in enumerate(parts)]
    for s in shards:
        s.size()
    return shards


def ray_collection(index: Index, address: str | None = None,
                   partial: bool = False) -> ShardedCollection:
    """A ShardedCollection whose shards are Ray actors."""
    return ShardedCollection(start_shards(index, address), partial=partial)
