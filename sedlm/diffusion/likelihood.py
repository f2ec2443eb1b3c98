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


def sampling_logits(
    model: torch.nn.Module,
    z: torch.Tensor,
    t: torch.Tensor,
    self_condition: bool,
    cond: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    blocks: dict[str, torch.Tensor] | None = None,
    hold: Callable[[torch.Tensor], torch.Tensor] = lambda x0: x0,
) -> torch.Tensor:
    """An SED denoiser's token logits at z (B, L, D) and times t (B,) as sampling computes them: with
    ``self_condition``, a first pass without gradient and without an estimate, then a second pass fed the
    first's estimate (``hold`` puts the given positions back into it); else one pass. (B, L, V) float32"""
    blocks = blocks or {}
    zero = torch.zeros_like(z)
    if not self_condition:
        return model(z, t, zero, cond, mask, **blocks)[1].float()
    with torch.no_grad():
        first = model(z, t, zero, cond, mask, **blocks)[0]
    return model(z, t, hold(first), cond, mask, **blocks)[1].float()


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
        logits = sampling_logits(model, z, t, self_condition, cond, mask, blocks, hold)  # (B, L, V)
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


# --- The probability-flow ODE estimate (LangFlow, Chen et al. 2026, §3; its released eval_ppl.py) -------------

# y, s -> x_hat(y, s): the clean estimate as a function of the scaled state y = z / sigma. (B, L, D), float -> same
Velocity = Callable[[torch.Tensor, float], torch.Tensor]


def ode_flow(
    velocity: Velocity, y0: torch.Tensor, s: list[float], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The probability-flow ODE of a variance-preserving process in y = z / sigma = s x + eps, s = sqrt(SNR) =
    e^(lam/2): dy/ds = E[x | y_s] (the DDIM ODE), run with Euler steps along the decreasing grid ``s`` from y0 at
    s[0] to y_K at s[-1]. The instantaneous change of variables (Chen et al. 2018, Neural ODEs, Thm. 1) gives
    -log p(y0) = -log p(y_K) + int_{s_K}^{s_0} div_y x_hat ds; the divergence is one Hutchinson probe per step,
    u^T (d x_hat / d y) u with Rademacher u (unbiased, and of lower variance than LangFlow's Gaussian probe).
    Returns (the integral per row (B,), y_K (B, L, D))."""
    y = y0.detach()
    flow = torch.zeros(len(y0), dtype=torch.float64, device=y0.device)
    for s_now, s_next in zip(s[:-1], s[1:]):
        if s_now == s_next:
            continue
        u = torch.randint(0, 2, y.shape, generator=generator, device=y.device).to(y.dtype) * 2 - 1  # Rademacher
        with torch.enable_grad():
            y_in = y.clone().requires_grad_(True)
            v = velocity(y_in, s_now)
            # u^T J (B, L, D); an estimate that ignores the state has J = 0
            jvp = torch.autograd.grad((u * v).sum(), y_in)[0] if v.requires_grad else torch.zeros_like(y)
        flow += (u * jvp).double().sum((1, 2)) * (s_now - s_next)
        y = (y + v.detach() * (s_next - s_now)).detach()
    return flow, y


def embedding_ode_nll(
    model: torch.nn.Module,
    ids: torch.Tensor,
    schedule: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    *,
    sigma0: float = 1e-2,
    self_condition: bool = True,
    times: torch.Tensor | None = None,
    steps: int = 128,
    posterior_from: float = 0.0,
) -> dict[str, torch.Tensor]:
    """LangFlow's likelihood estimate of an SED denoiser for each row of ``ids`` (B, L), in nats per row:
    {"reconstruction", "flow", "prior", "total"}, each (B,). With q(y0 | w) = N(s0 E_w, I) at the low-noise end
    (the same lam_max as ``embedding_vlb``) and the model's ODE density p(y0),

        -log p(w) <= E_q[-log p(w | y0)] + E_q[-log p(y0)] - H(q) = reconstruction + flow + prior,

    where flow is ``ode_flow``'s integral from y0 to the high-noise end lam_min and prior = -log N(y_K; 0, I)
    - H(q) = ||y_K||^2 / 2 - L D / 2 (the two log 2 pi terms cancel; y_K is taken as standard normal, as
    LangFlow does). The ODE steps at ``times`` (decreasing, 1 -> 0; the uniform grid of ``steps`` when None),
    clipped to [lam_min, lam_max]. x_hat is the expected embedding under the model's tokens (both
    self-conditioning passes, the first without gradient, as LangFlow's evaluator), with the state's own
    token likelihood added to the logits from lam >= ``posterior_from`` on, as in ``embedding_vlb`` (any
    velocity field defines a density, so any such estimate keeps the bound). The figure is a bound only up to the Euler
    error of the ODE; the probe's noise averages out over rows."""
    from sedlm.diffusion.schedules import log_snr, time_of
    from sedlm.errors import SedlmError

    if getattr(model, "position_knots", None) is not None:
        raise SedlmError("the ODE estimate does not cover per-position schedules (diffusion.position_warp) yet")
    x = model.embed(ids).float()  # (B, L, D)
    E = model.embedding.weight.float()
    lam_min, lam_max = log_snr_range(schedule, sigma0)
    blocks = {"clean": ids} if 0 < getattr(model, "block_size", 0) < ids.shape[1] else {}
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64) if times is None else times.double().cpu()
    lam_grid = log_snr(schedule(grid)).clamp(lam_min, lam_max)
    s_grid = torch.exp(lam_grid / 2).flip(0).tolist()  # decreasing: low noise first

    def logits_at(z: torch.Tensor, lam: float) -> torch.Tensor:
        lam_t = torch.full((len(z),), lam, dtype=torch.float64, device=z.device)
        t = time_of(schedule, torch.sigmoid(lam_t[:1])).to(z.dtype).expand(len(z))  # one time for every row
        logits = sampling_logits(model, z, t, self_condition, blocks=blocks)  # (B, L, V)
        return logits + likelihood_logits(model, z, lam_t) if lam >= posterior_from else logits

    def velocity(y: torch.Tensor, s: float) -> torch.Tensor:
        lam = 2 * math.log(s)
        sigma = math.sqrt(1 / (1 + math.exp(lam)))
        return torch.softmax(logits_at(y * sigma, lam), -1) @ E

    s0 = s_grid[0]
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    y0 = s0 * x + eps
    with torch.no_grad():
        recon = token_nll(logits_at(y0 * math.sqrt(1 / (1 + s0**2)), lam_max).double(), ids).sum(1)
    flow, y_end = ode_flow(velocity, y0, s_grid, generator)
    prior = 0.5 * y_end.double().pow(2).sum((1, 2)) - 0.5 * x[0].numel()
    return {"reconstruction": recon, "flow": flow, "prior": prior, "total": recon + flow + prior}
