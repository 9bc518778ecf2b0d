"""End-to-end training: the loss falls, the gradient reaches the question encoder through
p(z|x), the passage index stays frozen, and checkpoints survive save → load → resume.
Real MiniLM question encoder (bundled), tiny random generator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ragline import RAG
from ragline.cli import main
from ragline.model.qencoder import QuestionEncoder
from ragline.model.rag_model import RagModel
from ragline.model.train import TrainConfig, Trainer
from ragline.qa import QAExample

from conftest import write_docs
from toymodels import hf_tiny_lm

DOCS = {
    "france.txt": "Paris is the capital of France. The Eiffel Tower stands in Paris.",
    "germany.txt": "Berlin is the capital of Germany. The Brandenburg Gate stands in Berlin.",
    "italy.txt": "Rome is the capital of Italy. The Colosseum stands in Rome.",
    "spain.txt": "Madrid is the capital of Spain. The Prado museum is in Madrid.",
}
QA = [QAExample(str(i), q, (a,), group=g) for i, (q, a, g) in enumerate([
    ("What is the capital of France?", "Paris", "fr"),
    ("Where does the Eiffel Tower stand?", "Paris", "fr"),
    ("What is the capital of Germany?", "Berlin", "de"),
    ("Where is the Brandenburg Gate?", "Berlin", "de"),
    ("What is the capital of Italy?", "Rome", "it"),
    ("What is the capital of Spain?", "Madrid", "es"),
])]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    docs = write_docs(tmp_path / "docs", DOCS)
    RAG.build(tmp_path / "idx", paths=[docs], encoder="minilm").close()
    return tmp_path / "idx"


def _lm():
    texts = list(DOCS.values()) + [e.question + " " + e.answers[0] for e in QA]
    return hf_tiny_lm(texts + ["Question: Answer:"], seed=0)


def _frozen_state(index: Path) -> str:
    h = hashlib.sha256((index / "dense.faiss").read_bytes())
    import sqlite3

    con = sqlite3.connect(index / "store.sqlite")
    for (vec,) in con.execute("SELECT vector FROM passages ORDER BY rowid"):
        h.update(vec)
    con.close()
    return h.hexdigest()


def test_gradient_reaches_the_question_encoder_and_loss_falls(index: Path) -> None:
    rag = RAG.open(index)
    for model in ("rag-sequence", "rag-token"):
        trainer = Trainer(rag.searcher, _lm(), QuestionEncoder.from_encoder(rag.index.encoder),
                          TrainConfig(model=model, k=2, lr=2e-2, lr_question_encoder=1e-4))
        batch = QA[:2]
        loss = trainer.loss(batch)
        loss.backward()
        qgrad = sum(float(p.grad.abs().sum()) for p in trainer.qenc.parameters()
                    if p.grad is not None)
        assert qgrad > 0, "no gradient reached the question encoder"
        emb = trainer.lm.model.get_input_embeddings().weight
        assert emb.grad is None and not emb.requires_grad  # frozen, tied with the output
        first = float(loss.detach())
        losses = [trainer.train_step(batch) for _ in range(12)]
        assert losses[-1] < first - 2.0, (model, first, losses)  # nats per answer
    # the passage encoder itself (the index's) never trains: only its copy does
    assert all(p.grad is None for p in rag.index.encoder.model.parameters())
    rag.close()


def test_training_leaves_the_index_frozen_and_resumes(index: Path) -> None:
    before = _frozen_state(index)
    lm = _lm()
    cfg = TrainConfig(model="rag-token", k=2, steps=4, batch_size=2, lr=3e-3, held_out=0.25,
                      eval_every=2, eval_questions=2, save_every=2)
    with RAG.open(index, rag_model=RagModel(lm)) as rag:
        res = rag.train(QA, cfg, progress=False, restart=True)
        assert res.step == 4 and len(res.losses) == 4
        assert [int(e["step"]) for e in res.evals] == [0, 2, 4]  # 0: the prior before training
        saved = {k: v.clone() for k, v in lm.model.state_dict().items()}
    assert _frozen_state(index) == before
    manifest = json.loads((index / "manifest.json").read_text())
    trained = manifest["trained"]
    assert trained["step"] == 4 and trained["model"] == "rag-token"
    assert trained["question_encoder"]["base"].endswith("all-MiniLM-L6-v2")
    ckpt = index / trained["path"]
    assert (ckpt / "generator" / "model.safetensors").is_file()
    assert (ckpt / "question-encoder" / "model.safetensors").is_file()
    assert (ckpt / "optimizer.safetensors").is_file()
    assert sorted(p.name for p in (index / "model").iterdir()) == ["step-000004"]  # older dropped

    # reopen: ask-time models are the trained ones, loaded from the checkpoint
    with RAG.open(index) as rag:
        assert str(rag.searcher.query_encoder.spec.id).endswith("step-000004/question-encoder")
        loaded = rag.rag_model.lm.model.state_dict()
        assert all(torch.equal(loaded[k], saved[k]) for k in saved)
        q = rag.searcher.encode_query("What is the capital of Italy?")
        base = rag.index.encoder.encode_queries(["What is the capital of Italy?"])[0]
        assert float(q @ base) < 0.99999  # the question side moved; the passage side did not
        # resume: two more steps, continuing from step 4 with the saved optimizer state
        res = rag.train(QA, TrainConfig(model="rag-token", k=2, steps=6, batch_size=2, lr=3e-3,
                                        held_out=0.25, eval_every=100, save_every=100),
                        progress=False)
        assert res.step == 6 and len(res.losses) == 2
    assert json.loads((index / "manifest.json").read_text())["trained"]["step"] == 6
    assert _frozen_state(index) == before


def test_cli_score_and_ask_with_the_trained_models(index: Path, capsys) -> None:
    lm = _lm()
    with RAG.open(index, rag_model=RagModel(lm)) as rag:
        rag.train(QA, TrainConfig(k=2, steps=2, lr=3e-3, held_out=0.25, save_every=2),
                  progress=False, restart=True)
        want = rag.score("What is the capital of France?", "Paris", k=2, mode="dense")
    capsys.readouterr()
    assert main(["score", str(index), "What is the capital of France?", "Paris", "-k", "2",
                 "--mode", "dense", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["log_prob"]
    assert set(got) == {"concat", "rag-token", "rag-sequence"}
    for name, lp in got.items():
        assert lp < 0 and lp == pytest.approx(want[name], abs=1e-4)
    assert main(["ask", str(index), "What is the capital of France?", "--model", "rag-sequence",
                 "-k", "2", "--beams", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["question"] == "What is the capital of France?"
    # `ragline train` resumes from the checkpoint the index records (step 2 → 3)
    data = index.parent / "qa.jsonl"
    data.write_text("\n".join(json.dumps({"question": e.question, "answers": list(e.answers),
                                          "group": e.group}) for e in QA))
    assert main(["-q", "train", str(index), "--data", str(data), "--steps", "3", "-k", "2",
                 "--held-out", "0.25", "--eval-every", "1", "--eval-questions", "1"]) == 0
    printed = capsys.readouterr().out
    assert "step 3: held-out exact match" in printed and "trained to step 3" in printed
    assert json.loads((index / "manifest.json").read_text())["trained"]["step"] == 3
    assert main(["train", str(index), "--data", str(data), "--steps", "3"]) == 0
    assert "already trained for 3 steps" in capsys.readouterr().out
    assert main(["info", str(index)]) == 0  # what training left, at a glance
    trained = next(line for line in capsys.readouterr().out.splitlines()
                   if line.startswith("trained"))
    assert "rag-sequence step 3" in trained and "(all weights)" in trained
    assert "question encoder" in trained and "prior scale" in trained
    assert main(["info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trained"]["step"] == 3
    assert out["model"] == "rag-sequence"
    assert len(out["passages"]) == 2 and all(h["prob"] is not None for h in out["passages"])


def test_training_errors_are_clear(index: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q?"}\n')
    assert main(["train", str(index), "--data", str(bad)]) == 2
    assert "needs 'answers'" in capsys.readouterr().err
    assert main(["train", str(index), "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", str(index), "q?", "--model", "rag-tok"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    hashed = tmp_path / "hidx"
    RAG.build(hashed, paths=[index.parent / "docs"], encoder="hash").close()
    with RAG.open(hashed, rag_model=RagModel(_lm())) as rag:
        from ragline.errors import ConfigError

        with pytest.raises(ConfigError, match="not trainable"):
            rag.train(QA, TrainConfig(k=2, steps=1), progress=False)
