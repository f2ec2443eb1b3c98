"""Device resolution shared by training, loading and serving."""

from __future__ import annotations

import torch

from sedlm.errors import SedlmError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU) or a torch device name, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SedlmError(f"device '{name}' asked for but no CUDA device is available; use cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SedlmError(f"unknown device '{name}'; use cpu, cuda, cuda:N, mps or auto") from None
