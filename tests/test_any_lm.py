"""The RAG models' generator is any transformers causal-LM folder, not only the bundled Gemma."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ragline import RAG
from ragline.config import Config


def test_the_rag_models_take_any_causal_lm_folder(tmp_path: Path, hash_rag: RAG) -> None:
    """Not only Gemma: a Qwen2-architecture folder answers through RAG-Token and RAG-Sequence."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["Paris is the capital of France.", "\n"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>")
    # an instruct model: its tokenizer carries a chat template
    fast.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>"
                          "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    cfg = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    folder = tmp_path / "qwen-tiny"
    Qwen2ForCausalLM(cfg).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    config = replace(Config(), model=replace(Config().model, generator=str(folder),
                                             max_new_tokens=4))
    with RAG.open(hash_rag.index.path, config=config) as rag:
        rm = rag.rag_model
        assert Path(rm.lm.name).name == "qwen-tiny" and rm.instruct
        hit = rag.search("What is the capital of France?", k=1)[0]
        context = rm.lm.tokenizer.decode(rm.passage_context("What is the capital of France?", hit))
        assert context.startswith("<system>") and hit.passage.text[:20] in context
        assert context.endswith("Question: What is the capital of France?</user><assistant>")
        assert rm.lm.tokenizer.decode(rm.answer_tokens("Where?", "Paris")) == "Paris"
        for model in ("rag-token", "rag-sequence"):
            a = rag.ask("What is the capital of France?", k=2, model=model, beams=2)
            assert a.model == model and len(a.hits) == 2
