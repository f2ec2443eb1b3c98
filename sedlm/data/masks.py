"""Conditioning masks: which positions are given (clean) and which the model generates.

All functions are pure, take an explicit ``torch.Generator`` and return a (B, L) bool tensor
that is True at *given* positions.

span     SED's span masking (Strudel et al. 2022, §3.2): n ~ U[1, M] spans from n - 1 sorted cut
         points; even spans are given, odd spans generated; the roles flip with probability
         ``flip_prob``; n = 1 means unconditional (nothing given).
prefix   the first k positions are given, k ~ U[1, L - 1] (prompt continuation).
none     nothing given (unconditional generation).
seq2seq  ``seq2seq_mask``: the source positions of each row are given, the target generated.
"""

from __future__ import annotations

from typing import Callable

import torch

from sedlm.errors import SedlmError

MaskFn = Callable[[int, int, torch.Generator, torch.device], torch.Tensor]


def span_mask(B: int, L: int, generator: torch.Generator, device: torch.device | str = "cpu",
              max_spans: int = 5, flip_prob: float = 0.5) -> torch.Tensor:
    """SED span masks. (B, L) bool, True = given."""
    n = torch.randint(1, max_spans + 1, (B,), generator=generator, device=device)  # spans per row
    n = torch.minimum(n, torch.full_like(n, L))
    # n - 1 distinct cut points among the L - 1 gaps between positions: the lowest-scoring gaps.
    scores = torch.rand(B, L - 1, generator=generator, device=device)
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank of each gap's score, (B, L-1)
    cut = rank < (n - 1)[:, None]  # (B, L-1)
    span_id = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=device), cut.long().cumsum(1)], dim=1)  # (B, L)
    flip = torch.rand(B, generator=generator, device=device) < flip_prob
    given = (span_id % 2 == 0) ^ flip[:, None]
    return given & (n > 1)[:, None]


def prefix_mask(B: int, L: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first k ~ U[1, L - 1] positions are given. (B, L) bool."""
    k = torch.randint(1, max(2, L), (B,), generator=generator, device=device)
    return torch.arange(L, device=device)[None] < k[:, None]


def no_mask(B: int, L: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.zeros(B, L, dtype=torch.bool, device=device)


def seq2seq_mask(src_lens: torch.Tensor, L: int) -> torch.Tensor:
    """Positions before each row's source length are given. src_lens: (B,) -> (B, L) bool."""
    return torch.arange(L, device=src_lens.device)[None] < src_lens[:, None]


MASKS: dict[str, MaskFn] = {"span": span_mask, "prefix": prefix_mask, "none": no_mask}


def parse_mixture(spec: str) -> dict[str, float]:
    """``"span:0.8,prefix:0.2"`` -> {"span": 0.8, "prefix": 0.2}, weights normalised to sum 1."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition(":")
        if name not in MASKS:
            raise SedlmError(f"unknown mask '{name}' in '{spec}'; valid masks: {', '.join(MASKS)}")
        try:
            weights[name] = float(w) if w else 1.0
        except ValueError:
            raise SedlmError(f"mask weight '{w}' in '{spec}' is not a number (e.g. span:0.8,prefix:0.2)") from None
    total = sum(weights.values())
    if not weights or total <= 0 or any(v < 0 for v in weights.values()):
        raise SedlmError(f"mask mixture '{spec}' needs non-negative weights with a positive sum, e.g. span:0.8,prefix:0.2")
    return {k: v / total for k, v in weights.items()}


def mixture_mask(spec: str, B: int, L: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """Each row draws its mask kind from the mixture ``spec``. (B, L) bool."""
    weights = parse_mixture(spec)
    names = list(weights)
    edges = torch.tensor(list(weights.values()), device=device).cumsum(0)[:-1]
    kind = torch.bucketize(torch.rand(B, generator=generator, device=device), edges, right=True)  # (B,) index into names
    out = torch.zeros(B, L, dtype=torch.bool, device=device)
    for i, name in enumerate(names):
        rows = (kind == i).nonzero().squeeze(1).to(device)
        if len(rows):
            out[rows] = MASKS[name](len(rows), L, generator, device)
    return out
