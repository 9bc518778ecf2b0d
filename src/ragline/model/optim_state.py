"""Optimizer state in a checkpoint as safetensors, never pickle: resuming a training run reads
a file that may come from elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """Optimizer state as safetensors (tensors) plus its hyper-parameters in the metadata."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {f"{pid}.{key}": (v if isinstance(v, torch.Tensor) else torch.tensor(v)).contiguous()
               for pid, st in sd["state"].items() for key, v in st.items()}
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    save_file({k: v.cpu() for k, v in tensors.items()}, str(path),
              metadata={"param_groups": json.dumps(groups)})


def load_optimizer_state(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    state: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
        for name in f.keys():
            pid, key = name.split(".", 1)
            state.setdefault(int(pid), {})[key] = f.get_tensor(name)
    opt.load_state_dict({"state": state, "param_groups": groups})
