"""BM25 over passage tokens (bm25s); tokens come from ragline.text.tokenize (jieba for CJK).

Rebuilt from the store's saved tokens whenever passages change; saved without pickle
(numpy arrays + JSON) beside the passage row ids it scores.

    bm25 = BM25Index.build(rowids, token_lists)
    scores, ids = bm25.search(["capit", "franc"], k=10)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ragline.errors import IndexCorruptError
from ragline.index.atomic import replace_dir

log = logging.getLogger(__name__)


class BM25Index:
    def __init__(self, rowids: np.ndarray, model: Any, k1: float = 1.5, b: float = 0.75) -> None:
        self.rowids = rowids
        self.model = model  # None when the corpus is empty
        self.k1, self.b = k1, b

    @property
    def ntotal(self) -> int:
        return len(self.rowids)

    @classmethod
    def build(cls, rowids: list[int], tokens: list[list[str]], k1: float = 1.5,
              b: float = 0.75, progress: bool = False) -> BM25Index:
        bm25s = _bm25s()

        if not rowids:
            return cls(np.zeros(0, np.int64), None, k1, b)
        model = bm25s.BM25(k1=k1, b=b, backend=_backend())
        # a passage with no tokens still needs a row; bm25s scores the empty token as 0
        model.index([t or [""] for t in tokens], show_progress=progress)
        return cls(np.asarray(rowids, dtype=np.int64), model, k1, b)

    def search(self, query_tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, row ids) with score > 0; fewer when fewer passages share a term."""
        if self.model is None or not query_tokens:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        ids = self.model.get_tokens_ids(query_tokens)
        if not ids:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores = self.model.get_scores_from_ids(ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] > 0]
        return scores[top].astype(np.float32), self.rowids[top]

    def save(self, folder: Path) -> None:
        tmp = folder.with_name(f".{folder.name}.tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        tmp.mkdir()
        np.save(tmp / "rowids.npy", self.rowids, allow_pickle=False)
        (tmp / "params.json").write_text(json.dumps({"k1": self.k1, "b": self.b,
                                                     "empty": self.model is None}))
        if self.model is not None:
            self.model.save(str(tmp / "bm25s"))
        replace_dir(tmp, folder)

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        bm25s = _bm25s()

        try:
            params = json.loads((folder / "params.json").read_text())
            rowids = np.load(folder / "rowids.npy", allow_pickle=False)
            model = None
            if not params["empty"]:
                model = bm25s.BM25.load(str(folder / "bm25s"), mmap=False, allow_pickle=False)
                model.backend = _backend()
        except (OSError, ValueError, KeyError) as e:
            raise IndexCorruptError(f"{folder}: unreadable BM25 index ({e})") from None
        return cls(rowids, model, params["k1"], params["b"])


def _bm25s() -> Any:
    import bm25s

    # bm25s sets its logger to DEBUG on import, which would reach the user's terminal
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _backend() -> str:
    try:
        import numba  # noqa: F401  # bm25s is ~14x faster with numba, silently slow without

        return "numba"
    except ImportError:
        log.info("numba not installed: BM25 uses the slower numpy backend")
        return "numpy"
