"""What every sampler shares: the denoiser and callback types, the sampler protocol, fresh noise, and
self-conditioning as one wrapper (sedlm.sampling.samplers holds the samplers and their registry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict[str, Any]], None]


class Sampler(Protocol):
    def __call__(
        self,
        denoise_fn: DenoiseFn,
        x: torch.Tensor,
        ts: torch.Tensor,
        *,
        alpha_bar: Callable[[torch.Tensor], torch.Tensor],
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
        **kw: Any,
    ) -> torch.Tensor: ...


def fresh_noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class SelfConditioning:
    """Self-conditioning at sampling time (Chen et al. 2022, "Analog Bits", §3.2), in one place for every
    sampler: each call of the denoiser receives the previous call's x0 estimate (zeros on the first
    call, and always when ``enabled`` is False). (x_t, t) -> x0_hat"""

    def __init__(self, denoise_fn: DenoiseFn, enabled: bool = True):
        self.fn, self.enabled = denoise_fn, enabled
        self.last: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sc = self.last if self.enabled and self.last is not None else torch.zeros_like(x)
        self.last = self.fn(x, t, sc)
        return self.last
