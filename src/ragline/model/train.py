"""End-to-end fine-tuning of the RAG model on (question, answer) pairs (Lewis et al. 2020, §2.4).

The question encoder q(x) and the generator learn by minimizing the negative marginal
log-likelihood -log p(y|x) (RAG-Sequence or RAG-Token); the passage encoder and the index stay
frozen, so nothing has to be re-embedded. Checkpoints are folders of safetensors inside the
index (model/step-NNNNNN/), recorded in its manifest, which `ask` then uses.

    result = fine_tune(searcher, rag_slot, examples, TrainConfig(model="rag-token", steps=200))
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ragline.config import DEFAULT_PRIOR_SCALE
from ragline.errors import ConfigError, ModelUnavailableError
from ragline.index.manifest import TrainedPart, TrainedState, now
from ragline.index.upkeep import CHECKPOINTS
from ragline.model.adapters import ADAPTER_GGUF, add_lora, export_gguf, has_adapter, save_adapter
from ragline.model.generators import RagModelSlot, trained_generator
from ragline.model.lm import CausalLM
from ragline.model.marginal import answer_prior_mass, calibrate_scale
from ragline.model.optim_state import load_optimizer_state, save_optimizer
from ragline.model.qencoder import QuestionEncoder
from ragline.model.rag_model import RagModel
from ragline.model.train_config import TrainConfig, TrainResult
from ragline.qa import QAExample, answer_in, exact_match, f1_score, split_by_group, spread
from ragline.registry import LLMS
from ragline.retrieve.searcher import Searcher
from ragline.types import Hit

log = logging.getLogger(__name__)


def _batch_indices(n: int, step: int, batch: int, seed: int) -> list[int]:
    """The examples of optimizer step `step`: epochs of seeded permutations laid end to end,
    so a resumed run sees exactly the batches an uninterrupted one would."""
    out = []
    for pos in range(step * batch, (step + 1) * batch):
        epoch, i = divmod(pos, n)
        out.append(int(np.random.default_rng(seed + epoch).permutation(n)[i]))
    return out


class Trainer:
    """Holds the trainable pieces; `fine_tune` (and `RAG.train`) is the usual entry point.
    `searcher` retrieves with the index frozen; checkpoints go into its index."""

    def __init__(self, searcher: Searcher, lm: CausalLM, qenc: QuestionEncoder | None,
                 cfg: TrainConfig, max_passage_tokens: int = 160,
                 max_new_tokens: int = 24, prior_scale: float = DEFAULT_PRIOR_SCALE) -> None:
        self.searcher = searcher
        self.cfg = cfg
        self.lm = lm
        self.bf16 = _use_bf16(cfg.precision, lm.device)
        if cfg.lora_rank and not has_adapter(lm):
            if self.bf16:  # frozen base weights in bf16 halve their memory; adapters stay fp32
                lm.model.to(torch.bfloat16)
            add_lora(lm, cfg.lora_rank, cfg.lora_alpha)
        self.qenc = qenc.to(lm.device) if qenc is not None else None
        self.model = RagModel(lm, max_passage_tokens=max_passage_tokens,
                              max_new_tokens=max_new_tokens, prior_scale=prior_scale)
        self.model.prior.to(lm.device)
        # The token embedding (tied to the output projection) stays frozen: it holds most of a
        # small model's weights (170M of Gemma 3 270M's 268M, a 262k vocabulary) and a few
        # thousand answers cannot train it, while its Adam state would triple the memory.
        emb = lm.model.get_input_embeddings()
        emb.weight.requires_grad_(False)
        groups = [{"params": [p for p in lm.model.parameters() if p.requires_grad],
                   "lr": cfg.lr},
                  {"params": list(self.model.prior.parameters()), "lr": cfg.lr_prior}]
        if self.qenc is not None:
            groups.append({"params": list(self.qenc.parameters()),
                           "lr": cfg.lr_question_encoder})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        self.step = 0
        # data-parallel training (ragline.scale.train): averages tensors over the workers in
        # place; each worker then holds the gradient of the whole batch. None: one process.
        self.average: Callable[[list[torch.Tensor]], None] | None = None

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for g in self.optimizer.param_groups for p in g["params"])

    # ------------------------------------------------------------ one step

    def _encode(self, questions: Sequence[str]) -> torch.Tensor:
        if self.qenc is not None:
            return self.qenc(questions)  # (B, d), carries the gradient
        vecs = self.searcher.encode_queries(questions)
        return torch.from_numpy(vecs).to(self.lm.device)

    def _retrieve(self, q: torch.Tensor) -> tuple[list[list[Hit]], torch.Tensor]:
        # Maximum inner product search is not differentiable: retrieve with a detached copy of
        # q(x), then recompute d(z)·q(x) in torch from the retrieved (frozen) passage vectors
        # so that the gradient of the marginal likelihood reaches the question encoder through
        # p(z|x) (Lewis et al. 2020, §2.4; the passage side stays fixed, like the index).
        found = self.searcher.dense_hits(q.detach().float().cpu().numpy(), self.cfg.k)
        k = min(len(h) for h, _ in found)
        if k == 0:
            raise ConfigError("the index returned no passages; is it empty?")
        hits = [h[:k] for h, _ in found]
        vecs = torch.from_numpy(np.stack([v[:k] for _, v in found])).to(q.device)  # (B, k, d)
        scores = torch.einsum("bd,bkd->bk", q, vecs)  # (B, k), differentiable in q
        return hits, scores

    def loss(self, batch: Sequence[QAExample]) -> torch.Tensor:
        questions = [e.question for e in batch]
        with torch.autocast(self.lm.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hits, scores = self._retrieve(self._encode(questions))
            # train on the first gold answer, as the paper did for multi-answer QA sets
            ll = self.model.log_likelihood(questions, hits, [e.answers[0] for e in batch],
                                           scores.float(), self.cfg.model)  # (B,)
        return -ll.mean()

    def train_step(self, batch: Sequence[QAExample]) -> float:
        """One optimizer step over `batch`, in micro-batches of cfg.batch_size whose
        gradients add up (gradient accumulation: a larger batch in the memory of a small one).
        Returns the mean loss per question."""
        self.lm.model.train()
        if self.qenc is not None:
            self.qenc.train()
        self.optimizer.zero_grad(set_to_none=True)
        size = self.cfg.batch_size
        total = 0.0
        for start in range(0, len(batch), size):
            micro = batch[start:start + size]
            # weighted by its share, so the summed gradient is that of the mean over the batch
            loss = self.loss(micro) * (len(micro) / len(batch))
            loss.backward()
            total += float(loss.detach())
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.average is not None:
            # every worker took an equal share of the batch: the mean of their gradients (and
            # losses) is the gradient of the whole batch, as one process would compute it
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            loss_t = torch.tensor([total], dtype=torch.float32, device=params[0].device)
            self.average([p.grad for p in params if p.grad is not None] + [loss_t])
            total = float(loss_t[0])
        torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        return total

    # ------------------------------------------------------------ the prior

    @torch.no_grad()
    def _prior_inputs(self, examples: Sequence[QAExample]) -> tuple[torch.Tensor, torch.Tensor]:
        """d(z)·q(x) of each question's top k and which of those passages hold its answer:
        (N, k) and (N, k) bool, with the current question encoder."""
        scores, positive = [], []
        for start in range(0, len(examples), 32):
            chunk = examples[start:start + 32]
            hits, s = self._retrieve(self._encode([e.question for e in chunk]))
            k = self.cfg.k
            if s.shape[1] < k:  # a corpus smaller than k: pad with passages that never win
                s = torch.nn.functional.pad(s, (0, k - s.shape[1]), value=-1e4)
            scores.append(s.float().cpu())
            positive.append(torch.tensor([[answer_in(h.passage.text, e.answers) for h in hs]
                                          + [False] * (k - len(hs))
                                          for e, hs in zip(chunk, hits, strict=True)]))
        return torch.cat(scores), torch.cat(positive)

    def calibrate_prior(self, examples: Sequence[QAExample], n: int = 256) -> float:
        """Set the prior's scale to the value that gives the passages holding the answer the
        most probability on (up to n of) the training questions; returns it. Training then
        moves it further."""
        scores, positive = self._prior_inputs(spread(list(examples), n))
        if not bool(positive.any()):
            log.warning("no training question retrieves a passage with its answer; the "
                        "prior keeps its scale %.1f", self.model.prior.scale)
            return self.model.prior.scale
        scale = calibrate_scale(scores, positive)
        self.model.prior.set_scale(scale)
        return scale

    @torch.no_grad()
    def prior_mass(self, examples: Sequence[QAExample]) -> tuple[float, float]:
        """(mean Σ p(z|x) over the passages that hold the answer, on the questions that
        retrieve one; the share of questions that do)."""
        scores, positive = self._prior_inputs(examples)
        rows = positive.any(-1)
        if not bool(rows.any()):
            return 0.0, 0.0
        mass = answer_prior_mass(self.model.prior(scores), positive)[rows]
        return float(mass.mean()), float(rows.float().mean())

    # ------------------------------------------------------------ evaluation

    @torch.no_grad()
    def answer(self, questions: Sequence[str], beams: int = 1) -> list[str]:
        """Greedy answers with the current weights and dense retrieval (as trained)."""
        self.lm.model.eval()
        if self.qenc is not None:
            self.qenc.eval()
        hits, _ = self._retrieve(self._encode(questions))
        return [self.model.generate(q, h, self.cfg.model, beams=beams).text
                for q, h in zip(questions, hits, strict=True)]

    def evaluate(self, examples: Sequence[QAExample], progress: bool = False) -> dict[str, float]:
        mass, share = self.prior_mass(examples)
        em = f1 = 0.0
        t0 = time.perf_counter()
        for ex in tqdm(examples, desc="evaluating", unit="q", disable=not progress, leave=False):
            pred = self.answer([ex.question])[0]
            em += exact_match(pred, ex.answers)
            f1 += f1_score(pred, ex.answers)
        n = max(1, len(examples))
        return {"em": em / n, "f1": f1 / n, "questions": float(len(examples)),
                "seconds_per_question": (time.perf_counter() - t0) / n,
                "prior_mass": mass, "answer_retrieved": share,
                "prior_scale": self.model.prior.scale}

    # ------------------------------------------------------------ checkpoints

    def save(self, metrics: dict[str, float] | None = None) -> Path:
        """Write model/step-N/ beside the index, then point the manifest at it (last, so a
        kill leaves the previous checkpoint in force), then drop older checkpoints."""
        index = self.searcher.index
        root = index.path / CHECKPOINTS
        name = f"step-{self.step:06d}"
        tmp = root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if has_adapter(self.lm):
            save_adapter(self.lm, tmp / "generator")
            _adapter_for_llama_cpp(self.lm.name, tmp / "generator")
        else:
            self.lm.save(tmp / "generator")
        if self.qenc is not None:
            self.qenc.save(tmp / "question-encoder")
        save_optimizer(self.optimizer, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps(
            {"step": self.step, "config": asdict(self.cfg),
             "prior_scale": self.model.prior.scale}, indent=2))
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        prev = index.manifest.trained
        here = f"{CHECKPOINTS}/{name}"
        trained = TrainedState(
            path=here, step=self.step, model=self.cfg.model,
            generator=TrainedPart(f"{here}/generator",
                                  prev.generator.base if prev and prev.generator else self.lm.name),
            question_encoder=(TrainedPart(f"{here}/question-encoder", index.manifest.encoder.id)
                              if self.qenc is not None
                              else prev.question_encoder if prev else None),
            metrics=metrics or (prev.metrics if prev else {}), updated=now(),
            prior_scale=self.model.prior.scale, adapter=has_adapter(self.lm))
        index.set_trained(trained)
        # an older checkpoint goes, unless a frozen question encoder still lives in it
        for old in root.glob("step-*"):
            if f"{CHECKPOINTS}/{old.name}" not in trained.checkpoints:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load_optimizer(self, checkpoint: Path) -> None:
        state = json.loads((checkpoint / "state.json").read_text())
        load_optimizer_state(self.optimizer, checkpoint / "optimizer.safetensors")
        self.step = int(state["step"])


def _adapter_for_llama_cpp(base: str, folder: Path) -> None:
    """The adapter in GGUF beside it, so that llama.cpp answers with it; a base model that is
    not a packaged GGUF (a transformers folder) answers in torch instead."""
    if LLMS.find(base) is None:
        return
    try:
        export_gguf(folder, LLMS.create(base).path(), folder / ADAPTER_GGUF)
    except ModelUnavailableError as e:
        log.warning("the adapter stays torch-only: %s", e)


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def run_training(trainer: Trainer, examples: list[QAExample], progress: bool = True,
                 part: tuple[int, int] = (0, 1)) -> TrainResult:
    """Train to `cfg.steps` total steps from wherever the trainer stands (resume).
    `part` = (rank, workers) of data-parallel training: each worker takes every workers-th
    example of each batch; only rank 0 evaluates, saves and shows progress."""
    rank, workers = part
    main = rank == 0
    progress = progress and main
    cfg = trainer.cfg
    train_set, held_out = split_by_group(examples, cfg.held_out)
    if not train_set:
        raise ConfigError("no training questions left after the held-out split")
    held_out = held_out[: cfg.eval_questions]
    result = TrainResult(step=trainer.step)
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc="training", unit="step",
               disable=not progress)
    avg: float | None = None
    if trainer.step == 0 and cfg.calibrate:
        before = trainer.model.prior.scale
        scale = trainer.calibrate_prior(train_set)
        log.info("prior scale calibrated on the training questions: %.1f → %.1f", before, scale)
    if trainer.step == 0 and held_out and main:  # where the prior starts (retrieval: cheap)
        mass, share = trainer.prior_mass(held_out)
        result.evals.append({"step": 0.0, "prior_mass": mass, "answer_retrieved": share,
                             "prior_scale": trainer.model.prior.scale})
    while trainer.step < cfg.steps:
        batch = [train_set[i] for i in _batch_indices(len(train_set), trainer.step,
                                                      cfg.batch_size * cfg.grad_accum, cfg.seed)]
        loss = trainer.train_step(batch[rank::workers])
        if not math.isfinite(loss):
            raise ConfigError(f"the loss became {loss} at step {trainer.step}; lower --lr")
        result.losses.append(loss)
        avg = loss if avg is None else 0.9 * avg + 0.1 * loss
        bar.update(1)
        bar.set_postfix(loss=f"{avg:.3f}")
        metrics = None
        if not main:
            continue
        if held_out and (trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps):
            metrics = trainer.evaluate(held_out, progress=progress)
            result.evals.append({"step": float(trainer.step), **metrics})
        if trainer.step % cfg.save_every == 0 or trainer.step == cfg.steps:
            result.checkpoint = trainer.save(metrics)
    bar.close()
    result.step = trainer.step
    return result


def fine_tune(searcher: Searcher, rag_slot: RagModelSlot, examples: list[QAExample],
              cfg: TrainConfig | None = None, progress: bool = True,
              restart: bool = False) -> TrainResult:
    """Fine-tune the question encoder and the generator end to end, resuming from the index's
    last checkpoint unless `restart` (then from the base models, or the RagModel the caller
    gave `rag_slot`). Afterwards the searcher asks with the trained question encoder and
    `rag_slot` answers with the trained generator."""
    cfg = cfg or TrainConfig()
    trainer = prepare_trainer(searcher, rag_slot, cfg, restart)
    with searcher.index.write_lock():
        result = run_training(trainer, examples, progress=progress)
    # use what was trained from now on
    searcher.query_encoder = searcher.index.question_encoder()
    searcher.prior_scale = trainer.model.prior.scale
    trainer.lm.model.eval()
    rag_slot.use(trainer.model)
    return result


def prepare_trainer(searcher: Searcher, rag_slot: RagModelSlot, cfg: TrainConfig,
                    restart: bool = False) -> Trainer:
    """The trainer `fine_tune` runs: the index's last checkpoint (optimizer included) unless
    `restart`, else the base models. Seeded by cfg.seed, so that every data-parallel worker
    starts from the same weights (LoRA's are random)."""
    torch.manual_seed(cfg.seed)
    index = searcher.index
    m = rag_slot.config
    trained = index.manifest.trained
    resume = trained is not None and not restart
    if resume and trained is not None and trained.generator is not None:
        if trained.adapter != bool(cfg.lora_rank):
            have, same = ("LoRA adapters", "--lora RANK") if trained.adapter else \
                ("full weights", "no --lora")
            raise ConfigError(f"{index.path} was trained with {have}: continue it with {same}, "
                              "or start over with --restart")
        lm = trained_generator(index, m.device, trainable=True)
    elif rag_slot.given is not None and not resume:
        if not isinstance(rag_slot.given.lm, CausalLM):
            raise ConfigError("training needs a torch generator (CausalLM), not llama.cpp")
        lm = rag_slot.given.lm
    else:  # never a trained generator loaded earlier by `ask`: restart means the base model
        lm = CausalLM.load(m.generator, m.device)
    qenc = None
    if cfg.train_question_encoder:
        qenc = QuestionEncoder.from_encoder(searcher.query_encoder if resume else index.encoder)
    scale = (rag_slot.prior_scale if resume or not cfg.calibrate else DEFAULT_PRIOR_SCALE)
    trainer = Trainer(searcher, lm, qenc, cfg, max_passage_tokens=m.max_passage_tokens,
                      max_new_tokens=m.max_new_tokens, prior_scale=scale)
    if resume and trained is not None:
        checkpoint = index.path / trained.path
        if (checkpoint / "optimizer.safetensors").is_file():
            try:
                trainer.load_optimizer(checkpoint)
            except ValueError as e:  # a checkpoint from before the prior learned: other groups
                log.warning("the optimizer starts afresh (its saved state does not fit: %s)", e)
                trainer.step = trained.step
    return trainer
