"""Noise schedules as pure functions of continuous time t in [0, 1].

Each schedule maps t to abar_t, the signal variance of the variance-preserving forward process
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                       (Ho et al. 2020, eq. 4)
with abar_0 ~= 1 (clean) and abar_1 ~= 0 (pure noise). log-SNR is log(abar / (1 - abar)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from sedlm.errors import SedlmError

Schedule = Callable[[torch.Tensor], torch.Tensor]
_EPS = 1e-7


def cosine(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021: abar_t = cos^2((t + s)/(1 + s) * pi/2) / cos^2(s/(1 + s) * pi/2)."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (f / math.cos(s / (1 + s) * math.pi / 2) ** 2).clamp(0.0, 1.0)


def linear(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """Continuous DDPM linear betas (Song et al. 2021): abar_t = exp(-(b0 t + (b1 - b0) t^2 / 2))."""
    return torch.exp(-(beta_min * t + 0.5 * (beta_max - beta_min) * t**2))


def sqrt(t: torch.Tensor, s: float = 1e-4) -> torch.Tensor:
    """Diffusion-LM (Li et al. 2022): abar_t = 1 - sqrt(t + s); noise rises fast near t = 0."""
    return (1 - torch.sqrt(t + s)).clamp(0.0, 1.0)


def flow(t: torch.Tensor) -> torch.Tensor:
    """The straight path of flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023),
    x_t = (1 - t) x0 + t eps, in variance-preserving form: x_t / ((1 - t)^2 + t^2)^(1/2) is the VP state with
    abar_t = (1 - t)^2 / ((1 - t)^2 + t^2), i.e. log-SNR 2 log((1 - t) / t). A denoiser built with
    ``path="flow"`` sees the path's own state (``path_scale``); every VP sampler then integrates the same
    ODE, and DDIM's step is exactly Euler's step of the flow ODE dx/dt = v in t."""
    return (1 - t) ** 2 / ((1 - t) ** 2 + t**2)


def ve(t: torch.Tensor, sigma_min: float = 1.0, sigma_max: float = 300.0) -> torch.Tensor:
    """CDCD's variance-exploding process (Dieleman et al. 2022): x_t = x0 + sigma eps with unit-variance
    embeddings and sigma from t_min = 1 to t_max = 300, here sigma = sigma_min + t (sigma_max - sigma_min). As
    the VP state x_t / sqrt(1 + sigma^2): abar_t = 1 / (1 + sigma^2), log-SNR = -2 ln sigma, from 0 at t = 0 to
    -11.4 at t = 1. Time warping (diffusion.time_warp) redistributes t, as CDCD's warp redistributes sigma."""
    sigma = sigma_min + t * (sigma_max - sigma_min)
    return 1 / (1 + sigma**2)


def path_scale(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Factor from the VP state to the straight path's state at the same log-SNR: with abar = a^2 / (a^2 + s^2)
    for path coefficients a = 1 - t, s = t, x_path = x_vp / (sqrt(abar) + sqrt(1 - abar))."""
    return 1 / (alpha_bar.sqrt() + (1 - alpha_bar).clamp(min=0).sqrt())


SCHEDULES: dict[str, Schedule] = {"cosine": cosine, "linear": linear, "sqrt": sqrt, "flow": flow, "ve": ve}


def shift_log_snr(schedule: Schedule, shift: float) -> Schedule:
    """Move a schedule along log-SNR: logit(abar'_t) = logit(abar_t) + shift, i.e.
    abar'_t = sigmoid(log-SNR(t) + shift). A negative shift spends more of [0, 1] at high noise,
    where embedding diffusion has its hard decisions to learn (low noise is easy: the nearest row
    is already right). Written as abar' = abar e^s / (abar e^s + 1 - abar), which is monotone in
    abar and maps exactly 1 to 1 and 0 to 0, so a clean start and a pure-noise end are kept (a schedule
    that starts short of clean, like ``sqrt`` at abar = 0.99, starts noisier still when shifted down)."""
    if shift == 0.0:
        return schedule
    gain = math.exp(shift)

    def shifted(t: torch.Tensor) -> torch.Tensor:
        ab = schedule(t)
        return ab * gain / (ab * gain + (1 - ab))

    return shifted


def get_schedule(name: str, shift: float = 0.0) -> Schedule:
    """The named schedule, optionally shifted by ``shift`` in log-SNR (see ``shift_log_snr``)."""
    if name not in SCHEDULES:
        raise SedlmError(f"unknown schedule '{name}'; valid schedules: {', '.join(SCHEDULES)}")
    return shift_log_snr(SCHEDULES[name], shift)


def log_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    ab = alpha_bar.clamp(_EPS, 1 - _EPS)
    return torch.log(ab) - torch.log1p(-ab)


def time_of(schedule: Schedule, alpha_bar: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """Invert a decreasing schedule by bisection: the t in [0, 1] with schedule(t) = alpha_bar. (N,)"""
    target = alpha_bar.double()
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = schedule(mid) > target  # still too clean: the answer lies later
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def _uniform(steps: int, schedule: Schedule, **_) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


def _karras(
    steps: int, schedule: Schedule, rho: float = 7.0, sigma_min: float = 0.01, sigma_max: float = 80.0, **_
) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: sigma_i = (smax^(1/rho) + i/(K-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < K,
    then sigma_K = 0; times are found by inverting the schedule at abar = 1 / (1 + sigma^2). The sigma
    range is narrowed to what the schedule reaches on [1e-3, 1] so that every time is distinct."""
    ends = schedule(torch.tensor([1e-3, 1.0], dtype=torch.float64)).clamp(1e-8, 1.0)
    reach = ((1 - ends) / ends).sqrt().tolist()
    sigma_min, sigma_max = max(sigma_min, reach[0]), min(sigma_max, reach[1])
    i = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
    sig = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    ts = time_of(schedule, 1 / (1 + sig**2))
    return torch.cat([ts, ts.new_zeros(1)])


def _cosine_logsnr(steps: int, schedule: Schedule, **_) -> torch.Tensor:
    """Steps spaced as the cosine schedule spaces log-SNR, mapped onto this schedule: t_i = s^-1(cosine(u_i))
    for uniform u_i (the uniform grid when the schedule is cosine itself)."""
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    ts = time_of(schedule, cosine(u))
    ts[0], ts[-1] = 1.0, 0.0
    return ts


def unwarp(knots: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """t = F^-1(u) for strictly increasing knots. (N,) -> (N,)"""
    B = len(knots) - 1
    k = knots.to(u.device, u.dtype)
    i = (torch.searchsorted(k.contiguous(), u.clamp(0, 1).contiguous(), right=True) - 1).clamp(0, B - 1)
    frac = (u - k[i]) / (k[i + 1] - k[i]).clamp(min=1e-12)
    return ((i + frac.clamp(0, 1)) / B).clamp(0, 1)


def _warped(steps: int, schedule: Schedule, knots: torch.Tensor | None = None, **_) -> torch.Tensor:
    """Steps uniform in the time warp F learned in training (CDCD): t_i = F^-1(1 - i / K)."""
    if knots is None:
        raise SedlmError(
            "time grid 'warped' needs a model trained with diffusion.time_warp=true; use uniform or karras"
        )
    ts = unwarp(knots.detach().cpu().double(), torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64))
    ts[0], ts[-1] = 1.0, 0.0
    return ts


TIME_GRIDS: dict[str, Callable[..., torch.Tensor]] = {
    "uniform": _uniform,
    "karras": _karras,
    "cosine": _cosine_logsnr,
    "warped": _warped,
}


def time_grid(
    steps: int, device: torch.device | str = "cpu", kind: str = "uniform", schedule: Schedule | None = None, **kw: Any
) -> torch.Tensor:
    """Decreasing grid t_0 > t_1 > ... > t_K = 0 with K = steps (t_0 = 1 except for karras, which starts
    at sigma_max). ``kind``: uniform | karras (rho, sigma_min, sigma_max) | cosine | warped (knots); each grid
    ignores the options that are not its own. (K + 1,) float32"""
    if kind not in TIME_GRIDS:
        raise SedlmError(f"unknown time grid '{kind}'; valid grids: {', '.join(TIME_GRIDS)}")
    ts = TIME_GRIDS[kind](steps, schedule or cosine, **kw)
    return ts.to(device=device, dtype=torch.float32)
