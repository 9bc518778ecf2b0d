"""Tiny causal LMs for tests: real transformers Gemma 3 code, random weights, no download."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ragline.model.lm import CausalLM, HFTokenizer


def tiny_gemma(vocab: int, seed: int = 0, sharp: float = 1.0, tied: bool = True):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, sliding_window=64, max_position_embeddings=512,
                           layer_types=["sliding_attention", "full_attention"],
                           pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           tie_word_embeddings=tied)
    model = Gemma3ForCausalLM(cfg)
    if sharp != 1.0:  # peakier distributions, so that search order matters
        with torch.no_grad():
            model.lm_head.weight.mul_(sharp)
    return model.eval()


class ABCTokenizer:
    """pad 0, bos 1, eos 2 (the only stop), then a=3, b=4, c=5: small enough to enumerate."""

    pad_id, bos_id, eos_id, newline_id = 0, 1, 2, 2
    stop_ids = frozenset({2})
    end_ids = frozenset({2})

    def encode(self, text: str) -> list[int]:
        return [3 + "abc".index(ch) for ch in text if ch in "abc"]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join("abc"[i - 3] for i in ids if i >= 3)


def abc_lm(seed: int = 0) -> CausalLM:
    return CausalLM(tiny_gemma(6, seed, sharp=8.0), ABCTokenizer(), name="abc", device="cpu")


def hf_tiny_lm(texts: Sequence[str], seed: int = 0) -> CausalLM:
    """A tiny Gemma with a real (byte-level BPE) Hugging Face tokenizer trained on `texts`, so
    it saves and loads like any transformers model folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts) + ["\n"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>")
    # untied: training freezes the input embedding, and a random tiny model learns far too
    # slowly through a frozen output projection for a test of a dozen steps
    model = tiny_gemma(len(fast), seed, tied=False)
    return CausalLM(model, HFTokenizer(fast), name="tiny", device="cpu")
