"""Samplers as pure functions over a denoiser callable.

Signature: ``sampler(denoise_fn, x, ts, *, alpha_bar, generator=None, callback=None, **kw) -> x0``
    denoise_fn(x_t, t, self_cond) -> x0_hat    x_t, self_cond: (B, L, D); t: (B,)
    x       starting noise x_{t_0}, (B, L, D)
    ts      decreasing times t_0 = 1 > ... > t_K = 0, (K + 1,); K network calls
    alpha_bar  the schedule, t -> abar_t
Self-conditioning feeds each step's x0_hat into the next call; it is a loop variable, not state.
``callback(info)`` is called after every step with {"i", "t", "x", "x0_hat"}.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from sedlm.errors import SedlmError

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict[str, Any]], None]


class Sampler(Protocol):
    def __call__(
        self,
        denoise_fn: DenoiseFn,
        x: torch.Tensor,
        ts: torch.Tensor,
        *,
        alpha_bar: Callable[[torch.Tensor], torch.Tensor],
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
        **kw: Any,
    ) -> torch.Tensor: ...


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _step_loop(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    callback: Callback | None,
    self_condition: bool,
) -> torch.Tensor:
    """Shared loop of the one-step samplers: x0_hat = D(x_t, t, sc); x_s = update(x_t, x0_hat, abar_t, abar_s).
    The last step returns x0_hat itself."""
    B = x.shape[0]
    abars = alpha_bar(ts.to(x.device)).clamp(0.0, 1.0)
    x0_hat = torch.zeros_like(x)
    for i in range(len(ts) - 1):
        t = ts[i].to(x.device).expand(B)
        x0_hat = denoise_fn(x, t, x0_hat if self_condition else torch.zeros_like(x))
        x = x0_hat if i == len(ts) - 2 else update(x, x0_hat, abars[i], abars[i + 1])
        if callback is not None:
            callback({"i": i, "t": ts[i], "x": x, "x0_hat": x0_hat})
    return x


@torch.no_grad()
def ddpm(denoise_fn: DenoiseFn, x: torch.Tensor, ts: torch.Tensor, *, alpha_bar, generator=None, callback=None,
         self_condition: bool = True) -> torch.Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0 = x0_hat) (Ho et al. 2020, eq. 6-7):

        alpha_{t|s} = abar_t / abar_s,  beta = 1 - alpha_{t|s}
        mean = sqrt(abar_s) beta / (1 - abar_t) x0_hat + sqrt(alpha_{t|s}) (1 - abar_s) / (1 - abar_t) x_t
        var  = beta (1 - abar_s) / (1 - abar_t)
    """

    def update(x, x0_hat, ab_t, ab_s):
        alpha_ts = ab_t / ab_s
        beta = 1 - alpha_ts
        one_m = (1 - ab_t).clamp(min=1e-12)
        mean = ab_s.sqrt() * beta / one_m * x0_hat + alpha_ts.sqrt() * (1 - ab_s) / one_m * x
        var = (beta * (1 - ab_s) / one_m).clamp(min=0.0)
        return mean + var.sqrt() * _noise(x, generator)

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition)


@torch.no_grad()
def ddim(denoise_fn: DenoiseFn, x: torch.Tensor, ts: torch.Tensor, *, alpha_bar, generator=None, callback=None,
         eta: float = 0.0, self_condition: bool = True) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): with eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t),

        x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s).
    eta = 0 is deterministic; eta = 1 matches ancestral sampling's variance.
    """

    def update(x, x0_hat, ab_t, ab_s):
        one_m = (1 - ab_t).clamp(min=1e-12)
        eps = (x - ab_t.sqrt() * x0_hat) / one_m.sqrt()
        sigma = eta * ((1 - ab_s) / one_m * (1 - ab_t / ab_s)).clamp(min=0.0).sqrt()
        x = ab_s.sqrt() * x0_hat + (1 - ab_s - sigma**2).clamp(min=0.0).sqrt() * eps
        return x + sigma * _noise(x, generator) if eta > 0 else x

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition)


SAMPLERS: dict[str, Sampler] = {"ddpm": ddpm, "ddim": ddim}


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise SedlmError(f"unknown sampler '{name}'; valid samplers: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
