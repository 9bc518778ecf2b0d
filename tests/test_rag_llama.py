"""The RAG models on llama.cpp against torch on the same weights, a LoRA adapter in both, and
RAG-Token on the demo questions. Real models (Gemma 3 270M for the comparisons: it converts to
torch fastest; Qwen2.5 0.5B, the default, for the answers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ragline import RAG
from ragline.config import ModelConfig
from ragline.generate.packaged import GEMMA_270M
from ragline.model.adapters import PACKAGED_ADAPTER, add_lora, export_gguf, save_adapter
from ragline.model.generators import RagModelSlot
from ragline.model.llama_lm import LlamaLM
from ragline.model.lm import CausalLM
from ragline.model.rag_model import RagModel

pytestmark = pytest.mark.model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "docs"
# log-probs differ by llama.cpp's int8 activations in its quantized matmuls: per token, on the
# answers the model would give, and on unlikely answers (measured: up to 0.04 and 0.095)
PER_TOKEN = 0.06
PER_TOKEN_ANY = 0.15


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RAG]:
    rag = RAG.build(tmp_path_factory.mktemp("demo") / "idx", paths=[EXAMPLES])
    yield rag
    rag.close()


def _per_token(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |difference| of two rows' log-probs per answer token: (N,)."""
    return ((a - b).abs() * mask).sum(-1) / mask.sum(-1)


@pytest.mark.parametrize("q, answer", [
    ("Who reached the bottom of the Challenger Deep?", "Piccard"),
    ("Who introduced movable-type printing to Europe?", "Gutenberg"),
])
def test_llama_cpp_and_torch_agree_on_the_same_weights(demo: RAG, q: str, answer: str) -> None:
    # (questions whose greedy answer is no near tie: "How tall is the Eiffel Tower?" ends after
    # "…an 81-storey" in torch and goes on to "building." on llama.cpp, by a hair)
    hits = demo.search(q, k=3, mode="dense")
    on_torch = RagModel(CausalLM.load("gemma-270m"))
    on_llama = RagModel(LlamaLM("gemma-270m").load())
    contexts = [on_torch.passage_context(q, h) for h in hits]
    assert contexts == [on_llama.passage_context(q, h) for h in hits]  # one tokenization
    assert on_torch.lm.tokenizer.stop_ids == on_llama.lm.tokenizer.stop_ids
    assert on_torch.lm.tokenizer.end_ids == on_llama.lm.tokenizer.end_ids
    for model in ("rag-token", "rag-sequence"):
        a, b = on_torch.generate(q, hits, model), on_llama.generate(q, hits, model)
        assert a.text == b.text and answer in a.text, (model, a.text, b.text)
        assert abs(a.score - b.score) <= PER_TOKEN * (len(a.tokens) + 1)
        assert a.posterior == pytest.approx(b.posterior, abs=0.02)
        assert on_torch.score(q, hits, a.text, model) == pytest.approx(
            on_llama.score(q, hits, a.text, model), abs=PER_TOKEN * (len(a.tokens) + 1))
    targets = [on_torch.answer_tokens(q, a) for a in (answer, "about 1,000 feet", "Paris")]
    with torch.no_grad():
        want, mask = on_torch.lm.target_logprobs(contexts, targets, end=True)
    got, got_mask = on_llama.lm.target_logprobs(contexts, targets, end=True)
    assert torch.equal(mask, got_mask)
    assert float(_per_token(want, got, mask).max()) <= PER_TOKEN_ANY, (want, got)


def test_a_lora_adapter_gives_the_same_model_in_both(demo: RAG, tmp_path: Path) -> None:
    q = "Who reached the bottom of the Challenger Deep?"
    hits = demo.search(q, k=2, mode="dense")
    lm = CausalLM.load("gemma-270m")
    base_rm = RagModel(lm)
    contexts = [base_rm.passage_context(q, h) for h in hits]
    targets = [base_rm.answer_tokens(q, "Jacques Piccard and Don Walsh")] * len(hits)
    with torch.no_grad():
        base, mask = lm.target_logprobs(contexts, targets, end=True)
    torch.manual_seed(0)  # LoRA's A matrices start random
    add_lora(lm, rank=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an adapter that has learned something: B ≠ 0
        for name, p in lm.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        adapted, _ = lm.target_logprobs(contexts, targets, end=True)
    save_adapter(lm, tmp_path / "adapter")
    gguf = export_gguf(tmp_path / "adapter", GEMMA_270M.path(), tmp_path / "adapter.gguf")
    got, _ = LlamaLM("gemma-270m", adapter=gguf).load().target_logprobs(contexts, targets,
                                                                         end=True)
    moved, err = _per_token(adapted, base, mask), _per_token(adapted, got, mask)
    # the adapter changes the model, and llama.cpp lands nearer torch's adapted model than the
    # base model is: on the passage that holds the answer within PER_TOKEN (seen: moved 0.10,
    # off by 0.04); on the other, whose answer is unlikely and moved most, llama.cpp's rounding
    # shows more (seen: moved 0.65, off by 0.27)
    assert float(moved.max()) > 0.3
    assert bool((err < 0.6 * moved).all()), (moved, err)
    assert float(err.min()) <= PER_TOKEN, (moved, err)
    # model.adapter = the folder: converted (once, into the cache) to the same llama.cpp file
    slot = RagModelSlot(demo.index, ModelConfig(generator="gemma-270m", runtime="llama-cpp",
                                                adapter=str(tmp_path / "adapter")))
    via_config, _ = slot().lm.target_logprobs(contexts, targets, end=True)
    assert torch.allclose(via_config, got, atol=1e-4)


@pytest.mark.parametrize("question, answer, source", [
    ("How tall is the Eiffel Tower?", "330", "eiffel-tower.md"),
    ("Who reached the bottom of the Challenger Deep?", "Piccard", "ocean-report.pdf"),
    ("Who introduced movable-type printing to Europe?", "Gutenberg", "inventors.csv"),
    ("今天看到的长城大部分是哪个朝代修建的？", "明", "great-wall-zh.txt"),
])
def test_rag_token_answers_the_demo_questions_and_cites_only_support(
        demo: RAG, question: str, answer: str, source: str) -> None:
    assert demo._rag_slot().adapter() == PACKAGED_ADAPTER  # the shipped default, on llama.cpp
    for model in ("rag-token", "rag-sequence"):
        a = demo.ask(question, model=model)
        assert a.answered and answer in a.text, (model, a.text)
        assert {Path(c.passage.source).name for c in a.citations} == {source}, (model, a.text)
