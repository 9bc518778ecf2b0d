"""The Encoder protocol: texts → L2-normalised float32 vectors, queries and passages apart.

    enc = load_encoder("minilm"); enc.load()
    q = enc.encode_queries(["capital of France"])          # (1, 384)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class EncoderSpec:
    """Everything the query side must know to embed like the index did; stored in the manifest."""

    id: str
    dim: int
    pooling: str = "mean"
    normalized: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@runtime_checkable
class Encoder(Protocol):
    spec: EncoderSpec

    def load(self) -> None: ...

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
