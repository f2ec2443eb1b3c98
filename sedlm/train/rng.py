"""Randomness of a training run, so that a step is a pure function of (seed, step) and a resumed
run repeats an uninterrupted one exactly.

    chunk_generator   the noise of micro-batch k of step s: seeded by (seed, s, k), so it does not
                      depend on which process computes that micro-batch
    step_seed         the global RNG (dropout, anything drawn without a generator) is reseeded every
                      step from (seed, s, process)
    rng_state         every RNG of the process (torch CPU and CUDA, numpy, Python), saved in
                      training_state/ and restored on resume
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] & (2**63 - 1))


def chunk_generator(device: torch.device, seed: int, step: int, chunk: int) -> torch.Generator:
    """The generator of micro-batch ``chunk`` of step ``step``'s global batch."""
    return torch.Generator(device=device).manual_seed(_seed(seed, step, chunk))


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG of this process: torch (CPU, each CUDA device) as tensors; numpy and ``random`` as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss], "python": [py[0], list(py[1]), py[2]]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (CUDA states only onto the same number of devices)."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda")), key=lambda k: int(k[4:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "numpy" in meta:
        kind, keys, pos, has_gauss, gauss = meta["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))


def step_seed(seed: int, step: int, rank: int) -> int:
    """Reseeding the global RNG every step (dropout, anything drawn without a generator) makes the
    step a pure function of (seed, step, process) as well."""
    return _seed(seed, step, rank, 17)
