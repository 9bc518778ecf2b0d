"""Concurrent query encodings share batches and get their own vectors back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ragline.encode import load_encoder
from ragline.encode.batching import BatchingEncoder


class SlowEncoder:
    """The hash encoder, slowed down, counting its calls."""

    def __init__(self) -> None:
        self.inner = load_encoder("hash:32")
        self.spec = self.inner.spec
        self.calls: list[int] = []
        self.fail = False

    def load(self) -> None:
        pass

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if self.fail:
            raise RuntimeError("model broke")
        threading.Event().wait(0.05)
        self.calls.append(len(texts))
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        return self.inner.encode_passages(texts)


def test_concurrent_callers_are_batched_and_each_gets_its_own_vectors() -> None:
    slow = SlowEncoder()
    enc = BatchingEncoder(slow)
    enc.start()
    texts = [f"query number {i}" for i in range(24)]
    out: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, enc.encode_queries(
        [texts[i]]))) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    enc.stop()
    expected = slow.inner.encode_queries(texts)
    for i in range(24):
        np.testing.assert_array_equal(out[i], expected[i:i + 1])
    assert sum(slow.calls) == 24 and len(slow.calls) < 24  # fewer model calls than queries
    assert enc.queries == 24 and enc.batches == len(slow.calls)


def test_a_lone_caller_and_a_stopped_batcher_call_the_model_directly() -> None:
    slow = SlowEncoder()
    enc = BatchingEncoder(slow)
    np.testing.assert_array_equal(enc.encode_queries(["a", "b"]),
                                  slow.inner.encode_queries(["a", "b"]))
    enc.start()
    assert enc.encode_queries(["c"]).shape == (1, 32)
    enc.stop()
    assert enc.encode_queries(["d"]).shape == (1, 32)
    assert slow.calls == [2, 1, 1]


def test_an_error_reaches_every_caller_of_the_batch() -> None:
    slow = SlowEncoder()
    slow.fail = True
    enc = BatchingEncoder(slow)
    enc.start()
    with pytest.raises(RuntimeError, match="model broke"):
        enc.encode_queries(["x"])
    enc.stop()
