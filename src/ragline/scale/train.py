"""Data-parallel end-to-end training on Ray Train, retrieval served by the shard actors.

    result = ray_train("my-index", examples, TrainConfig(steps=100), Config(), workers=2)

Every worker (a Ray Train `TorchTrainer` worker, torch.distributed over gloo, or NCCL on
GPUs) builds the same trainer from the same seed: the generator and the question encoder are
replicated. Each takes an equal share of every batch; after the backward pass the gradients
(and the losses, for the log) are averaged over the workers with one all-reduce, so every
replica takes the same step the single-process run takes on the whole batch: the two runs
follow the same loss curve, up to the order of float additions. Rank 0 evaluates and writes
checkpoints into the index (which every worker must see: a shared filesystem on a cluster).

Retrieval: the driver starts one actor per shard (ragline.scale.actors) and hands every worker
the handles, so no worker looks an actor up by name and none can wait on retrieval workers
that were never started (the hang transformers' RagRayDistributedRetriever users met).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragline.config import Config, ScaleConfig
from ragline.errors import ConfigError, RaglineError
from ragline.index.index import Index
from ragline.model.train_config import TrainConfig, TrainResult
from ragline.qa import QAExample
from ragline.scale.actors import start_shards
from ragline.scale.cluster import connect, has_gpus

log = logging.getLogger(__name__)


def ray_train(path: Path, examples: list[QAExample], cfg: TrainConfig, config: Config,
              workers: int = 2, restart: bool = False, progress: bool = True) -> TrainResult:
    """Train the index at `path` on `workers` Ray Train workers; returns rank 0's result."""
    per_step = cfg.batch_size * cfg.grad_accum
    if per_step % workers:
        raise ConfigError(f"a step's {per_step} questions (batch size × grad accumulation) must "
                          f"split evenly over {workers} workers; choose a multiple of {workers}")
    # a Ray started here needs a CPU beside the workers, for Ray Train's own controller
    ray = connect(config.scale.ray, num_cpus=max(os.cpu_count() or 1, workers + 1))
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    index = Index.open(path, batch_passages=config.index.batch_passages)
    storage = tempfile.mkdtemp(prefix="ragline-ray-train-")
    try:
        with index.write_lock():  # other writers wait; rank 0 writes the checkpoints
            shards = start_shards(index, config.scale.ray)
            gpus = has_gpus(ray)
            trainer = TorchTrainer(
                _worker,  # type: ignore[arg-type]  # Ray Train V2 returns rank 0's value
                train_loop_config={"path": str(Path(path).resolve()), "examples": examples,
                                   "cfg": cfg, "config": _worker_config(config, gpus),
                                   "shards": shards, "restart": restart,
                                   "progress": progress},
                scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus),
                run_config=RunConfig(storage_path=storage, name="ragline-train"))
            outcome = trainer.fit()
    finally:
        index.close()
        shutil.rmtree(storage, ignore_errors=True)
    if outcome.error is not None:
        raise RaglineError(f"training on Ray failed: {outcome.error}") from None
    # rank 0's return value (Ray Train V2, the default in 2.60; its typing still says V1's)
    m = getattr(outcome, "return_value", None) or {}
    checkpoint = m.get("checkpoint")
    return TrainResult(step=int(m.get("step", 0)), losses=list(m.get("losses", [])),
                       evals=list(m.get("evals", [])),
                       checkpoint=Path(checkpoint) if checkpoint else None)


def _worker_config(config: Config, gpus: bool) -> Config:
    """A worker searches through the actors it is given and never starts its own."""
    model = replace(config.model, device="cuda" if gpus else "cpu")
    return replace(config, scale=ScaleConfig(), model=model)


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    """One Ray Train worker: the same trainer as every other, a share of every batch."""
    import ray.train
    import torch.distributed as dist

    from ragline.model.train import prepare_trainer, run_training
    from ragline.rag import RAG
    from ragline.retrieve.sharded import ShardedCollection

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    with RAG.open(job["path"], config=job["config"]) as rag:
        searcher = rag.searcher.using(collection=ShardedCollection(job["shards"]))
        trainer = prepare_trainer(searcher, rag._rag_slot(), job["cfg"], job["restart"])
        trainer.average = lambda tensors: _average(dist, tensors, world)
        result = run_training(trainer, job["examples"], job["progress"], part=(rank, world))
    return {"step": result.step, "losses": result.losses, "evals": result.evals,
            "checkpoint": str(result.checkpoint) if result.checkpoint else ""}


def _average(dist: Any, tensors: list[Any], world: int) -> None:
    """Average tensors over the workers in place, in one all-reduce of their concatenation."""
    import torch

    device = tensors[0].device  # NCCL reduces CUDA tensors only: everything on the grads' device
    flat = torch.cat([t.detach().reshape(-1).float().to(device)
                      for t in tensors])  # (total elements,)
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t).to(t.dtype))
        offset += n
