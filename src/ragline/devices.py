"""Where models run: the device asked for, else CUDA when torch sees a GPU, else the CPU.

    pick_device()          # "cuda" on a GPU machine, "cpu" elsewhere
    pick_device("cpu")     # what was asked for
"""

from __future__ import annotations


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch  # only when a torch model is about to be placed

    return "cuda" if torch.cuda.is_available() else "cpu"
