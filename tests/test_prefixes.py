"""Encoders trained with query/passage prefixes (E5-style) get them from the manifest: taken
from the model's own config (or the command line) when the index is made, never guessed later."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ragline import RAG
from ragline.cli import main


def tiny_sentence_transformer(path: Path, prompts: dict[str, str] | None = None) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "query passage paris france capital berlin germany tea green leaves".split()
    raw = path.parent / f"{path.name}-bert"
    raw.mkdir()
    (raw / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":",
                                              *words]) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=17, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(raw)
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt")).save_pretrained(raw)
    word = Transformer(str(raw), max_seq_length=64)
    pool = Pooling(word.get_embedding_dimension(), "mean")
    SentenceTransformer(modules=[word, pool], prompts=prompts or {}).save(str(path))
    return path


@pytest.fixture
def e5_like(tmp_path: Path) -> Path:
    return tiny_sentence_transformer(tmp_path / "e5", {"query": "query: ", "passage": "passage: "})


def test_prefixes_come_from_the_model_config_and_travel_in_the_manifest(
        tmp_path: Path, corpus: Path, e5_like: Path) -> None:
    from sentence_transformers import SentenceTransformer

    with RAG.build(tmp_path / "idx", paths=[corpus], encoder=str(e5_like)) as rag:
        spec = rag.index.manifest.to_dict()["encoder"]
        assert (spec["query_prefix"], spec["passage_prefix"]) == ("query: ", "passage: ")
    # the model's config changes afterwards: the index keeps embedding queries as it was built
    cfg = e5_like / "config_sentence_transformers.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prompts": {}}))
    with RAG.open(tmp_path / "idx") as rag:
        q = rag.searcher.encode_query("capital france")
    raw = SentenceTransformer(str(e5_like), local_files_only=True)
    want = raw.encode(["query: capital france"], normalize_embeddings=True, prompt="")[0]
    bare = raw.encode(["capital france"], normalize_embeddings=True, prompt="")[0]
    assert np.allclose(q, want, atol=1e-5) and not np.allclose(q, bare, atol=1e-3)


def test_prefixes_from_the_command_line_and_a_mismatch_is_refused(
        tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tiny_sentence_transformer(tmp_path / "plain")
    idx = str(tmp_path / "idx")
    assert main(["-q", "index", str(corpus), "--index", idx, "--encoder", str(plain),
                 "--query-prefix", "query: ", "--passage-prefix", "passage: "]) == 0
    enc = json.loads((Path(idx) / "manifest.json").read_text())["encoder"]
    assert enc["query_prefix"] == "query: " and enc["passage_prefix"] == "passage: "
    assert main(["-q", "index", str(corpus), "--index", idx, "--query-prefix", "q: "]) == 2
    assert "needs a new index" in capsys.readouterr().err
