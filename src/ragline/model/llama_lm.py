"""The RAG model's generator on llama.cpp: the same interface as `CausalLM` (prefill, step,
reorder, teacher-forced log-probs), so RAG-Token and RAG-Sequence decode through llama.cpp
with the code that decodes them in torch (ragline.model.decode).

    lm = LlamaLM("qwen2.5-0.5b", adapter=Path("adapter.gguf"))     # LoRA applied by llama.cpp
    rm = RagModel(lm)
    rm.generate(question, hits, "rag-token")

Every context row is a sequence in one llama.cpp KV cache (kv_unified), decoded in one batch:
k passages are k sequences, a beam is a copy of its parent's sequence (`seq_cp` shares the
cells, it copies nothing). Each passage context is read once into a resident sequence: the
beam rows start as copies of it, and the rescoring of RAG-Sequence's candidates (teacher
forcing) continues from it instead of reading the passage again. Contexts that share a prefix
(the system turn of an instruct model) copy it from a resident that holds it.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ragline.errors import ModelUnavailableError, missing_extra
from ragline.generate.prompts import ChatTemplate
from ragline.model.lm import END_TOKENS

log = logging.getLogger(__name__)

class LlamaTokenizer:
    """llama.cpp's own tokenizer, with the `Tokenizer` interface of ragline.model.lm."""

    def __init__(self, llm: Any, template: ChatTemplate | None) -> None:
        import llama_cpp

        self.llm = llm
        self.template = template
        vocab = llm._model.vocab
        self.eos_id = int(llama_cpp.llama_vocab_eos(vocab))
        pad = int(llama_cpp.llama_vocab_pad(vocab))
        self.pad_id = pad if pad >= 0 else self.eos_id
        bos = int(llama_cpp.llama_vocab_bos(vocab))
        self.bos_id = bos if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(vocab) else None
        self.newline_id = self.encode("\n")[-1]
        buf = ctypes.create_string_buffer(256)
        stops = {self.newline_id}
        for i in range(llm.n_vocab()):
            n = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, False)
            if n > 0 and b"\n" in buf.raw[:n]:
                stops.add(i)
        ends = {self.eos_id}
        for name in END_TOKENS:
            ids = llm.tokenize(name.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                ends.add(int(ids[0]))
        self.end_ids = frozenset(ends)
        self.stop_ids = frozenset(stops | ends)

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self.llm.tokenize(text.encode("utf-8"), add_bos=False,
                                                  special=True)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.llm.detokenize(list(ids), special=False).decode("utf-8", "replace"))

    def chat(self, turns: list[tuple[str, str]]) -> str | None:
        return self.template(turns) if self.template is not None else None


@dataclass
class LlamaState:
    """The rows being decoded: each row's KV sequence and next position."""

    lm: LlamaLM
    seqs: list[int]
    pos: list[int]

    def select(self, rows: Tensor) -> None:
        """Keep (and duplicate) rows, as `DecodeState.select`: each new row gets a copy of
        its parent's cells, then the old rows go."""
        old_seqs, old_pos = self.seqs, self.pos
        picked = [int(r) for r in rows.tolist()]
        new = self.lm._alloc(len(picked))
        for dst, r in zip(new, picked, strict=True):
            self.lm._copy(old_seqs[r], dst)
        self.lm._free(old_seqs)
        self.seqs = new
        self.pos = [old_pos[r] for r in picked]


class LlamaLM:
    """A GGUF model (a name of ragline.registry.LLMS or a path) with an optional LoRA adapter
    in GGUF, as the RAG models' generator. `n_ctx` is the KV cache all rows share."""

    device = torch.device("cpu")

    def __init__(self, model: str | Path | None = None, adapter: Path | None = None,
                 n_ctx: int = 8192, n_threads: int | None = None, n_batch: int = 2048) -> None:
        self.model_spec = model
        self.adapter = adapter
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(os.cpu_count() or 1, 8))
        self.n_batch = n_batch
        self.name = str(model or "")
        self.llm: Any = None
        self.tokenizer: LlamaTokenizer
        self._ctx: Any = None
        self._free_ids: list[int] = []
        self._residents: dict[tuple[int, ...], tuple[int, np.ndarray]] = {}
        self._working: set[int] = set()

    # ------------------------------------------------------------ loading

    def load(self) -> LlamaLM:
        if self.llm is not None:
            return self
        try:
            # _internals: the bindings' own context and batch wrappers; the high-level Llama has
            # one sequence only (llama-cpp-python is pinned in pyproject, so this API is fixed)
            import llama_cpp
            from llama_cpp import _internals
        except ImportError:
            raise missing_extra("llama-cpp-python", "llama-cpp") from None
        from ragline.generate.llama import LlamaCppGenerator

        # the concat generator loads the model and its chat template the same way
        gen = LlamaCppGenerator(self.model_spec, n_ctx=256, n_threads=self.n_threads,
                                lora_path=self.adapter)
        gen.load()
        self.llm = gen.llm
        self.name = gen.id
        self.tokenizer = LlamaTokenizer(self.llm, gen.chat_template())
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx
        params.n_batch = self.n_batch
        params.n_ubatch = min(512, self.n_batch)
        self._max_seqs = llama_cpp.llama_max_parallel_sequences()
        params.n_seq_max = self._max_seqs
        params.kv_unified = True  # one cell pool: a copied sequence shares its parent's cells
        params.n_threads = params.n_threads_batch = self.n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        try:
            self._ctx = _internals.LlamaContext(model=self.llm._model, params=params,
                                                verbose=False)
        except ValueError as e:
            raise ModelUnavailableError(f"llama.cpp could not make a context: {e}") from None
        if self.llm._lora_adapter is not None:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.llm._lora_adapter)
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, scales):
                raise ModelUnavailableError(f"llama.cpp could not apply {self.adapter}")
        self._mem = self._ctx.memory
        self._free_ids = list(range(self._max_seqs - 1, -1, -1))
        self._batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1,
                                            verbose=False)
        self._n_vocab = int(self.llm.n_vocab())
        return self

    # ------------------------------------------------------------ sequences

    def _alloc(self, n: int) -> list[int]:
        if n > len(self._free_ids):
            raise ModelUnavailableError(
                f"llama.cpp RAG decoding needs {n} more sequences than the {self._max_seqs} "
                "it has; use fewer passages or beams")
        ids = [self._free_ids.pop() for _ in range(n)]
        self._working.update(ids)
        return ids

    def _free(self, ids: Sequence[int]) -> None:
        import llama_cpp

        for s in ids:
            llama_cpp.llama_memory_seq_rm(self._mem, s, -1, -1)
            self._working.discard(s)
            self._free_ids.append(s)

    def _copy(self, src: int, dst: int, upto: int = -1) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_cp(self._mem, src, dst, 0 if upto >= 0 else -1, upto)

    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> list[np.ndarray]:
        """Decode (token, position, sequence, wants logits) items, n_batch at a time; returns
        the log-probs (V,) of the items that want them, in order."""
        import llama_cpp

        out = []
        b = self._batch.batch
        for start in range(0, len(items), self.n_batch):
            chunk = items[start:start + self.n_batch]
            b.n_tokens = len(chunk)
            wanted = []
            for i, (tok, pos, seq, logits) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
                b.seq_id[i][0] = seq
                b.logits[i] = logits
                if logits:
                    wanted.append(i)
            rc = llama_cpp.llama_decode(self._ctx.ctx, b)
            if rc != 0:
                raise ModelUnavailableError(
                    f"llama.cpp could not decode a batch (code {rc}): the KV cache of "
                    f"{self.n_ctx} tokens is full; use fewer or shorter passages")
            for i in wanted:
                ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, i)
                out.append(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy())
        return out

    def _resident(self, contexts: Sequence[Sequence[int]]) -> list[tuple[int, np.ndarray]]:
        """Each context read into a sequence of its own (once), and its next-token logits.
        Residents no context of this call needs are dropped afterwards."""
        keys = [tuple(c) for c in contexts]
        new = [k for k in dict.fromkeys(keys) if k not in self._residents]
        # the first new context alone, then the others in one batch: they can copy the prefix
        # they share with it (an instruct model's system turn) instead of reading it again
        for wave in (new[:1], new[1:]):
            if not wave:
                continue
            items, owners = [], []
            for key in wave:
                seq = self._alloc(1)[0]
                self._working.discard(seq)  # a resident outlives the decoding calls
                best, shared = None, 0
                for other, (oseq, _) in self._residents.items():
                    n = _common_prefix(key, other)
                    if n > shared:
                        best, shared = oseq, n
                shared = min(shared, len(key) - 1)  # the last token is read for its logits
                if best is not None and shared > 0:
                    self._copy(best, seq, shared)
                items += [(t, p, seq, p == len(key) - 1)
                          for p, t in enumerate(key) if p >= shared]
                owners.append((key, seq))
            for (key, seq), logits in zip(owners, self._decode(items), strict=True):
                self._residents[key] = (seq, _log_softmax(logits))
        keep = set(keys)
        for key in [k for k in self._residents if k not in keep]:
            seq, _ = self._residents.pop(key)
            self._free([seq])
        return [self._residents[k] for k in keys]

    # ------------------------------------------------------------ the CausalLM interface

    @torch.no_grad()
    def prefill(self, contexts: Sequence[Sequence[int]]) -> tuple[LlamaState, Tensor]:
        self.load()
        if self._working:  # rows of an earlier call that nobody will step again
            self._free(sorted(self._working))
        res = self._resident(contexts)
        seqs = self._alloc(len(contexts))
        for (src, _), dst in zip(res, seqs, strict=True):
            self._copy(src, dst)
        state = LlamaState(self, seqs, [len(c) for c in contexts])
        return state, torch.from_numpy(np.stack([lp for _, lp in res]))

    @torch.no_grad()
    def step(self, state: LlamaState, tokens: Tensor) -> Tensor:
        toks = [int(t) for t in tokens.tolist()]
        logits = self._decode([(t, p, s, True)
                               for t, p, s in zip(toks, state.pos, state.seqs, strict=True)])
        state.pos = [p + 1 for p in state.pos]
        return torch.from_numpy(np.stack([_log_softmax(x) for x in logits]))

    @torch.no_grad()
    def target_logprobs(self, contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                        end: bool | Sequence[bool] = False) -> tuple[Tensor, Tensor]:
        """As `CausalLM.target_logprobs` (no gradient): each row continues from its context's
        resident sequence, so a passage is never read twice."""
        self.load()
        n = len(contexts)
        if len(targets) != n or n == 0:
            raise ValueError("target_logprobs needs one target per context, at least one row")
        ends = [end] * n if isinstance(end, bool) else [bool(e) for e in end]
        res = self._resident(contexts)
        width = max(1, max(len(t) for t in targets)) + (1 if any(ends) else 0)
        lp = torch.zeros((n, width))
        mask = torch.zeros((n, width))
        stop = np.array(sorted(self.tokenizer.stop_ids))
        # rows go through in groups that fit the free sequences
        group = max(1, len(self._free_ids) - 1)
        for start in range(0, n, group):
            rows = list(range(start, min(n, start + group)))
            seqs = self._alloc(len(rows))
            items = []
            for r, seq in zip(rows, seqs, strict=True):
                self._copy(res[r][0], seq)
                base = len(contexts[r])
                items += [(t, base + j, seq, True) for j, t in enumerate(targets[r])]
            logits = iter(self._decode(items))
            for r in rows:
                dists = [res[r][1]] + [_log_softmax(next(logits)) for _ in targets[r]]
                for j, t in enumerate(targets[r]):
                    lp[r, j] = float(dists[j][t])
                    mask[r, j] = 1.0
                if ends[r]:
                    last = dists[len(targets[r])]
                    lp[r, len(targets[r])] = float(np.logaddexp.reduce(last[stop]))
                    mask[r, len(targets[r])] = 1.0
            self._free(seqs)
        return lp, mask


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return (x - np.log(np.exp(x).sum())).astype(np.float32)
