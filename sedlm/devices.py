"""Device resolution shared by training, loading and serving; the precision generation runs in."""

from __future__ import annotations

import contextlib

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


# Precision of training (train.precision) and generation (sample.precision): "auto" is bf16 autocast on CUDA, fp32
# elsewhere; "bf16" needs CUDA.
PRECISIONS = ("auto", "bf16", "fp32")


def generation_autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The autocast context generation runs in: bf16 on a CUDA device unless ``precision`` is "fp32"
    ("auto" and "bf16"), plain fp32 elsewhere ("bf16" off CUDA is an error naming the fix). Samplers keep
    their state in fp32 and draw categoricals in fp64 (autocast leaves fp64 tensors alone); only the
    network's matrix products run in bf16."""
    if precision not in PRECISIONS:
        raise SedlmError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if precision == "bf16":
            raise SedlmError("sample.precision=bf16 needs a CUDA device; CPU sampling runs in fp32 (use auto)")
        return contextlib.nullcontext()
    if precision == "fp32" or not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)
