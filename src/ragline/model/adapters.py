"""LoRA adapters on the RAG model's generator (peft): train a few million parameters instead of
all of them, save them as a small folder, load them onto the base model again.

    add_lora(lm, rank=16)                     # lm.model now trains only the adapters
    save_adapter(lm, folder)                  # adapter_config.json + adapter_model.safetensors
    load_adapter(lm, folder)                  # merged into the weights, for answering
    load_adapter(lm, folder, trainable=True)  # kept apart, to go on training

LoRA (Hu et al. 2022) adds a low-rank update B·A to each linear layer of the transformer
blocks; the embedding and the output projection stay as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import peft

from ragline.errors import ModelUnavailableError
from ragline.generate.packaged import cache_dir
from ragline.model.lm import CausalLM

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_GGUF = "adapter.gguf"           # the same adapter for llama.cpp, beside it
# the adapter ragline ships for its default RAG generator, with provenance.json (data, licence,
# the command that made it, its steps and held-out metrics)
PACKAGED_ADAPTER = Path(__file__).resolve().parent / "default_adapter"


def add_lora(lm: CausalLM, rank: int = 16, alpha: int | None = None) -> None:
    """Wrap every linear layer of the transformer blocks in a LoRA adapter and freeze the rest.
    The adapters start at B = 0, so the model's outputs are unchanged until it trains."""
    config = peft.LoraConfig(r=rank, lora_alpha=int(alpha or 2 * rank), lora_dropout=0.0,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    # get_peft_model swaps the layers inside lm.model in place; the wrapper is kept to save
    lm.peft = peft.get_peft_model(lm.model, config)
    lm.model = lm.peft.get_base_model()


def has_adapter(lm: CausalLM) -> bool:
    return getattr(lm, "peft", None) is not None


def save_adapter(lm: CausalLM, folder: Path) -> None:
    """The adapter weights and their config only: a few MB where the model is hundreds."""
    if not has_adapter(lm):
        raise ValueError("this generator has no LoRA adapter to save")
    lm.peft.save_pretrained(str(folder), safe_serialization=True)


def load_adapter(lm: CausalLM, folder: Path, trainable: bool = False) -> None:
    """Put a saved adapter on `lm` (its base model). For answering it is merged into the
    weights, so decoding costs what the base model costs; to go on training it stays apart."""
    if not (folder / ADAPTER_FILE).is_file():
        raise ModelUnavailableError(f"{folder}: no LoRA adapter here ({ADAPTER_FILE} missing)")
    model = peft.PeftModel.from_pretrained(lm.model, str(folder), is_trainable=trainable)
    if trainable:
        lm.peft = model
        lm.model = model.get_base_model()
    else:
        lm.model = model.merge_and_unload()
        lm.peft = None
    lm.model.eval()


def packaged_adapter(base: str) -> Path | None:
    """The shipped adapter folder if it was trained on `base` (a registry name), else None."""
    meta = PACKAGED_ADAPTER / "provenance.json"
    if not (PACKAGED_ADAPTER / ADAPTER_FILE).is_file() or not meta.is_file():
        return None
    return PACKAGED_ADAPTER if json.loads(meta.read_text()).get("base") == base else None


def adapter_gguf(folder: Path, base_gguf: Path) -> Path:
    """`folder`'s adapter as a llama.cpp file: the one beside it, else one converted once into
    the cache (named by the adapter's bytes and the base model's file name, so a changed
    adapter or base converts again)."""
    if (folder / ADAPTER_GGUF).is_file():
        return folder / ADAPTER_GGUF
    digest = hashlib.sha256((folder / ADAPTER_FILE).read_bytes())
    digest.update(base_gguf.name.encode())
    out = cache_dir() / "adapters" / f"{digest.hexdigest()[:16]}.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        export_gguf(folder, base_gguf, out)
    return out


# llama.cpp reads these architectures' attention weights in the Hugging Face layout (no
# permutation of the query and key rows), so a LoRA update trained in torch applies as is
GGUF_LORA_ARCHES = ("qwen2", "gemma3")


def export_gguf(folder: Path, base_gguf: Path, out: Path) -> Path:
    """Write the adapter in `folder` as a llama.cpp LoRA file for the model in `base_gguf`:
    tensors `<gguf name>.lora_a` (rank, in) and `.lora_b` (out, rank), fp32, with its alpha.
    llama.cpp applies (alpha / rank) · B·A, as peft does."""
    try:
        import gguf
    except ImportError:
        from ragline.errors import missing_extra

        raise missing_extra("gguf", "llama") from None
    from safetensors.torch import load_file

    reader = gguf.GGUFReader(str(base_gguf))

    def meta(key: str) -> Any:
        f = reader.fields[key]
        value = f.parts[f.data[0]]
        return bytes(value).decode() if f.types[0] == gguf.GGUFValueType.STRING else value[0]

    arch = meta("general.architecture")
    if arch not in GGUF_LORA_ARCHES:
        raise ModelUnavailableError(f"a LoRA adapter for a {arch} model cannot go to llama.cpp "
                                    f"here (only {', '.join(GGUF_LORA_ARCHES)}); answer with "
                                    "the torch runtime (model.runtime = \"torch\")")
    blocks = int(meta(f"{arch}.block_count"))
    names = gguf.get_tensor_name_map(
        {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], blocks)
    config = json.loads((folder / "adapter_config.json").read_text())
    weights = load_file(str(folder / ADAPTER_FILE))
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config["lora_alpha"]))
    for key, tensor in sorted(weights.items()):
        # base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight → blk.3.attn_q.weight.lora_a
        module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        target = names.get_name(module)
        if target is None:
            raise ModelUnavailableError(f"{folder}: no llama.cpp tensor for {module}")
        suffix = "lora_a" if part.startswith("A") else "lora_b"
        writer.add_tensor(f"{target}.weight.{suffix}", tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
