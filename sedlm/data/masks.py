"""Conditioning masks: which positions are given (clean) and which the model generates.

All functions are pure, take an explicit ``torch.Generator`` and return a (B, L) bool tensor
that is True at *given* positions.

span     SED's span masking (Strudel et al. 2022, §3.2): n ~ U[1, M] spans from n - 1 sorted cut
         points; even spans are given, odd spans generated; the roles flip with probability
         ``flip_prob``; n = 1 means unconditional (nothing given).
prefix   the first k positions are given, k ~ U[1, L - 1] (prompt continuation).
none     nothing given (unconditional generation).
blank    free-length infilling (``blank_rows``): one interior window [a, b) is generated, holding the
         next k <= b - a tokens of the row followed by b - a - k padding tokens, and the row resumes
         after it; everything outside the window is given (never empty on either side). The model
         learns to write a blank's content and pad the rest of the window, so a ``[___]`` blank of
         any width gets text of a fitting length.
seq2seq  ``seq2seq_mask``: the source positions of each row are given, the target generated.

``conditioning`` draws a mixture of these per row; the ``blank`` kind also rewrites the row's tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sedlm.errors import SedlmError

MaskFn = Callable[[int, int, torch.Generator, torch.device], torch.Tensor]


def span_mask(
    B: int,
    L: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    max_spans: int = 5,
    flip_prob: float = 0.5,
) -> torch.Tensor:
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


def blank_rows(ids: torch.Tensor, pad_id: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-length blanks: per row an interior window [a, b), 1 <= a < b <= L - 1 (given text on both
    sides, as around a template's ``[___]``), holds the next k ~ U[1, b - a] tokens of the row then
    padding to b; the row's tokens after those k continue at b. A window never touches the row's
    ends: a region open to the end (a prompt's continuation, unconditional text) must keep meaning
    "text all the way", not "text, then padding". Rows shorter than 3 positions are left unchanged
    and fully given. ids (B, L) -> (ids (B, L), given (B, L) bool, False inside the window)."""
    B, L = ids.shape
    dev = ids.device
    if L < 3:
        return ids.clone(), torch.ones(B, L, dtype=torch.bool, device=dev)
    cuts = 1 + (torch.rand(B, 2, generator=generator, device=dev) * (L - 2)).long().clamp(max=L - 3)  # in [1, L - 2]
    lo, hi = cuts.min(1).values, cuts.max(1).values
    a, b = lo, hi + 1  # (B,) window [a, b): 1 <= a < b <= L - 1
    k = 1 + (torch.rand(B, generator=generator, device=dev) * (b - a).float()).long().clamp(max=(b - a - 1))  # (B,)
    pos = torch.arange(L, device=dev)[None]  # (1, L)
    a_, b_, k_ = a[:, None], b[:, None], k[:, None]
    in_window = (pos >= a_) & (pos < b_)
    pad = in_window & (pos >= a_ + k_)
    src = torch.where(pos >= b_, pos - (b_ - a_ - k_), pos)  # after the window: skip the padding slots
    out = torch.where(pad, torch.full_like(ids, pad_id), ids.gather(1, src.clamp(max=L - 1).expand(B, L)))
    return out, ~in_window


MASKS: dict[str, MaskFn] = {"span": span_mask, "prefix": prefix_mask, "none": no_mask}
ROW_TRANSFORMS = {"blank": blank_rows}  # kinds that rewrite the row's tokens as well as choose given positions


def parse_mixture(spec: str) -> dict[str, float]:
    """``"span:0.8,prefix:0.2"`` -> {"span": 0.8, "prefix": 0.2}, weights normalised to sum 1."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition(":")
        if name not in MASKS and name not in ROW_TRANSFORMS:
            raise SedlmError(f"unknown mask '{name}' in '{spec}'; valid masks: {', '.join([*MASKS, *ROW_TRANSFORMS])}")
        try:
            weights[name] = float(w) if w else 1.0
        except ValueError:
            raise SedlmError(f"mask weight '{w}' in '{spec}' is not a number (e.g. span:0.8,prefix:0.2)") from None
    total = sum(weights.values())
    if not weights or total <= 0 or any(v < 0 for v in weights.values()):
        raise SedlmError(
            f"mask mixture '{spec}' needs non-negative weights with a positive sum, e.g. span:0.8,prefix:0.2"
        )
    return {k: v / total for k, v in weights.items()}


def _kinds(spec: str, B: int, generator: torch.Generator, device) -> tuple[list[str], torch.Tensor]:
    weights = parse_mixture(spec)
    edges = torch.tensor(list(weights.values()), device=device).cumsum(0)[:-1]
    return list(weights), torch.bucketize(torch.rand(B, generator=generator, device=device), edges, right=True)  # (B,)


def mixture_mask(
    spec: str, B: int, L: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Each row draws its mask kind from the mixture ``spec`` (mask kinds only). (B, L) bool."""
    names, kind = _kinds(spec, B, generator, device)
    out = torch.zeros(B, L, dtype=torch.bool, device=device)
    for i, name in enumerate(names):
        if name in ROW_TRANSFORMS:
            raise SedlmError(f"'{name}' rewrites rows; draw it with conditioning(), not mixture_mask()")
        rows = (kind == i).nonzero().squeeze(1).to(device)
        if len(rows):
            out[rows] = MASKS[name](len(rows), L, generator, device)
    return out


def conditioning(
    spec: str, ids: torch.Tensor, pad_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row draws its kind from the mixture ``spec``: ids (B, L) -> (ids (B, L), given (B, L) bool).
    Mask kinds keep the row's tokens; ``blank`` rewrites them (see ``blank_rows``)."""
    B, L = ids.shape
    names, kind = _kinds(spec, B, generator, ids.device)
    ids, given = ids.clone(), torch.zeros(B, L, dtype=torch.bool, device=ids.device)
    for i, name in enumerate(names):
        rows = (kind == i).nonzero().squeeze(1)
        if not len(rows):
            continue
        if name in ROW_TRANSFORMS:
            ids[rows], given[rows] = ROW_TRANSFORMS[name](ids[rows], pad_id, generator)
        else:
            given[rows] = MASKS[name](len(rows), L, generator, ids.device)
    return ids, given
