"""The int8 ONNX MiniLM: the same vectors as the torch model, and an index that records it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragline.config import IndexConfig
from ragline.encode import load_encoder
from ragline.encode.onnx import MINILM_INT8_ID, OnnxMiniLMEncoder
from ragline.index.index import Index

pytestmark = pytest.mark.model

TEXTS = ["The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
         "Photosynthesis releases oxygen as plants turn light into chemical energy.",
         "长城是中国古代的军事防御工程，今天看到的大部分是明朝修建的。", "short"]


def test_int8_vectors_match_the_torch_model() -> None:
    torch_enc, int8 = load_encoder("minilm"), load_encoder("minilm-int8")
    for texts in (TEXTS, TEXTS[:1]):
        a, b = torch_enc.encode_passages(texts), int8.encode_passages(texts)
        assert a.shape == b.shape == (len(texts), 384)
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
        assert float((a * b).sum(axis=1).min()) >= 0.999
    # the batch does not change a text's vector (padding is masked out of the mean)
    alone = int8.encode_queries([TEXTS[3]])
    np.testing.assert_allclose(alone[0], int8.encode_queries(TEXTS)[3], atol=1e-5)


def test_an_index_built_with_it_records_it_and_queries_with_it(tmp_path: Path) -> None:
    doc = tmp_path / "eiffel.txt"
    doc.write_text(TEXTS[0] + "\n\n" + TEXTS[1])
    with Index.open_or_create(tmp_path / "idx", IndexConfig(encoder="minilm-int8")) as index:
        index.add([doc])
    with Index.open(tmp_path / "idx") as index:
        assert index.manifest.encoder.id == MINILM_INT8_ID
        assert isinstance(index.encoder, OnnxMiniLMEncoder)
        assert isinstance(index.question_encoder(), OnnxMiniLMEncoder)
