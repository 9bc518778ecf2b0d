"""The question encoder q(x) as a trainable torch module: the passage encoder's own
sentence-transformers model, whose copy learns while the passage side stays frozen.

    qenc = QuestionEncoder.from_encoder(rag.encoder)   # a copy; the index's encoder is untouched
    q = qenc(["who built it?"])                        # (B, d), differentiable, L2-normalized
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ragline.encode.base import Encoder
from ragline.encode.sbert import SentenceTransformerEncoder
from ragline.errors import ConfigError


class QuestionEncoder(nn.Module):
    def __init__(self, st_model: Any, prefix: str = "") -> None:
        super().__init__()
        self.st = st_model
        self.prefix = prefix

    @classmethod
    def from_encoder(cls, encoder: Encoder) -> QuestionEncoder:
        if not isinstance(encoder, SentenceTransformerEncoder):
            raise ConfigError(
                f"the question encoder '{encoder.spec.id}' is not trainable (only "
                "sentence-transformers encoders are); train the generator alone with "
                "--freeze-question-encoder")
        encoder.load()
        # a deep copy: the passage encoder (used for ingestion) must stay frozen
        return cls(copy.deepcopy(encoder.model), encoder.spec.query_prefix)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, texts: Sequence[str]) -> Tensor:
        prep = getattr(self.st, "preprocess", None) or self.st.tokenize
        feats = prep([self.prefix + t for t in texts])
        feats = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in feats.items()}
        emb = self.st(feats)["sentence_embedding"]  # (B, d)
        return nn.functional.normalize(emb, dim=-1)

    def save(self, path: Path) -> None:
        self.st.save(str(path), safe_serialization=True)
