"""Turn a denoiser into text: starting noise, guidance, a sampler from the registry, argmax decoding.

Classifier-free guidance (Ho & Salimans 2022; SED, Strudel et al. 2022 §3.3), both passes in one
batched forward, with s = 1 meaning no guidance:
    cond       x0 = x0(x_t, 0, 0) + s * (x0(x_t, c, sc) - x0(x_t, 0, 0))   conditioning and
               self-conditioning dropped together, as in training. A request with nothing given
               has nothing to guide on: it runs unguided (one network call per step) and says so.
    self_cond  x0 = x0(x_t, c, 0) + s * (x0(x_t, c, sc) - x0(x_t, c, 0))   guidance on the
               self-conditioning estimate alone (works for unconditional samples; two calls per step).
Estimate post-processing, applied to every network call's x0 before guidance combines them:
    score_temp  interp models: x0 = softmax(logits / score_temp) E (CDCD's score temperature)
    clamp       x0 -> the nearest embedding row (Diffusion-LM's clamping trick)
Given positions (prompt, template text, seq2seq source) are held at their clean embedding: every
estimate there is replaced by E[w], so each sampler's state at those positions follows the forward
process from the given token exactly, as the model saw it in training, and the output keeps it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from sedlm.diffusion.schedules import get_schedule
from sedlm.diffusion.schedules import time_grid as make_time_grid
from sedlm.errors import SedlmError
from sedlm.model.denoiser import SEDDenoiser
from sedlm.sampling.core import Callback, DenoiseFn
from sedlm.sampling.samplers import check_per_position, get_sampler
from sedlm.sampling.templates import Layout

GUIDANCE_MODES = ("cond", "self_cond")


def guidance_applies(guidance: float, mode: str, conditioned: bool) -> bool:
    """Whether a request runs guided (two network rows per step) with these options."""
    if mode not in GUIDANCE_MODES:
        raise SedlmError(f"unknown guidance mode '{mode}'; valid modes: {', '.join(GUIDANCE_MODES)}")
    return guidance != 1.0 and (conditioned or mode == "self_cond")


def make_denoise_fn(
    model: SEDDenoiser,
    cond: torch.Tensor | None = None,  # (B, L, De) clean embeddings of given positions
    cond_mask: torch.Tensor | None = None,  # (B, L) 1 at given positions
    guidance: float = 1.0,
    score_temp: float = 1.0,
    clamp: bool = False,
    guidance_mode: str = "cond",
    sc_weight: float | None = None,
) -> DenoiseFn:
    """Wrap the model as ``(x_t, t, self_cond) -> x0_hat`` with conditioning and guidance applied and
    given positions held at their clean embedding. ``sc_weight`` is the guidance weight input of a model
    trained with it (ELF's self-conditioning guidance in one call)."""
    given = None if cond_mask is None else cond_mask.bool()[..., None]  # (B, L, 1)
    weight = {} if sc_weight is None else {"w": sc_weight}

    def estimate(*args: torch.Tensor) -> torch.Tensor:
        x0 = model(*args, score_temp=score_temp, **weight)[0]
        if clamp:  # rows have equal norms, so the largest inner product is the nearest row
            E = model.embedding.weight
            x0 = E[(x0 @ E.t()).argmax(-1)]
        return x0

    def hold(x0: torch.Tensor) -> torch.Tensor:
        return x0 if given is None else torch.where(given, cond.to(x0.dtype), x0)

    if not guidance_applies(guidance, guidance_mode, cond is not None):
        if guidance != 1.0:
            warnings.warn(
                f"guidance {guidance:g} in mode 'cond' needs given tokens (a prompt, template or source); "
                "this request has none, so it runs unguided (sample.guidance_mode=self_cond guides "
                "on self-conditioning instead)",
                stacklevel=2,
            )
        return lambda x, t, sc: hold(estimate(x, t, sc, cond, cond_mask))

    def guided(x: torch.Tensor, t: torch.Tensor, sc: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        zeros = torch.zeros_like(x)
        c = zeros if cond is None else cond
        m = x.new_zeros(x.shape[:2]) if cond_mask is None else cond_mask.to(x.dtype)
        c_u, m_u = (torch.zeros_like(c), torch.zeros_like(m)) if guidance_mode == "cond" else (c, m)
        out = estimate(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([sc, zeros]), torch.cat([c, c_u]), torch.cat([m, m_u])
        )
        x0_c, x0_u = out[:B], out[B:]
        return hold(x0_u + guidance * (x0_c - x0_u))

    return guided


@torch.inference_mode()
def sample_ids(
    model: SEDDenoiser,
    *,
    n: int,
    seq_len: int,
    steps: int,
    sampler: str = "ddpm",
    schedule: str = "cosine",
    logsnr_shift: float = 0.0,
    time_grid: str = "uniform",
    rho: float = 7.0,
    guidance: float = 1.0,
    guidance_mode: str = "cond",
    score_temp: float = 1.0,
    clamp: bool = False,
    seed: int = 0,
    callback: Callback | None = None,
    layout: Layout | None = None,
    pad_id: int | None = None,
    self_condition: bool = True,
    sc_weight: float | None = None,
    **sampler_kw: Any,
) -> torch.Tensor:
    """Sample ``n`` rows of ``seq_len`` token ids (padding included). (n, L)

    With a ``layout`` (prompt, template or seq2seq source), its given tokens condition every
    network call through the clean-embedding channel and are copied into the output unchanged;
    positions in ``layout.no_pad`` never decode to ``pad_id``. ``self_condition=False`` feeds every call a
    zero estimate, as a model trained without self-conditioning saw in training.
    """
    fn = get_sampler(sampler)
    device = next(model.parameters()).device
    cond = mask = None
    if layout is not None:
        seq_len = layout.ids.shape[-1]  # ids/given may be (L,) or one row per sample (n, L)
        given_ids = layout.ids.to(device).expand(n, seq_len)  # (n, L)
        mask = layout.given.to(device).expand(n, seq_len).float()  # (n, L)
        cond = model.embed(given_ids) * mask[..., None]  # (n, L, De)
    # A generator of its own, so sampling noise never coincides with any initialisation draw.
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, seq_len, model.cfg.d_embed, generator=g, device=device)  # (n, L, De)
    alpha_bar = get_schedule(schedule, logsnr_shift)
    ts = make_time_grid(steps, device=device, kind=time_grid, schedule=alpha_bar, rho=rho, knots=model.time_warp)
    if model.position_knots is not None:
        alpha_bar = _per_position(model, alpha_bar, seq_len, sampler, time_grid)
    x0 = fn(
        make_denoise_fn(model, cond, mask, guidance, score_temp, clamp, guidance_mode, sc_weight),
        x,
        ts,
        alpha_bar=alpha_bar,
        generator=g,
        callback=callback,
        self_condition=self_condition,
        **sampler_kw,
    )
    return decode_ids(model, x0, layout, pad_id)


def _per_position(model: SEDDenoiser, alpha_bar: Any, seq_len: int, sampler: str, time_grid: str) -> Any:
    """The schedule of a position-warped model (SeqDiffuSeq) as samplers see it: the shared time u maps
    to each position's abar_i(u) = abar(F_i^-1(u)). (K + 1,) -> (K + 1, L, 1)"""
    check_per_position(sampler, time_grid)
    return lambda u: alpha_bar(model.position_times(u.float(), seq_len).to(u.dtype))[..., None]


def decode_ids(
    model: SEDDenoiser, x0: torch.Tensor, layout: Layout | None = None, pad_id: int | None = None
) -> torch.Tensor:
    """Argmax tokens of an x0 estimate (n, L, De) -> (n, L). A ``layout``'s given tokens are copied
    in unchanged and its ``no_pad`` positions never decode to ``pad_id``. Works on the final estimate
    and on the intermediate ones a sampler callback sees (a live preview)."""
    logits = model.decode_logits(x0)  # (n, L, V)
    if layout is None:
        return logits.argmax(-1)
    n, L = logits.shape[:2]
    if pad_id is not None and layout.no_pad.any():
        logits[:, layout.no_pad.to(logits.device), pad_id] = float("-inf")
    given = layout.given.to(logits.device).expand(n, L)
    return torch.where(given, layout.ids.to(logits.device).expand(n, L), logits.argmax(-1))
