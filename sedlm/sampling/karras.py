"""Samplers of the probability-flow ODE / SDE in sigma space (Karras et al. 2022): Euler, Heun (both with
optional churn) and DPM-Solver++(2M). Registered, with the other samplers, in ``sedlm.sampling.samplers``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from sedlm.diffusion.schedules import time_of
from sedlm.sampling.core import DenoiseFn, SelfConditioning, fresh_noise

# --- Samplers of the probability-flow ODE / SDE in sigma space (Karras et al. 2022) -----------------
# With sigma_t = sqrt((1 - abar_t) / abar_t) and x~ = x / sqrt(abar_t), the VP process becomes
# x~ = x0 + sigma eps, and the ODE is dx~/dsigma = (x~ - D(x~, sigma)) / sigma with D the x0 estimate.
# The state is kept in x~; the network still sees x = x~ sqrt(abar) at time t.

_AB_MIN = 1e-8  # abar at t = 1 can underflow to 0; sigma_max = 1e4 is noise enough for any embedding


def sigmas_on_grid(
    ts: torch.Tensor, alpha_bar: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[list[float], list[float]]:
    """(abar_i, sigma_i) on the grid as Python floats (float64), computed once: the step coefficients
    then need no device-to-host sync inside the loop. sigma is 0 exactly where abar = 1."""
    ab = alpha_bar(ts.detach().to("cpu", torch.float64)).clamp(_AB_MIN, 1.0)
    return ab.tolist(), ((1 - ab) / ab).sqrt().tolist()


class _SigmaDenoiser:
    """D(x~, i): the x0 estimate at grid point i, feeding each estimate back as self-conditioning.
    ``D.at(x~, sigma)`` evaluates it at a noise level off the grid (a churn-raised sigma): the time
    is found by inverting the schedule at abar = 1 / (1 + sigma^2)."""

    def __init__(
        self,
        denoise_fn: DenoiseFn,
        ts: torch.Tensor,
        ab: list[float],
        B: int,
        self_condition: bool,
        alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    ):
        self.fn, self.ts, self.ab, self.B = SelfConditioning(denoise_fn, self_condition), ts, ab, B
        self.alpha_bar = alpha_bar
        self.dtype = torch.float32  # what the network sees; the state may be kept wider

    def _call(self, x_tilde: torch.Tensor, t: torch.Tensor, ab: float) -> torch.Tensor:
        x = (x_tilde * math.sqrt(ab)).to(self.dtype)
        return self.fn(x, t.to(x_tilde.device, torch.float32).expand(self.B)).to(x_tilde.dtype)

    def __call__(self, x_tilde: torch.Tensor, i: int) -> torch.Tensor:
        return self._call(x_tilde, self.ts[i], self.ab[i])

    def at(self, x_tilde: torch.Tensor, sigma: float) -> torch.Tensor:
        ab = 1.0 / (1.0 + sigma**2)
        t = time_of(self.alpha_bar, torch.tensor([ab], dtype=torch.float64)).clamp(0.0, 1.0)
        return self._call(x_tilde, t[0], ab)


def _sigma_loop(denoise_fn, x, ts, alpha_bar, step, callback, self_condition) -> torch.Tensor:
    """Shared loop: x~_{i+1} = step(D, x~_i, i, sigma, history); returns the last x0 estimate.
    ``step`` returns (x~_next, x0_hat); ``history`` is a dict of loop variables for multistep methods."""
    ab, sigma = sigmas_on_grid(ts, alpha_bar)
    D = _SigmaDenoiser(denoise_fn, ts, ab, x.shape[0], self_condition, alpha_bar)
    D.dtype = x.dtype
    # x~ starts at sigma_max ~ 1e4 times the noise: in float32 a Heun correction, scaled by a step of
    # width ~1e4, would turn rounding of x~ into an O(1) error. The state is kept in float64 (tiny next
    # to the network) wherever the device has it.
    x_tilde = x.to(_state_dtype(x)) / math.sqrt(ab[0])
    history: dict[str, Any] = {}
    x0_hat = torch.zeros_like(x)
    for i in range(len(ts) - 1):
        x_tilde, x0_hat = step(D, x_tilde, i, sigma, history)
        if callback is not None:
            callback(
                {"i": i, "t": ts[i], "x": (x_tilde * math.sqrt(ab[i + 1])).to(x.dtype), "x0_hat": x0_hat.to(x.dtype)}
            )
    return x0_hat.to(x.dtype)


def _state_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.device.type == "mps" else torch.float64


# A step that starts at pure noise (abar at its floor, sigma ~ 1e4, as the uniform grid's t = 1 does)
# spans a sigma range so wide that averaging its two slopes (Heun) is far off; the Euler step there is
# the DDIM step, exact as sigma_t -> infinity. Karras grids start at sigma_max = 80 and never hit this.
SIGMA_PURE_NOISE = 1e3


def _churn_gamma(churn: float, steps: int) -> float:
    return min(churn / steps, 2**0.5 - 1) if churn > 0 else 0.0


def _raisefresh_noise(
    xt: torch.Tensor, s_t: float, gamma: float, noise_temp: float, generator
) -> tuple[torch.Tensor, float]:
    """Karras et al. 2022, Alg. 2 lines 5-6: sigma_hat = (1 + gamma) sigma_t, x~ += sqrt(sigma_hat^2 - sigma_t^2) z."""
    if gamma == 0:
        return xt, s_t
    s_hat = s_t * (1 + gamma)
    return xt + noise_temp * math.sqrt(s_hat**2 - s_t**2) * fresh_noise(xt, generator), s_hat


def _karras_step(gamma: float, noise_temp: float, generator, second_order: bool):
    """One step of Karras et al. 2022, Alg. 2: optional churn, an Euler step, and Heun's correction
    when ``second_order`` (skipped on the last step, to sigma = 0)."""

    def step(D, xt, i, sigma, h):
        s_t, s_s = sigma[i], sigma[i + 1]
        raised = s_s > 0 and gamma > 0
        if raised:
            xt, s_t = _raisefresh_noise(xt, s_t, gamma, noise_temp, generator)
        x0 = D.at(xt, s_t) if raised else D(xt, i)  # the network sees the raised level (Alg. 2, line 7)
        if s_s == 0:
            return x0, x0
        d = (xt - x0) / s_t
        x_euler = xt + (s_s - s_t) * d
        if not second_order or s_t >= SIGMA_PURE_NOISE:
            return x_euler, x0
        x0_s = D(x_euler, i + 1)
        d_s = (x_euler - x0_s) / s_s
        return xt + (s_s - s_t) * 0.5 * (d + d_s), x0_s

    return step


@torch.no_grad()
def euler(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    alpha_bar,
    generator=None,
    callback=None,
    churn: float = 0.0,
    self_condition: bool = True,
    noise_temp: float = 1.0,
) -> torch.Tensor:
    """Euler on the probability-flow ODE (Karras et al. 2022, Alg. 2 without the Heun correction):
        x~_s = x~_t + (sigma_s - sigma_t) (x~_t - D(x~_t)) / sigma_t.
    With ``churn`` > 0 each step first raises sigma by (1 + gamma), gamma = min(churn / K, sqrt(2) - 1),
    adding fresh noise (S_churn), and the denoiser is evaluated at the raised level."""
    step = _karras_step(_churn_gamma(churn, len(ts) - 1), noise_temp, generator, second_order=False)
    return _sigma_loop(denoise_fn, x, ts, alpha_bar, step, callback, self_condition)


@torch.no_grad()
def heun(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    alpha_bar,
    generator=None,
    callback=None,
    churn: float = 0.0,
    self_condition: bool = True,
    noise_temp: float = 1.0,
) -> torch.Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1; Alg. 2 with churn):
        d = (x~_t - D(x~_t, t)) / sigma_t,  x' = x~_t + (sigma_s - sigma_t) d,
        x~_s = x~_t + (sigma_s - sigma_t) (d + (x' - D(x', s)) / sigma_s) / 2.
    Two network calls per step except the last (to sigma = 0) and a first step from pure noise (sigma
    >= SIGMA_PURE_NOISE, the uniform grid's t = 1), which are Euler steps: NFE = 2K - 1, or 2K - 2."""
    step = _karras_step(_churn_gamma(churn, len(ts) - 1), noise_temp, generator, second_order=True)
    return _sigma_loop(denoise_fn, x, ts, alpha_bar, step, callback, self_condition)


@torch.no_grad()
def dpmpp_2m(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    alpha_bar,
    generator=None,
    callback=None,
    eta: float = 0.0,
    self_condition: bool = True,
    noise_temp: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2M) for x0 prediction (Lu et al. 2022, Alg. 2), in lambda = -log sigma, h = lambda_s - lambda_t:
        D' = (1 + 1 / (2r)) D_t - 1 / (2r) D_prev,   r = h_prev / h   (D' = D_t on the first step)
        x~_s = (sigma_s / sigma_t) x~_t - expm1(-h) D'.
    With ``eta`` > 0 it is the SDE variant (DPM-Solver++(2M) SDE): the deterministic part decays by
    exp(-eta h) more and sigma_s sqrt(-expm1(-2 eta h)) of fresh noise is added back."""

    def step(D, xt, i, sigma, h):
        s_t, s_s = sigma[i], sigma[i + 1]
        x0 = D(xt, i)
        if s_s == 0:
            return x0, x0
        lam_t, lam_s = -math.log(s_t), -math.log(s_s)
        hh = lam_s - lam_t
        d = x0
        if "x0_prev" in h:
            r = h["h_prev"] / hh
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * h["x0_prev"] if eta == 0 else x0
        decay = math.exp(-eta * hh)
        x_next = s_s / s_t * decay * xt - math.expm1(-hh - eta * hh) * d
        if eta > 0:
            if "x0_prev" in h:  # second-order correction of the SDE form (midpoint)
                r = h["h_prev"] / hh
                x_next = x_next - 0.5 * math.expm1(-hh - eta * hh) / r * (x0 - h["x0_prev"])
            x_next = x_next + noise_temp * s_s * math.sqrt(-math.expm1(-2 * eta * hh)) * fresh_noise(xt, generator)
        h["x0_prev"], h["h_prev"] = x0, hh
        return x_next, x0

    return _sigma_loop(denoise_fn, x, ts, alpha_bar, step, callback, self_condition)
