"""What a training run is told (TrainConfig) and what it reports (TrainResult).

    TrainConfig(model="rag-token", k=4, steps=200, lora_rank=16)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ragline.config import PRECISIONS
from ragline.errors import ConfigError
from ragline.registry import MODELS


@dataclass(frozen=True)
class TrainConfig:
    model: str = "rag-sequence"        # the marginalization trained: rag-sequence | rag-token
    k: int = 4                         # passages per question
    steps: int = 100                   # optimizer steps in total (a resumed run continues)
    batch_size: int = 2                # questions per step
    lr: float = 2e-5                   # generator
    lr_question_encoder: float = 1e-5
    held_out: float = 0.2              # share of articles (groups) kept out for evaluation
    eval_every: int = 50
    eval_questions: int = 50
    save_every: int = 50
    seed: int = 0
    train_question_encoder: bool = True
    max_grad_norm: float = 1.0
    lr_prior: float = 1e-2             # the prior's log inverse temperature
    calibrate: bool = True             # a fresh run first fits the prior's scale (see below)
    lora_rank: int = 0                 # > 0: train LoRA adapters of this rank, not all weights
    lora_alpha: int | None = None      # LoRA scaling numerator (None: 2 × rank)
    grad_accum: int = 1                # batches summed into one optimizer step
    precision: str = "auto"            # auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16

    def __post_init__(self) -> None:
        MODELS.check(self.model)
        if self.model == "concat":
            raise ConfigError("training needs a RAG model: --model rag-sequence or rag-token")
        for name in ("k", "steps", "batch_size", "eval_every", "eval_questions", "save_every",
                     "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"held_out must be in [0, 1), got {self.held_out}")
        if not (self.lr > 0 and self.lr_question_encoder > 0 and self.lr_prior > 0):
            raise ConfigError("learning rates must be > 0")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be ≥ 0 (0: full fine-tuning), got {self.lora_rank}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)      # one per step of this run
    evals: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
