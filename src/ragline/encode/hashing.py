"""A deterministic bag-of-words hash encoder: no model, no randomness, lexical similarity.

Used by tests and for instant demos; its rankings follow word overlap, so a three-passage
fixture has an exact, predictable order.

    enc = HashEncoder(dim=256)
    enc.encode_queries(["the cat sat"])  # same vector on every machine and run
"""

from __future__ import annotations

import hashlib

import numpy as np

from ragline.encode.base import EncoderSpec, l2_normalize
from ragline.errors import ConfigError
from ragline.text import tokenize


class HashEncoder:
    def __init__(self, dim: int = 256) -> None:
        self.spec = EncoderSpec(id=f"hash-{dim}", dim=dim, pooling="bag-of-words")

    def load(self) -> None:
        pass

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for tok in tokenize(text):
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                # the low bits choose the bucket, one high bit the sign (so collisions cancel on average)
                out[row, h % self.spec.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return l2_normalize(out)

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        return self._encode(texts)


def hash_encoder(dim: str | None = None, **_: object) -> HashEncoder:
    """The registry's factory: `hash` or `hash:DIM` (a positive integer)."""
    dim_s = (dim or "256").strip()
    if not dim_s.isdigit() or int(dim_s) < 1:
        raise ConfigError(f"hash encoder dimension must be a positive integer, got '{dim_s}'")
    return HashEncoder(dim=int(dim_s))
