"""A causal language model in torch, batched over contexts: teacher-forced log-probabilities of
given answers and incremental decoding with a KV cache. The generator of the RAG model.

    lm = CausalLM.load("qwen2.5-0.5b")             # a packaged GGUF, dequantized once into the cache
    lp, mask = lm.target_logprobs(contexts, targets)   # one forward pass for all rows

Rows are laid out as [left padding | context | answer | right padding], so every context ends at
the same column and the answer logits are the last T+1 positions of every row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from ragline.devices import pick_device
from ragline.errors import ModelUnavailableError

if TYPE_CHECKING:
    from ragline.generate.packaged import PackagedModel

log = logging.getLogger(__name__)

# the RAG models' generator unless one is configured: the same weights concat answers with
DEFAULT_RAG_LM = "qwen2.5-0.5b"


class Tokenizer(Protocol):
    eos_id: int
    pad_id: int
    bos_id: int | None
    stop_ids: frozenset[int]   # tokens that end an answer (end of text, line breaks)
    end_ids: frozenset[int]    # tokens that end a text of many lines (end of text, of turn)
    newline_id: int            # appended to training targets so the model learns to stop

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


# special tokens that end an answer wherever a model has them (both runtimes use this list, so
# torch and llama.cpp agree on what "the answer ends here" means)
END_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|endoftext|>", "<eos>")


class HFTokenizer:
    """A transformers tokenizer; answers end at end-of-text or at any token holding a newline."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.eos_id = int(tok.eos_token_id)
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        self.bos_id = tok.bos_token_id
        self.newline_id = tok.encode("\n", add_special_tokens=False)[-1]
        pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
        # a piece that prints a line break: literally, as byte-level BPE's "Ċ", or as the byte
        # token <0x0A>; the last two only where decoding says so (Gemma has a literal "Ċ")
        stops = {i for i, p in enumerate(pieces) if p is not None and (
            "\n" in p or (("Ċ" in p or p == "<0x0A>") and "\n" in tok.decode([i])))}
        ends = {tok.convert_tokens_to_ids(name) for name in END_TOKENS}
        self.end_ids = frozenset({self.eos_id} | {i for i in ends if isinstance(i, int)
                                                  and i >= 0 and i != tok.unk_token_id})
        self.stop_ids = frozenset(stops | {self.newline_id} | self.end_ids)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=True))

    def chat(self, turns: list[tuple[str, str]]) -> str | None:
        """The turns in the tokenizer's chat template, ready for the answer; None when it has
        none (a base model)."""
        if not getattr(self.tok, "chat_template", None):
            return None
        messages = [{"role": role, "content": text} for role, text in turns]
        return str(self.tok.apply_chat_template(messages, tokenize=False,
                                                add_generation_prompt=True))


class LanguageModel(Protocol):
    """What RAG decoding and scoring need of a generator: `CausalLM` (torch) and
    `ragline.model.llama_lm.LlamaLM` (llama.cpp). The state `prefill` returns has
    `select(rows)`, beam search's reorder."""

    @property
    def tokenizer(self) -> Tokenizer: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def name(self) -> str: ...

    def prefill(self, contexts: Sequence[Sequence[int]]) -> tuple[Any, Tensor]: ...
    def step(self, state: Any, tokens: Tensor) -> Tensor: ...
    def target_logprobs(self, contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                        end: bool | Sequence[bool] = False) -> tuple[Tensor, Tensor]: ...


@dataclass
class DecodeState:
    """KV cache and bookkeeping for N rows being decoded together."""

    cache: Any
    mask: Tensor       # (N, L) attention mask over everything cached so far
    next_pos: Tensor   # (N,) position id of the next token of each row

    def select(self, rows: Tensor) -> None:
        """Keep (and duplicate) rows: beam search's reorder; rows (N',) indexes the old rows."""
        self.cache.reorder_cache(rows)
        self.mask = self.mask.index_select(0, rows)
        self.next_pos = self.next_pos.index_select(0, rows)


class CausalLM:
    """A Hugging Face causal LM plus a tokenizer, batched over contexts."""

    def __init__(self, model: Any, tokenizer: Tokenizer, name: str = "custom",
                 device: str | torch.device | None = None) -> None:
        self.device = torch.device(pick_device(str(device) if device is not None else None))
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.name = name
        self.peft: Any = None  # the peft wrapper while LoRA adapters are attached (adapters.py)

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, spec: str | None = None, device: str | None = None) -> CausalLM:
        """A name of ragline.registry.LLMS (dequantized from its GGUF once, see `torch_folder`)
        or a transformers folder; None is DEFAULT_RAG_LM. The name it keeps is `spec` itself,
        or the folder's absolute path, so that a LoRA adapter can record its base."""
        from ragline.registry import LLMS

        spec = spec or DEFAULT_RAG_LM
        if LLMS.find(spec) is not None:
            name = LLMS.canonical(spec)
            return cls.from_folder(torch_folder(LLMS.create(name)), device=device, name=name)
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModelUnavailableError(
                f"generator not found: {spec} is not a folder and not a model name; choose one "
                f"of {LLMS.usage()} or give a transformers causal-LM folder")
        return cls.from_folder(path, device=device, name=str(path.resolve()))

    @classmethod
    def from_folder(cls, path: str | Path, device: str | None = None,
                    name: str | None = None) -> CausalLM:
        """A transformers folder (config.json + safetensors + tokenizer), e.g. a trained one."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path}: not a model folder (no config.json)")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                     local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model.eval()
        return cls(model, HFTokenizer(tok), name=name or path.name, device=device)

    @classmethod
    def bundled(cls, device: str | None = None) -> CausalLM:
        """The default RAG generator (DEFAULT_RAG_LM), dequantized into torch once."""
        return cls.load(None, device)

    def save(self, path: Path) -> None:
        self.model.save_pretrained(str(path))
        tok = getattr(self.tokenizer, "tok", None)
        if tok is not None:
            tok.save_pretrained(str(path))

    # ------------------------------------------------------------ batching

    def _left_pad(self, rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: Tensor) -> Tensor:
        # positions count real tokens only, so a left-padded row sees the same positions as alone
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def target_logprobs(self, contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                        end: bool | Sequence[bool] = False) -> tuple[Tensor, Tensor]:
        """log p(target_i | context, target_<i) for row pairs (context_r, target_r), in one
        forward pass. With `end` (per row or for all), one more column holds the log-probability
        that the answer ends after the target: log Σ_{s ∈ stop_ids} p(s | context, target).

        Returns lp (N, T') and mask (N, T'); padded positions are 0 in both. Gradients flow
        when called outside `torch.no_grad()`."""
        n = len(contexts)
        if len(targets) != n or n == 0:
            raise ValueError("target_logprobs needs one target per context, at least one row")
        if any(not c for c in contexts):
            raise ValueError("every context needs at least one token")
        ends = [end] * n if isinstance(end, bool) else [bool(e) for e in end]
        ctx_ids, ctx_mask = self._left_pad(contexts)  # (N, L)
        t_len = max(1, max(len(t) for t in targets))
        tgt = torch.full((n, t_len), self.tokenizer.pad_id, dtype=torch.long)
        tgt_mask = torch.zeros((n, t_len), dtype=torch.long)
        for i, t in enumerate(targets):
            if t:
                tgt[i, :len(t)] = torch.tensor(t, dtype=torch.long)
                tgt_mask[i, :len(t)] = 1
        tgt, tgt_mask = tgt.to(self.device), tgt_mask.to(self.device)
        ids = torch.cat([ctx_ids, tgt], dim=1)  # (N, L+T)
        mask = torch.cat([ctx_mask, tgt_mask], dim=1)
        # only the last T+1 positions need logits: the vocabulary projection is the costly part
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask),
                         logits_to_keep=t_len + 1, use_cache=False)
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (N, T+1, V): col i predicts token i
        lp = logp[:, :-1, :].gather(-1, tgt[:, :, None]).squeeze(-1)  # (N, T)
        fmask = tgt_mask.to(lp.dtype)
        lp = lp * fmask
        if not any(ends):
            return lp, fmask
        stop = torch.tensor(sorted(self.tokenizer.stop_ids), device=logp.device)
        end_lp = torch.logsumexp(logp.index_select(-1, stop), dim=-1)  # (N, T+1)
        lengths = tgt_mask.sum(-1)  # (N,) the end column of each row is right after its target
        end_col = torch.zeros_like(end_lp).scatter(1, lengths[:, None], 1.0)
        end_col = end_col * torch.tensor(ends, dtype=end_col.dtype, device=end_col.device)[:, None]
        lp = torch.cat([lp, lp.new_zeros((n, 1))], dim=1) + end_lp * end_col
        return lp, torch.cat([fmask, fmask.new_zeros((n, 1))], dim=1) + end_col

    # ------------------------------------------------------------ incremental decoding

    @torch.no_grad()
    def prefill(self, contexts: Sequence[Sequence[int]]) -> tuple[DecodeState, Tensor]:
        """Run the contexts; returns the state and next-token log-probs (N, V)."""
        from transformers import DynamicCache

        ids, mask = self._left_pad(contexts)
        pos = self._positions(mask)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                         cache=cache, use_cache=True, logits_to_keep=1)
        state = DecodeState(cache, mask, pos[:, -1] + 1)  # the cache grows in place
        return state, torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)

    @torch.no_grad()
    def step(self, state: DecodeState, tokens: Tensor) -> Tensor:
        """Feed one token per row (N,); returns next-token log-probs (N, V)."""
        state.mask = torch.cat([state.mask, state.mask.new_ones((state.mask.shape[0], 1))], dim=1)
        out = self.model(input_ids=tokens[:, None].to(self.device), attention_mask=state.mask,
                         position_ids=state.next_pos[:, None], cache=state.cache,
                         use_cache=True, logits_to_keep=1)
        state.next_pos = state.next_pos + 1
        return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)


def torch_folder(model: PackagedModel, progress: bool = True) -> Path:
    """Dequantize a packaged GGUF into a safetensors folder in the cache, once (≈1 min); later
    loads read the folder in seconds. The weights are exactly the GGUF's, so llama.cpp and
    torch run the same model. Needs the `gguf` package (the `llama` extra)."""
    from ragline.generate.packaged import cache_dir

    stem = model.name.removesuffix(".gguf").replace("-q4_k_m", "")
    target = cache_dir() / "models" / f"{stem}-torch-v1"
    if (target / "ragline-converted.json").is_file():
        return target
    gguf = model.path(progress)
    try:
        import gguf as _gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError:
        from ragline.errors import missing_extra

        raise missing_extra("gguf", "llama") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to torch (one time, about a minute)…", model.name)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype=torch.float32)
        # the weights are plain float32 now; drop the GGUF marker so they can be saved
        hf.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "ragline-converted.json").write_text(json.dumps({"from": gguf.name,
                                                                "sha256": model.sha256}))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"could not convert {model.name} to torch: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
