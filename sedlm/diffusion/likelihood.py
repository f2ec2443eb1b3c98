"""A variational upper bound on -log p(text) for embedding diffusion, in nats.

Variational diffusion models (Kingma et al. 2021, "Variational Diffusion Models", eqs. 11-17) bound the
negative log-likelihood of data x by three terms; for text, x = E[w] is the embedding of the tokens w
and the last latent is read out to tokens, as in Plaid (Gulrajani & Hashimoto 2023, §3):

    -log p(w) <= E_q[-log p(w | z_max)]                      reconstruction at the low-noise end
                 + KL(q(z_min | x) || N(0, I))                 prior at the high-noise end
                 + 1/2 int_{lam_min}^{lam_max} e^lam E_eps ||x - x_hat(z_lam, lam)||^2 dlam     diffusion

with z_lam = sqrt(abar) x + sqrt(1 - abar) eps, abar = sigmoid(lam), lam the log-SNR. The diffusion term
is VDM's continuous-time loss L_inf = -1/2 E_t[SNR'(t) ||x - x_hat||^2] (eq. 17) written in lam = log SNR
(dSNR = e^lam dlam), so it depends on the schedule only through its end points (VDM §5.1): the network is
called at the time t with log-SNR lam under the model's own schedule. Any function of z_lam is a valid
x_hat, so the model's two self-conditioning passes (the second fed the first's estimate, as when
sampling) give a valid bound.

Estimation: ``points`` log-SNR values per row on a randomly shifted lattice,
lam_k = lam_min + (lam_max - lam_min) (k + r) / K with one r ~ U[0, 1) per row (unbiased, and far lower
variance than independent draws), one eps each. The prior term is exact. Rows are independent, so the
standard error of a mean over rows is their standard deviation / sqrt(rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sedlm.losses import token_nll

# z -> x_hat at log-SNR lam: (B, L, D), (B,) -> (B, L, D)
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def diffusion_term(
    denoise: Denoise, x: torch.Tensor, lam_min: float, lam_max: float, points: int, generator: torch.Generator
) -> torch.Tensor:
    """1/2 int e^lam ||x - x_hat(z_lam)||^2 dlam per row, summed over positions and dimensions. x (B, L, D) -> (B,)
    (a denoiser that returns given positions exactly adds nothing there)"""
    B = x.shape[0]
    width = lam_max - lam_min
    r = torch.rand(B, generator=generator, device=x.device, dtype=torch.float64)  # (B,) the lattice's shift
    total = torch.zeros(B, dtype=torch.float64, device=x.device)
    for k in range(points):
        lam = lam_min + width * (k + r) / points  # (B,)
        err = (x - denoise(noisy(x, lam, generator), lam.to(x.dtype))).double().pow(2).sum((1, 2))  # (B,)
        total += 0.5 * torch.exp(lam) * err
    return total * width / points


def prior_term(x: torch.Tensor, lam_min: float, scored: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(alpha x, sigma^2 I) || N(0, I)) per row at lam_min, alpha^2 = sigmoid(lam), sigma^2 = sigmoid(-lam):
    1/2 sum (alpha^2 x^2 + sigma^2 - 1 - log sigma^2), over the ``scored`` positions (B, L) when given.
    x (B, L, D) -> (B,)"""
    a2, s2 = 1 / (1 + math.exp(-lam_min)), 1 / (1 + math.exp(lam_min))
    per_pos = (0.5 * (a2 * x.double().pow(2) + s2 - 1 - math.log(s2))).sum(-1)  # (B, L)
    return (per_pos if scored is None else per_pos * scored).sum(1)


def noisy(x: torch.Tensor, lam: float | torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A draw of z_lam given x, at one log-SNR or one per row (B,). (B, L, D)"""
    lam = torch.as_tensor(lam, dtype=torch.float64, device=x.device)
    ab = torch.sigmoid(lam).to(x.dtype).reshape(-1, 1, 1) if lam.dim() else torch.sigmoid(lam).to(x.dtype)
    return ab.sqrt() * x + (1 - ab).sqrt() * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def log_snr_range(schedule: Callable[[torch.Tensor], torch.Tensor], sigma0: float) -> tuple[float, float]:
    """(lam_min, lam_max): the schedule's log-SNR at t = 1 and at t = 0, the latter capped at the data noise
    level 1 / sigma0^2 (below which the embedding itself is only known to sigma0)."""
    from sedlm.diffusion.schedules import log_snr

    ends = log_snr(schedule(torch.tensor([1.0, 0.0], dtype=torch.float64))).tolist()
    return ends[0], min(ends[1], 2 * math.log(1 / sigma0))


def likelihood_logits(model: torch.nn.Module, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The log-likelihood of z_lam under each token's row, up to a constant: z ~ N(sqrt(abar) E_w, 1 - abar) gives
    (sqrt(abar) <z, E_w> - abar ||E_w||^2 / 2) / (1 - abar). (B, L, V)"""
    E = model.embedding.weight.float()  # (V, D)
    ab = torch.sigmoid(lam.double()).float()[:, None, None]  # (B, 1, 1)
    return (ab.sqrt() * (z.float() @ E.t()) - 0.5 * ab * E.pow(2).sum(-1)) / (1 - ab)


@torch.no_grad()
def embedding_vlb(
    model: torch.nn.Module,
    ids: torch.Tensor,
    schedule: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    *,
    sigma0: float = 1e-2,
    points: int = 32,
    self_condition: bool = True,
    posterior_from: float = 0.0,
    given: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The three terms of the bound for each row of ``ids`` (B, L) under an SED denoiser, in nats per row:
    {"reconstruction", "diffusion", "prior", "total"}, each (B,).

    ``given`` (B, L) bool makes it a bound on -log p(the other tokens | the given ones): the given tokens
    condition the network as in training and sampling (clean embeddings and mask, estimates held at them),
    their latents follow the forward process from their own embedding, and only the other positions are
    counted in each term; a held estimate adds nothing to the diffusion term there.

    The model is called at the time t with abar_t = sigmoid(lam) (both self-conditioning passes when
    ``self_condition``, the second fed the first's estimate, as when sampling), and x_hat is the embedding
    expected under its token distribution, softmax(logits) E. From lam >= ``posterior_from`` on, the
    logits are combined with the likelihood of z under each row (``likelihood_logits``): the posterior
    over tokens with the model as prior, which becomes exact as the noise vanishes, where any error left
    in x_hat would be blown up by the weight e^lam. Any function of z_lam gives a valid bound; the switch
    point is fixed in advance, never chosen per row. The reconstruction p(w | z_max) is the same
    distribution at lam_max."""
    from sedlm.diffusion.schedules import time_of
    from sedlm.errors import SedlmError

    if getattr(model, "position_knots", None) is not None:
        raise SedlmError("the likelihood bound does not cover per-position schedules (diffusion.position_warp) yet")
    x = model.embed(ids).float()  # (B, L, D)
    E = model.embedding.weight.float()
    lam_min, lam_max = log_snr_range(schedule, sigma0)
    held = None if given is None else given.bool()[..., None]  # (B, L, 1)
    cond = None if held is None else x * held  # (B, L, D) clean embeddings of the given positions
    mask = None if given is None else given.float()  # (B, L)

    def hold(x0: torch.Tensor) -> torch.Tensor:
        return x0 if held is None else torch.where(held, x, x0)

    # A block model (diffusion.block_size) reads the true clean blocks before each block: the terms are then
    # each block's bound given the blocks before it, and their sum bounds -log p(row) by the chain rule.
    blocks = {"clean": ids} if 0 < getattr(model, "block_size", 0) < ids.shape[1] else {}

    def token_logits(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        t = time_of(schedule, torch.sigmoid(lam.double())).to(z.dtype)  # (B,)
        first, logits = model(z, t, torch.zeros_like(z), cond, mask, **blocks)
        if self_condition:
            logits = model(z, t, hold(first), cond, mask, **blocks)[1]
        logits = logits.float()  # (B, L, V)
        late = (lam >= posterior_from)[:, None, None]
        return torch.where(late, logits + likelihood_logits(model, z, lam), logits) if late.any() else logits

    def estimate(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return hold(torch.softmax(token_logits(z, lam), -1) @ E)

    scored = None if given is None else (~given.bool()).double()  # (B, L)
    diffusion = diffusion_term(estimate, x, lam_min, lam_max, points, generator)
    z_max = noisy(x, lam_max, generator)
    logits = token_logits(z_max, torch.full((len(ids),), lam_max, device=x.device))
    recon_pos = token_nll(logits.double(), ids)  # (B, L)
    recon = (recon_pos if scored is None else recon_pos * scored).sum(1)
    prior = prior_term(x, lam_min, scored)
    return {"reconstruction": recon, "diffusion": diffusion, "prior": prior, "total": recon + diffusion + prior}
