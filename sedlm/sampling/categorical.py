"""Exact categorical draws for the discrete families (AR, MDLM, SUNDAE), in float64.

Inverse-CDF sampling: with C_k = sum_{j <= k} w_j and one uniform u per row, the draw is the first k with
C_k > u C_V, i.e. P(k) = w_k / C_V exactly up to float64 rounding. It costs one uniform and one cumulative sum
per row, where ``torch.multinomial`` (one sample) races V exponential draws per row; float64 keeps the tail of
a large vocabulary (float32 categorical draws lower the entropy of samples; Zheng et al. 2024, arXiv 2409.02908).
"""

from __future__ import annotations

import torch


def categorical(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of non-negative ``weights`` (..., V), each row with a positive sum (it need not be 1).
    A zero-weight index is never drawn. (..., V) -> (...) long"""
    cdf = weights.detach().double().cumsum(-1)  # (..., V), non-decreasing
    total = cdf[..., -1:]  # (..., 1)
    u = torch.rand(total.shape, generator=generator, device=cdf.device, dtype=torch.float64) * total
    # u < total strictly, so the first C_k > u is an index with positive weight (rounding could reach total)
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)
