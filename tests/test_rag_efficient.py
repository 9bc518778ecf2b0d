"""The learned prior, LoRA, gradient accumulation, the runtime choice and the citation rule of
the RAG models. Real MiniLM question encoder (bundled), tiny random generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragline import RAG
from ragline.config import ModelConfig
from ragline.errors import ConfigError, ModelUnavailableError
from ragline.model.adapters import (
    ADAPTER_FILE,
    ADAPTER_GGUF,
    PACKAGED_ADAPTER,
    add_lora,
    packaged_adapter,
    save_adapter,
)
from ragline.model.generators import RagModelSlot
from ragline.model.lm import CausalLM
from ragline.model.rag_model import RagModel
from ragline.model.train import TrainConfig, Trainer
from ragline.qa import split_by_group
from test_rag_train import DOCS, QA, _lm

from conftest import write_docs


@pytest.fixture
def index(tmp_path: Path) -> Path:
    docs = write_docs(tmp_path / "docs", DOCS)
    RAG.build(tmp_path / "idx", paths=[docs], encoder="minilm").close()
    return tmp_path / "idx"


def test_the_prior_scale_is_calibrated_learned_saved_and_reloaded(index: Path) -> None:
    cfg = TrainConfig(model="rag-sequence", k=3, steps=4, batch_size=2, lr=3e-3, lr_prior=0.2,
                      held_out=0.25, eval_every=4, eval_questions=2, save_every=4)
    train_set, _ = split_by_group(QA, cfg.held_out)
    with RAG.open(index, rag_model=RagModel(_lm())) as rag:
        assert rag.searcher.prior_scale == 20.0  # untrained: the default
        probe = Trainer(rag.searcher, _lm(), None, cfg)
        calibrated = probe.calibrate_prior(train_set)
        assert calibrated != 20.0
        res = rag.train(QA, cfg, progress=False, restart=True)
        ev = res.evals[-1]
        assert 0.0 <= ev["prior_mass"] <= 1.0 and ev["answer_retrieved"] > 0
        learned = ev["prior_scale"]
    # it moved from where calibration put it, and it is what the index now records
    assert abs(learned - calibrated) > 1e-3
    trained = json.loads((index / "manifest.json").read_text())["trained"]
    assert trained["prior_scale"] == pytest.approx(learned)
    state = json.loads((index / trained["path"] / "state.json").read_text())
    assert state["prior_scale"] == pytest.approx(learned)
    with RAG.open(index) as rag:
        assert rag.searcher.prior_scale == pytest.approx(learned)
        assert rag.rag_model.prior.scale == pytest.approx(learned)
        hits = rag.search("What is the capital of Italy?", k=3, mode="dense")
        want = torch.softmax(learned * torch.tensor([h.dense_score for h in hits]), 0)
        assert [h.prob for h in hits] == pytest.approx(want.tolist(), abs=1e-5)


def test_lora_trains_the_adapters_only_and_saves_and_loads_them(index: Path,
                                                                tmp_path: Path) -> None:
    _lm().save(tmp_path / "base")
    lm = CausalLM.load(str(tmp_path / "base"))
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cfg = TrainConfig(model="rag-token", k=2, steps=6, batch_size=2, lr=2e-2, lora_rank=4,
                      held_out=0.25, eval_every=100, save_every=6, train_question_encoder=False)
    with RAG.open(index, rag_model=RagModel(lm)) as rag:
        res = rag.train(QA, cfg, progress=False, restart=True)
        assert res.losses[-1] < res.losses[0] - 0.5, res.losses
        # the base weights never changed: only the adapters (and the prior) learned
        base = lm.peft.get_base_model().state_dict()
        for k, v in before.items():
            peft_key = k.replace(".weight", ".base_layer.weight")
            got = base[peft_key] if peft_key in base else base[k]
            assert torch.equal(got, v), k
        want = rag.score("What is the capital of France?", "Paris", k=2, mode="dense",
                         models=["rag-token"])["rag-token"]
    trained = json.loads((index / "manifest.json").read_text())["trained"]
    assert trained["adapter"] is True
    assert trained["generator"]["base"] == str((tmp_path / "base").resolve())
    folder = index / trained["generator"]["path"]
    assert (folder / ADAPTER_FILE).is_file() and not (folder / "model.safetensors").exists()
    assert not (folder / ADAPTER_GGUF).exists()  # a folder base: llama.cpp cannot take it
    with RAG.open(index) as rag:  # base + adapter, merged, in torch
        assert rag._rag_slot().runtime() == "torch"
        got = rag.score("What is the capital of France?", "Paris", k=2, mode="dense",
                        models=["rag-token"])["rag-token"]
        assert got == pytest.approx(want, abs=1e-4)
        # resume with the adapter; switching to full weights midway is refused
        res = rag.train(QA, TrainConfig(model="rag-token", k=2, steps=8, batch_size=2,
                                        lr=2e-2, lora_rank=4, held_out=0.25, eval_every=100,
                                        save_every=100, train_question_encoder=False),
                        progress=False)
        assert res.step == 8 and len(res.losses) == 2
        with pytest.raises(ConfigError, match="trained with LoRA adapters"):
            rag.train(QA, TrainConfig(model="rag-token", k=2, steps=10), progress=False)


def test_gradient_accumulation_gives_the_gradient_of_the_whole_batch(index: Path) -> None:
    grads = []
    with RAG.open(index) as rag:
        for batch_size, accum in ((4, 1), (2, 2), (1, 4)):
            cfg = TrainConfig(model="rag-sequence", k=2, batch_size=batch_size, grad_accum=accum)
            trainer = Trainer(rag.searcher, _lm(), None, cfg)
            trainer.optimizer.step = lambda *a, **k: None  # type: ignore[method-assign]
            loss = trainer.train_step(QA[:4])
            grads.append((loss, torch.cat([p.grad.flatten() for p in trainer.lm.model.parameters()
                                           if p.grad is not None])))
    (loss0, g0), *rest = grads
    assert g0.abs().sum() > 0
    for loss, g in rest:
        assert loss == pytest.approx(loss0, abs=1e-5)
        assert torch.allclose(g, g0, atol=1e-6, rtol=1e-4)


def test_model_adapter_puts_a_saved_adapter_on_the_untrained_generator(index: Path,
                                                                       tmp_path: Path) -> None:
    _lm().save(tmp_path / "base")
    lm = CausalLM.load(str(tmp_path / "base"))
    add_lora(lm, rank=4)
    with torch.no_grad():  # B = 0 would make it a no-op: give it a real update
        for name, w in lm.model.named_parameters():
            if "lora_B" in name:
                w.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    save_adapter(lm, tmp_path / "adapter")
    q, a = "What is the capital of France?", "Paris"
    with RAG.open(index) as rag:
        hits = rag.search(q, k=2, mode="dense")
        want = RagModel(lm).score(q, hits, a, "rag-sequence")

        def slot(adapter: str) -> RagModelSlot:
            return RagModelSlot(rag.index, ModelConfig(generator=str(tmp_path / "base"),
                                                       adapter=adapter, runtime="torch"))

        with_adapter = slot(str(tmp_path / "adapter"))
        assert with_adapter.adapter() == tmp_path / "adapter"
        assert with_adapter().score(q, hits, a, "rag-sequence") == pytest.approx(want, abs=1e-4)
        bare = slot("none")().score(q, hits, a, "rag-sequence")
        assert abs(bare - want) > 1e-2
        assert slot("auto").adapter() is None  # nothing ships for a folder generator
        with pytest.raises(ModelUnavailableError, match="not a LoRA adapter folder"):
            slot(str(tmp_path / "base"))()
    with pytest.raises(ConfigError, match="model.adapter"):
        ModelConfig(adapter=" ")


def test_the_shipped_adapter_is_the_default_generators_with_its_provenance(index: Path) -> None:
    assert packaged_adapter("qwen2.5-0.5b") == PACKAGED_ADAPTER
    assert packaged_adapter("gemma-270m") is None  # trained on Qwen: never put on another
    meta = json.loads((PACKAGED_ADAPTER / "provenance.json").read_text())
    assert meta["licence"].startswith("CC BY-SA 4.0") and "SQuAD" in meta["data"]
    assert meta["command"].startswith("bench/train_default.py") and meta["steps"] > 0
    # it shipped because it beat the untrained model on both held-out sets
    for data in ("squad", "cmrc"):
        assert (meta["metrics"][f"{data}/rag-sequence/trained"]["f1"]
                > meta["metrics"][f"{data}/rag-sequence/untrained"]["f1"])
    lora = json.loads((PACKAGED_ADAPTER / "adapter_config.json").read_text())
    assert lora["r"] <= 16 and (PACKAGED_ADAPTER / ADAPTER_FILE).stat().st_size < 20e6
    with RAG.open(index) as rag:
        assert RagModelSlot(rag.index, ModelConfig()).adapter() == PACKAGED_ADAPTER
        assert RagModelSlot(rag.index, ModelConfig(generator="qwen2.5-0.5b")).adapter() \
            == PACKAGED_ADAPTER
        assert RagModelSlot(rag.index, ModelConfig(adapter="none")).adapter() is None
        assert RagModelSlot(rag.index, ModelConfig(generator="gemma-270m")).adapter() is None


def test_the_runtime_follows_the_generator(index: Path, tmp_path: Path) -> None:
    _lm().save(tmp_path / "folder")
    with RAG.open(index) as rag:
        slot = RagModelSlot(rag.index, ModelConfig(generator=str(tmp_path / "folder")))
        assert slot.runtime() == "torch"
        slot = RagModelSlot(rag.index, ModelConfig(generator=str(tmp_path / "folder"),
                                                   runtime="llama-cpp"))
        with pytest.raises(ConfigError, match="transformers folder"):
            slot.runtime()
        assert RagModelSlot(rag.index, ModelConfig(runtime="torch")).runtime() == "torch"
    with pytest.raises(ConfigError, match="model.runtime"):
        ModelConfig(runtime="onnx")
    with pytest.raises(ConfigError, match="min_prior"):
        ModelConfig(min_prior=1.0)
    with pytest.raises(ConfigError, match="lora_rank"):
        TrainConfig(lora_rank=-1)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")


def test_passages_under_min_prior_are_not_read(index: Path) -> None:
    with RAG.open(index) as rag:
        hits = rag.search("What is the capital of Italy?", k=4, mode="dense")
        exact = RagModel(_lm(), prior_scale=20.0)
        pruned = RagModel(exact.lm, prior_scale=20.0, min_prior=0.2)
        read = []
        real = exact.passage_context
        pruned.passage_context = (  # type: ignore[method-assign]
            lambda q, h, *rest: read.append(h.rank) or real(q, h, *rest))
        g = pruned.generate("What is the capital of Italy?", hits, "rag-token")
        probs = [h.prob or 0.0 for h in hits]
        assert read == [h.rank for h, p in zip(hits, probs, strict=True) if p >= 0.2]
        assert len(read) < len(hits)
        assert all(g.posterior[i] == 0.0 for i, p in enumerate(probs) if p < 0.2)
        assert sum(g.posterior) == pytest.approx(1.0, abs=1e-5)


def test_the_passage_budget_follows_the_prior(index: Path) -> None:
    with RAG.open(index) as rag:
        hits = rag.search("What is the capital of Italy?", k=4, mode="dense")
        model = RagModel(_lm(), prior_scale=40.0, min_prior=0.0, passage_budget=200,
                         max_passage_tokens=150)
        limits: dict[int, int] = {}
        real = model.passage_context

        def recording(q, h, limit=None, *rest):  # type: ignore[no-untyped-def]
            limits[h.rank] = limit
            return real(q, h, limit, *rest)

        model.passage_context = recording  # type: ignore[method-assign]
        model.generate("What is the capital of Italy?", hits, "rag-sequence")
    prior = dict(zip([h.rank for h in hits],
                     model.doc_log_prior(hits).exp().tolist(), strict=True))
    assert set(limits) == set(prior)
    for rank, p in prior.items():  # its share of 200 tokens, within [24, 150]
        assert limits[rank] == min(150, max(24, round(200 * p)))
    top = max(prior, key=prior.__getitem__)
    assert limits[top] == max(limits.values()) and prior[top] > 0.5
    assert min(limits.values()) < limits[top]
