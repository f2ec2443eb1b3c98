"""Time warping (CDCD, Dieleman et al. 2022, §3.3): learn where in [0, 1] the noise levels that matter are.

The cross-entropy of the denoiser's token prediction rises with t. A monotone piecewise-linear function
F is fitted to the observed loss as a function of t and normalised to F(0) = 0, F(1) = 1 (a CDF):

    training   t = F^-1(u),  u ~ U[0, 1]   (density dF/dt: noise levels where the loss changes fastest)
    sampling   t_i = F^-1(1 - i / K)       (steps spaced uniformly in F)

F is mixed with the identity, F <- (1 - floor) F + floor t, so every noise level keeps some probability
and F stays invertible. The running statistics and the knots are buffers of the denoiser, so they are
saved in every checkpoint and a resumed run continues with the same warp.

LangFlow's proposal (Chen et al. 2026, arXiv 2604.11748) is the parametric version (``fit="gumbel"``): in
the log noise-to-signal ratio gamma = -log SNR(t), the loss curve is fitted as H F_G(gamma) with the Gumbel
CDF F_G(gamma) = exp(-exp(-(gamma - mu) / beta)), so the warp is F(t) = F_G(gamma(t)) normalised over
[0, 1]: training draws gamma from the fitted Gumbel and sampling steps sit at its quantiles. The fit is a
weighted least-squares grid search over (mu, beta) with H in closed form; the floor is 1e-3, for
invertibility only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sedlm.diffusion.schedules import log_snr

BINS = 64
FLOOR = 0.1


def isotonic(y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """The non-decreasing sequence closest to ``y`` in weighted least squares (pool adjacent violators). (N,)"""
    w = torch.ones_like(y) if w is None else w
    vals, wts, sizes = [], [], []
    for v, wt in zip(y.tolist(), w.tolist()):
        vals.append(v), wts.append(wt), sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, n2 = vals.pop(), wts.pop(), sizes.pop()
            total = wts[-1] + w2
            vals[-1] = (vals[-1] * wts[-1] + v2 * w2) / total if total > 0 else (vals[-1] + v2) / 2
            wts[-1], sizes[-1] = total, sizes[-1] + n2
    out = [v for v, n in zip(vals, sizes) for _ in range(n)]
    return torch.tensor(out, dtype=y.dtype)


def fit_warp(sums: torch.Tensor, counts: torch.Tensor, floor: float = FLOOR) -> torch.Tensor:
    """Knots F(k / B), k = 0..B, from per-bin loss sums and counts (B,). (B + 1,), F(0) = 0, F(1) = 1."""
    sums, counts = sums.double().cpu(), counts.double().cpu()
    B = len(sums)
    grid = torch.linspace(0, 1, B + 1, dtype=torch.float64)
    seen = counts > 0
    if int(seen.sum()) < 2:
        return grid.float()
    centres = (grid[:-1] + grid[1:]) / 2
    means = torch.zeros(B, dtype=torch.float64)
    means[seen] = sums[seen] / counts[seen]
    # empty bins: linear interpolation between the nearest seen bins (constant beyond the ends)
    idx = torch.nonzero(seen).squeeze(1)
    pos = torch.searchsorted(centres[idx].contiguous(), centres).clamp(1, len(idx) - 1)
    lo, hi = idx[pos - 1], idx[pos]
    frac = ((centres - centres[lo]) / (centres[hi] - centres[lo])).clamp(0, 1)
    means = torch.where(seen, means, means[lo] + frac * (means[hi] - means[lo]))
    mono = isotonic(means, counts.clamp(min=1e-3))
    # knots at bin edges: F(0) = loss at the first centre, F(1) = at the last; then normalise
    edges = torch.cat([mono[:1], (mono[:-1] + mono[1:]) / 2, mono[-1:]])
    span = edges[-1] - edges[0]
    F = (edges - edges[0]) / span if span > 1e-12 else grid
    return ((1 - floor) * F + floor * grid).float()


GUMBEL_FLOOR = 1e-3


def gumbel_cdf(gamma: torch.Tensor, mu: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor:
    """F_G(gamma) = exp(-exp(-(gamma - mu) / beta))."""
    return torch.exp(-torch.exp(-(gamma - mu) / beta))


def fit_gumbel(
    sums: torch.Tensor,
    counts: torch.Tensor,
    schedule: Callable[[torch.Tensor], torch.Tensor],
    floor: float = GUMBEL_FLOOR,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LangFlow's noise-level proposal fitted to per-bin losses (B,): (knots (B + 1,), params (mu, beta, H)).
    The loss at bin centre c is modelled as H F_G(gamma(c)), gamma = -log SNR; (mu, beta) minimise the weighted
    squared error over a grid (H solved exactly for each), and the knots are F_G(gamma) at the bin edges,
    normalised to F(0) = 0, F(1) = 1. Fewer than two seen bins leave the identity."""
    sums, counts = sums.double().cpu(), counts.double().cpu()
    B = len(sums)
    grid = torch.linspace(0, 1, B + 1, dtype=torch.float64)
    seen = counts > 0
    if int(seen.sum()) < 2:
        return grid.float(), torch.tensor([0.0, 1.0, 0.0])
    centres = (grid[:-1] + grid[1:]) / 2
    gamma = -log_snr(schedule(centres[seen]).double())  # (S,)
    m, w = sums[seen] / counts[seen], counts[seen]
    mus = torch.linspace(float(gamma.min()), float(gamma.max()), 241, dtype=torch.float64)
    betas = torch.logspace(-1.5, 1.0, 61, dtype=torch.float64)
    f = gumbel_cdf(gamma[None, None], mus[:, None, None], betas[None, :, None])  # (M, Bt, S)
    H = ((w * f * m).sum(-1) / (w * f * f).sum(-1).clamp(min=1e-12)).clamp(min=0)  # (M, Bt)
    err = (w * (H[..., None] * f - m) ** 2).sum(-1)
    i = int(err.argmin())
    mu, beta = mus[i // len(betas)], betas[i % len(betas)]
    edges = gumbel_cdf(-log_snr(schedule(grid).double()), mu, beta)
    span = edges[-1] - edges[0]
    F = (edges - edges[0]) / span if span > 1e-12 else grid
    params = torch.tensor([float(mu), float(beta), float(H.flatten()[i])])
    return ((1 - floor) * F + floor * grid).float(), params


def warp(knots: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """u = F(t), piecewise linear through the knots. (N,) -> (N,)"""
    B = len(knots) - 1
    x = t.clamp(0, 1) * B
    i = x.floor().clamp(max=B - 1).long()
    k = knots.to(t.device, t.dtype)
    return k[i] + (x - i) * (k[i + 1] - k[i])


@torch.no_grad()
def record(sums: torch.Tensor, counts: torch.Tensor, t: torch.Tensor, loss: torch.Tensor, decay: float = 0.999) -> None:
    """Add per-example losses (B,) at times t (B,) to decaying per-bin statistics, in place, on device
    (no host sync)."""
    B = len(sums)
    i = (t.detach() * B).long().clamp(0, B - 1)
    sums.mul_(decay).index_add_(0, i, loss.detach().to(sums.dtype))
    counts.mul_(decay).index_add_(0, i, torch.ones_like(t, dtype=counts.dtype))


# --- Per-position warps: SeqDiffuSeq's adaptive noise schedule (Yuan et al. 2022, §3.3) ---------------
# SeqDiffuSeq gives every position i its own schedule, chosen so that the loss at that position rises
# linearly along the diffusion time. With the base schedule abar(t) and the position's normalised loss
# curve F_i(t) (the same monotone fit as above, one per position), a shared time u in [0, 1] puts
# position i at t_i = F_i^-1(u), i.e. at abar_i(u) = abar(F_i^-1(u)): equal steps in u are equal steps
# in each position's loss. Training draws u ~ U[0, 1] per example; samplers step uniformly in u.


def unwarp_rows(knots: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """t_i = F_i^-1(u) for every position: knots (P, B + 1) strictly increasing rows, u (...,) -> (..., P)."""
    P, B1 = knots.shape
    k = knots.to(u.device, u.dtype)
    shape = u.shape
    uu = u.reshape(-1, 1).clamp(0, 1).expand(-1, P).t().contiguous()  # (P, N)
    i = (torch.searchsorted(k.contiguous(), uu, right=True) - 1).clamp(0, B1 - 2)  # (P, N)
    lo, hi = k.gather(1, i), k.gather(1, i + 1)
    frac = ((uu - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    t = ((i + frac) / (B1 - 1)).clamp(0, 1)  # (P, N)
    return t.t().reshape(*shape, P)


@torch.no_grad()
def record_rows(
    sums: torch.Tensor,
    counts: torch.Tensor,
    t: torch.Tensor,
    loss: torch.Tensor,
    weight: torch.Tensor,
    decay: float = 0.999,
) -> None:
    """Add per-position losses (N, P) at per-position times t (N, P), weighted by ``weight`` (N, P; 0 where a
    position was not generated), to decaying per-(position, bin) statistics sums/counts (P', B), in place.
    Rows longer than P' count toward the last position's statistics."""
    P, B = sums.shape
    pos = torch.arange(t.shape[1], device=t.device).clamp(max=P - 1)[None].expand_as(t)  # (N, P)
    flat = pos * B + (t.detach() * B).long().clamp(0, B - 1)
    w = weight.detach().to(sums.dtype)
    sums.mul_(decay).view(-1).index_add_(0, flat.reshape(-1), (loss.detach().to(sums.dtype) * w).reshape(-1))
    counts.mul_(decay).view(-1).index_add_(0, flat.reshape(-1), w.reshape(-1))


def fit_warp_rows(sums: torch.Tensor, counts: torch.Tensor, floor: float = FLOOR) -> torch.Tensor:
    """One ``fit_warp`` per position. (P, B) -> (P, B + 1)"""
    return torch.stack([fit_warp(s, c, floor) for s, c in zip(sums, counts)])


WARP_START, WARP_EVERY = 100, 50  # training steps before the first fit, and between refits


@torch.no_grad()
def update_warps(
    model: torch.nn.Module,
    metrics: dict[str, torch.Tensor],
    step: int,
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda v: v,
) -> None:
    """Record one training step's losses in the model's warp statistics and refit every WARP_EVERY steps:
    the CDCD warp from per-example (t, CE), the per-position ones from per-position (t_i, loss_i); ``gather``
    collects a metric from every process (nothing is gathered for a model without warps)."""
    refit = step + 1 >= WARP_START and (step + 1) % WARP_EVERY == 0
    if getattr(model, "time_warp", None) is not None:
        record(model.warp_sums, model.warp_counts, gather(metrics["t"]), gather(metrics["ce_rows"]))
        if refit and getattr(model, "warp_gumbel", None) is not None:  # LangFlow's parametric proposal
            knots, params = fit_gumbel(model.warp_sums, model.warp_counts, model.schedule)
            model.time_warp.copy_(knots)
            model.warp_gumbel.copy_(params)
        elif refit:
            model.time_warp.copy_(fit_warp(model.warp_sums, model.warp_counts))
    if getattr(model, "position_knots", None) is not None:
        t, loss, weight = (gather(metrics[k]) for k in ("pos_t", "pos_loss", "pos_gen"))
        record_rows(model.position_sums, model.position_counts, t, loss, weight)
        if refit:
            model.position_knots.copy_(fit_warp_rows(model.position_sums, model.position_counts))
