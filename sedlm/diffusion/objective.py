"""The SED training objective with two-pass self-conditioning (Strudel et al. 2022, §3).

For tokens w, clean-ish data x0 = E[w] + sigma0 * n, t ~ U[0, 1] and
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, the loss on generated positions is

    L = mse_weight * ||x0_hat - x0||^2 / d_embed + ce_weight * CE(R x0_hat, w) + round_weight * CE(R x0, w)

With ``mse_weighting="velocity"`` the MSE is weighted by 1 / t'^2 (t' the straight path's time at that
noise level): the flow-matching loss ||v - v_hat||^2 (Lipman et al. 2023) of the velocity v = eps - x0
implied by an x0 estimate on x_t = (1 - t') x0 + t' eps. ``time_dist="logit_normal"`` draws training
times as sigmoid(m + s n) (Esser et al. 2024) instead of uniformly.

The last term is Diffusion-LM's rounding loss (Li et al. 2022, eq. 2, L_round = -log p(w | x0)): it
scores the readout on the data's own x0, so a jointly learned table stays decodable.

Self-conditioning (Chen et al. 2022, "Analog Bits"):
    both         pass 1 with a zero estimate, pass 2 with stop-grad(pass-1 x0_hat); the loss is
                 the mean over both passes, so both are optimised (the SED paper)
    half_nograd  with probability 1/2 a gradient-free pass 1 feeds pass 2, else a single pass
                 with a zero estimate; only the last pass is optimised (Analog Bits)
    off          a single pass with a zero estimate
At given positions the self-conditioning estimate is the clean embedding, as at sampling time.
Classifier-free guidance: per example, conditioning and self-conditioning are dropped together
with probability p_uncond.

Self-conditioning guidance trained in (ELF; ``guidance_input``, with half_nograd): every call gets a
per-example weight w, log(1 + w) ~ U[log(1 + w_min), log(1 + w_max)], and on self-conditioned examples the
MSE target becomes x0 + (1 - 1/w) sg(x0_c - x0_u), with x0_u the gradient-free first pass (no estimate) and
x0_c the graded pass's own output; its fixed point is x0_u + w (x0 - x0_u). The CE is unchanged.
"""

from __future__ import annotations

import math

import torch

from sedlm.config import DiffusionConfig
from sedlm.diffusion.schedules import Schedule, path_scale, unwarp
from sedlm.losses import token_nll

VELOCITY_WEIGHT_MAX = 100.0  # the velocity weight 1 / t'^2 grows without bound as t' -> 0


def _pass_loss(
    x0_hat: torch.Tensor,
    logits: torch.Tensor,
    x0: torch.Tensor,
    ids: torch.Tensor,
    gen: torch.Tensor,
    cfg: DiffusionConfig,
    weight: torch.Tensor | None = None,  # (B, L) per-position weight of the MSE, or None for 1
) -> tuple[torch.Tensor, ...]:
    n = gen.sum().clamp(min=1)
    mse_pos = ((x0_hat - x0) ** 2).mean(-1) * gen  # (B, L)
    if weight is not None:
        mse_pos = mse_pos * weight
    ce_pos = token_nll(logits.float(), ids) * gen  # (B, L)
    mse, ce = mse_pos.sum() / n, ce_pos.sum() / n
    ce_rows = ce_pos.sum(1) / gen.sum(1).clamp(min=1)  # (B,) for the time-warping fit
    loss_pos = cfg.mse_weight * mse_pos + cfg.ce_weight * ce_pos  # (B, L) for the per-position warp
    return cfg.mse_weight * mse + cfg.ce_weight * ce, mse, ce, ce_rows, loss_pos


def sed_loss(
    model: torch.nn.Module,  # a denoiser with SEDDenoiser's interface (sedlm.model.denoiser)
    ids: torch.Tensor,  # (B, L) token ids
    cfg: DiffusionConfig,
    schedule: Schedule,
    generator: torch.Generator,
    cond_mask: torch.Tensor | None = None,  # (B, L) bool, True where the token is given
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the scalar loss and detached metrics (mse, ce, token accuracy of the final pass, and the
    per-example t and CE); metrics stay tensors so that a training step makes no host sync."""
    B, L = ids.shape
    dev = ids.device
    cond_mask = torch.zeros(B, L, dtype=torch.bool, device=dev) if cond_mask is None else cond_mask
    gen = (~cond_mask).float()  # loss only on generated positions

    clean = model.embed(ids)  # (B, L, De)
    x0 = clean + cfg.sigma0 * torch.randn(clean.shape, generator=generator, device=dev)
    bs = cfg.block_size if 0 < cfg.block_size < L else 0  # block diffusion (a whole-row block is plain SED)
    nb = L // bs if bs else 1
    if bs:  # one time per block, stratified across a row's blocks: u_k = (r + pi(k)) / nb, r ~ U[0, 1) and
        # pi a random order of the strata per row (so no block is always the least noisy)
        r = torch.rand(B, 1, generator=generator, device=dev)
        strata = torch.rand(B, nb, generator=generator, device=dev).argsort(dim=1)  # (B, nb)
        t = ((r + strata) / nb).flatten()  # (B * nb,)
    else:
        t = torch.rand(B, generator=generator, device=dev)
    if cfg.time_dist == "logit_normal":  # Esser et al. 2024, eq. 19: t = sigmoid(m + s n)
        t = torch.sigmoid(cfg.time_mean + cfg.time_std * torch.randn(t.shape, generator=generator, device=dev))
    if model.time_warp is not None:  # built with diffusion.time_warp
        t = unwarp(model.time_warp, t)  # t = F^-1(u): CDCD time warping
    if bs:  # each block's positions at its block's time
        t_noise = t.view(B, nb).repeat_interleave(bs, dim=1)  # (B, L)
        t_in = t_noise
    else:
        # SeqDiffuSeq's per-position schedule: position i is noised at t_i = F_i^-1(t), and the network is
        # given those times (mapped once here, not again in every pass)
        t_noise = model.position_times(t, L) if model.position_knots is not None else t[:, None]  # (B, L) or (B, 1)
        t_in = t_noise if model.position_knots is not None else t  # (B, L) or (B,)
    ab = schedule(t_noise)[..., None]  # (B, L or 1, 1)
    weight = None
    if cfg.mse_weighting == "velocity":  # ||v - v_hat||^2 = ||x0 - x0_hat||^2 / t'^2 on the straight path
        t_path = (1 - ab).clamp(min=0).sqrt() * path_scale(ab)  # the straight path's time at this log-SNR
        weight = t_path.squeeze(-1).pow(-2).clamp(max=VELOCITY_WEIGHT_MAX).expand(B, L)  # (B, L)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=generator, device=dev)

    keep = (torch.rand(B, generator=generator, device=dev) >= cfg.p_uncond).float()  # CFG dropout
    m = cond_mask.float() * keep[:, None]  # (B, L)
    cond = clean * m[..., None]
    zeros = torch.zeros_like(x0)

    def hold(first: torch.Tensor) -> torch.Tensor:
        """The self-conditioning estimate holds given positions at their clean embedding, exactly
        as the samplers hold them (sedlm.sampling.generate)."""
        return torch.where(cond_mask[..., None], clean, first)

    blocks: dict[str, torch.Tensor] = {"clean": ids} if bs else {}  # the clean row beside the noisy one
    w = None
    if cfg.guidance_input:  # ELF: log(1 + w) uniform between the bounds
        lo, hi = math.log1p(cfg.guidance_w_min), math.log1p(cfg.guidance_w_max)
        w = torch.expm1(lo + (hi - lo) * torch.rand(B, generator=generator, device=dev))  # (B,)
        blocks["w"] = w

    mode = cfg.self_cond
    if mode == "half_nograd":
        use_sc = bool(torch.rand((), generator=generator, device=dev) < 0.5)
        mode = "sc_nograd" if use_sc else "off"

    if mode == "off":
        x0_hat, logits = model(x_t, t_in, zeros, cond, m, **blocks)
        loss, mse, ce, ce_rows, loss_pos = _pass_loss(x0_hat, logits, x0, ids, gen, cfg, weight)
    elif mode == "sc_nograd":
        with torch.no_grad():
            first, _ = model(x_t, t_in, zeros, cond, m, **blocks)
        x0_hat, logits = model(x_t, t_in, hold(first) * keep[:, None, None], cond, m, **blocks)
        target = x0
        if w is not None:  # examples whose self-conditioning was dropped keep the plain target
            mix = ((1 - 1 / w) * keep)[:, None, None]  # (B, 1, 1)
            target = x0 + mix * (x0_hat.detach() - first)
        loss, mse, ce, ce_rows, loss_pos = _pass_loss(x0_hat, logits, target, ids, gen, cfg, weight)
    else:  # both passes optimised
        first, logits1 = model(x_t, t_in, zeros, cond, m, **blocks)
        loss1 = _pass_loss(first, logits1, x0, ids, gen, cfg, weight)[0]
        x0_hat, logits = model(x_t, t_in, hold(first.detach()) * keep[:, None, None], cond, m, **blocks)
        loss2, mse, ce, ce_rows, loss_pos = _pass_loss(x0_hat, logits, x0, ids, gen, cfg, weight)
        loss = 0.5 * (loss1 + loss2)

    if cfg.round_weight:
        rounding = token_nll(model.decode_logits(x0).float(), ids)  # (B, L)
        loss = loss + cfg.round_weight * (rounding * gen).sum() / gen.sum().clamp(min=1)
    with torch.no_grad():
        acc = ((logits.argmax(-1) == ids).float() * gen).sum() / gen.sum().clamp(min=1)
    # scalars are logged; the per-example (t, CE) pairs feed time warping, the per-position ones its
    # per-position form
    if bs:  # the time warp fits (t, CE) pairs: one per block
        ce_pos = token_nll(logits.detach().float(), ids) * gen  # (B, L)
        ce_rows = ce_pos.view(B, nb, bs).sum(-1) / gen.view(B, nb, bs).sum(-1).clamp(min=1)  # (B, nb)
        ce_rows = ce_rows.flatten()
    out = {"mse": mse.detach(), "ce": ce.detach(), "acc": acc, "t": t.detach(), "ce_rows": ce_rows.detach()}
    if model.position_knots is not None:
        out.update(pos_t=t_noise.detach(), pos_loss=loss_pos.detach(), pos_gen=gen)
    return loss, out
