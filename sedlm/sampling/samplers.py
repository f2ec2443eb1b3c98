"""Samplers as pure functions over a denoiser callable.

Signature: ``sampler(denoise_fn, x, ts, *, alpha_bar, generator=None, callback=None, **kw) -> x0``
    denoise_fn(x_t, t, self_cond) -> x0_hat    x_t, self_cond: (B, L, D); t: (B,)
    x       starting noise x_{t_0}, (B, L, D)
    ts      decreasing times t_0 = 1 > ... > t_K = 0, (K + 1,); K network calls (heun: 2K - 1)
    alpha_bar  the schedule, t -> abar_t
Self-conditioning feeds each step's x0_hat into the next call; it is a loop variable, not state.
``callback(info)`` is called after every step with {"i", "t", "x", "x0_hat"}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sedlm.errors import SedlmError
from sedlm.options import Option
from sedlm.sampling.core import Callback, DenoiseFn, Sampler, SelfConditioning, fresh_noise
from sedlm.sampling.karras import SIGMA_PURE_NOISE, dpmpp_2m, euler, heun, sigmas_on_grid


def _step_loop(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    callback: Callback | None,
    self_condition: bool,
    time_delta: float = 0.0,
    x0_clip: float = 0.0,
) -> torch.Tensor:
    """Shared loop of the one-step samplers: x0_hat = D(x_t, t', sc); x_s = update(x_t, x0_hat, abar_t', abar_s).

    ``time_delta`` td > 0: asymmetric time intervals (Chen et al. 2023, Analog Bits, §3.3 and Alg. 2). The
    state sits at t_i, but both the network and the step treat it as the later (noisier) time
    t'_i = t_i + td (t_i - t_{i+1}), td counted in steps: Alg. 2 calls net(x_t, t_now) and takes
    eps = (x_t - sqrt(gamma(t_now)) x_pred) / sqrt(1 - gamma(t_now)) at that same t_now, while the step before
    it landed td steps further, at t_next = t_now - (1 + td) / K.
    ``x0_clip`` c > 0 clips x0_hat to [-c, c] inside each step (Alg. 2's clip(x_pred, -scale, scale)); the
    estimate fed back as self-conditioning and the one returned are the network's own, as in Alg. 2.
    The last step returns x0_hat itself."""
    B = x.shape[0]
    abars = alpha_bar(ts.to(x.device)).clamp(0.0, 1.0)
    widths = torch.cat([ts[:-1] - ts[1:], ts.new_zeros(1)])  # (K + 1,) the step that starts at t_i
    t_eval = (ts + time_delta * widths).clamp(max=1.0).to(x.device)
    ab_eval = alpha_bar(t_eval).clamp(0.0, 1.0)
    D = SelfConditioning(denoise_fn, self_condition)
    clip = min(x0_clip, torch.finfo(x.dtype).max)  # any bound past the dtype's range is no bound at all
    for i in range(len(ts) - 1):
        x0_hat = D(x, t_eval[i].expand(B))
        if i == len(ts) - 2:
            x = x0_hat
        else:
            x = update(x, x0_hat.clamp(-clip, clip) if clip > 0 else x0_hat, ab_eval[i], abars[i + 1])
        if callback is not None:
            callback({"i": i, "t": ts[i], "x": x, "x0_hat": x0_hat})
    return x


@torch.no_grad()
def ddpm(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    alpha_bar,
    generator=None,
    callback=None,
    self_condition: bool = True,
    noise_temp: float = 1.0,
    time_delta: float = 0.0,
    x0_clip: float = 0.0,
) -> torch.Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0 = x0_hat) (Ho et al. 2020, eq. 6-7):

        alpha_{t|s} = abar_t / abar_s,  beta = 1 - alpha_{t|s}
        mean = sqrt(abar_s) beta / (1 - abar_t) x0_hat + sqrt(alpha_{t|s}) (1 - abar_s) / (1 - abar_t) x_t
        var  = beta (1 - abar_s) / (1 - abar_t)
    ``noise_temp`` scales the standard deviation of the fresh noise (1 = the posterior's);
    ``time_delta`` > 0 uses asymmetric time intervals, ``x0_clip`` > 0 clips x0_hat (see ``_step_loop``).
    """

    def update(x, x0_hat, ab_t, ab_s):
        alpha_ts = ab_t / ab_s
        beta = 1 - alpha_ts
        one_m = (1 - ab_t).clamp(min=1e-12)
        mean = ab_s.sqrt() * beta / one_m * x0_hat + alpha_ts.sqrt() * (1 - ab_s) / one_m * x
        var = (beta * (1 - ab_s) / one_m).clamp(min=0.0)
        return mean + noise_temp * var.sqrt() * fresh_noise(x, generator)

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition, time_delta, x0_clip)


def ddim_step(
    x: torch.Tensor, x0_hat: torch.Tensor, ab_t: torch.Tensor, ab_s: torch.Tensor, sigma: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """The deterministic part of a DDIM step t -> s (Song et al. 2021, eq. 12), abar broadcastable to x:
    sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat, eps_hat = (x - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)."""
    eps = (x - ab_t.sqrt() * x0_hat) / (1 - ab_t).clamp(min=1e-12).sqrt()
    return ab_s.sqrt() * x0_hat + (1 - ab_s - sigma**2).clamp(min=0.0).sqrt() * eps


@torch.no_grad()
def ddim(
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
    time_delta: float = 0.0,
    x0_clip: float = 0.0,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): with eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t),

        x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s).
    eta = 0 is deterministic; eta = 1 matches ancestral sampling's variance; ``noise_temp`` scales z;
    ``time_delta`` > 0 uses asymmetric time intervals, ``x0_clip`` > 0 clips x0_hat (see ``_step_loop``).
    """

    def update(x, x0_hat, ab_t, ab_s):
        sigma = eta * ((1 - ab_s) / (1 - ab_t).clamp(min=1e-12) * (1 - ab_t / ab_s)).clamp(min=0.0).sqrt()
        x = ddim_step(x, x0_hat, ab_t, ab_s, sigma)
        return x + noise_temp * sigma * fresh_noise(x, generator) if eta > 0 else x

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition, time_delta, x0_clip)


@torch.no_grad()
def consistency(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    alpha_bar,
    generator=None,
    callback=None,
    self_condition: bool = True,
    noise_temp: float = 1.0,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): each step estimates x0 and draws the next
    state afresh from the forward process, x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) z, forgetting x_t.
    For a consistency model (whose estimate is already the end of the trajectory through x_t) more steps
    refine; for an ordinary denoiser it is a crude sampler."""

    def update(x, x0_hat, ab_t, ab_s):
        return ab_s.sqrt() * x0_hat + noise_temp * (1 - ab_s).clamp(min=0).sqrt() * fresh_noise(x, generator)

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition)


# Options a sampler takes beyond the ones every sampler takes (noise_temp, self_condition): declared once here,
# named in the entries of the samplers that take them. The CLI flags, the API's keyword arguments, the server's
# schema and the config's defaults (``sample.NAME=value``) all read these declarations.
CHURN = Option("churn", float, "euler/heun: noise added back per step (Karras et al. 2022)", default=0.0, minimum=0.0)
ETA = Option("eta", float, "ddim/dpmpp_2m: stochasticity (0 = deterministic)", default=0.0, minimum=0.0)
TIME_DELTA = Option(
    "time_delta",
    float,
    "ddpm/ddim: treat the state as this many steps later (noisier) than its time, in the network and "
    "the step (asymmetric time intervals, Analog Bits, Chen et al. 2023, Alg. 2)",
    default=0.0,
    minimum=0.0,
)
X0_CLIP = Option(
    "x0_clip",
    float,
    "ddpm/ddim: clip the x0 estimate to [-c, c] inside each step (Analog Bits' Alg. 2 with c = the bit scale); 0 = off",
    default=0.0,
    minimum=0.0,
)


@dataclass(frozen=True)
class Tolerance:
    """The exact-answer check every registered sampler must pass (tests/test_analytic.py): with the exact x0
    predictor of Gaussian data, ``steps`` steps on each time grid (uniform, karras) turn standardised N(0, I)
    noise into samples whose mean and std are within ``mean`` and ``std`` of the data's."""

    steps: int
    std: float
    mean: float = 0.008


@dataclass(frozen=True)
class SamplerEntry:
    """A sampler and what callers need to know about it: network calls per step (guidance doubles
    them), the time grid it is meant for, the extra keyword options it takes (declared ``Option``s,
    default = no effect) and the tolerance of its exact-answer check. Calling the entry calls the sampler."""

    fn: Sampler
    calls_per_step: int
    grid: str  # "uniform" | "karras" (see sedlm.diffusion.schedules.TIME_GRIDS)
    options: tuple[Option, ...] = ()
    description: str = ""
    tolerance: Tolerance | None = None  # required: tests/test_analytic.py fails a sampler registered without one
    stochastic: bool = False  # draws fresh noise every step with its default options (noise_temp then matters)
    # its update is elementwise in abar, so abar may differ per position (an (L, 1) tensor per grid time):
    # the per-position schedules of diffusion.position_warp
    per_position: bool = False
    # meant for a model whose estimate is already the end of the trajectory through x_t (a consistency-
    # distilled student); on an ordinary denoiser it is a crude sampler, so sweeps over samplers skip it
    for_flow_maps: bool = False

    def __call__(self, *args: Any, **kw: Any) -> torch.Tensor:
        return self.fn(*args, **kw)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)


# The registry: adding a sampler is one function above and one entry here (its options and tolerance included).
SAMPLERS: dict[str, SamplerEntry] = {
    "ddpm": SamplerEntry(
        ddpm,
        1,
        "uniform",
        (TIME_DELTA, X0_CLIP),
        "ancestral (Ho et al. 2020)",
        Tolerance(1000, 0.01, 0.01),
        stochastic=True,
        per_position=True,
    ),
    "ddim": SamplerEntry(
        ddim,
        1,
        "uniform",
        (ETA, TIME_DELTA, X0_CLIP),
        "deterministic DDIM (Song et al. 2021)",
        Tolerance(100, 0.02),
        per_position=True,
    ),
    "consistency": SamplerEntry(
        consistency,
        1,
        "uniform",
        (),
        "multistep consistency sampling, for consistency-distilled students (Song et al. 2023)",
        Tolerance(4, 0.01, 0.01),
        stochastic=True,
        per_position=True,
        for_flow_maps=True,
    ),
    "euler": SamplerEntry(
        euler, 1, "karras", (CHURN,), "probability-flow ODE, Euler (Karras et al. 2022)", Tolerance(100, 0.02)
    ),
    "heun": SamplerEntry(
        heun, 2, "karras", (CHURN,), "probability-flow ODE, Heun (Karras et al. 2022)", Tolerance(100, 0.008)
    ),
    "dpmpp_2m": SamplerEntry(dpmpp_2m, 1, "karras", (ETA,), "DPM-Solver++(2M) (Lu et al. 2022)", Tolerance(100, 0.008)),
}


def sampler_options() -> tuple[Option, ...]:
    """Every option some registered sampler declares, each once (in registry order)."""
    seen: dict[str, Option] = {}
    for entry in SAMPLERS.values():
        for o in entry.options:
            seen.setdefault(o.name, o)
    return tuple(seen.values())


def nfe(
    sampler: str,
    steps: int,
    ts: torch.Tensor | None = None,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """Network evaluations per sample for ``steps`` grid intervals (guidance doubles it). For heun,
    give the grid ``ts`` and schedule to count a first step from pure noise exactly (else 2K - 1)."""
    if get_sampler(sampler).calls_per_step == 1:
        return steps
    pure = 0
    if ts is not None and alpha_bar is not None and len(ts) > 2:
        pure = int(sigmas_on_grid(ts[:1], alpha_bar)[1][0] >= SIGMA_PURE_NOISE)
    return 2 * steps - 1 - pure


def check_per_position(sampler: str, time_grid: str) -> None:
    """A position-warped model (diffusion.position_warp) steps uniformly in its shared time with a sampler
    whose update is elementwise in abar; anything else is an error naming the fix."""
    if time_grid != "uniform":
        raise SedlmError(
            "diffusion.position_warp steps uniformly in the shared time u; set sample.time_grid=uniform "
            "(--time-grid uniform)"
        )
    if not get_sampler(sampler).per_position:
        able = ", ".join(k for k, v in SAMPLERS.items() if v.per_position)
        raise SedlmError(
            f"sampler {sampler} cannot follow per-position schedules (diffusion.position_warp); use ddpm or "
            f"ddim (the samplers that can: {able})"
        )


def get_sampler(name: str) -> SamplerEntry:
    if name not in SAMPLERS:
        raise SedlmError(f"unknown sampler '{name}'; valid samplers: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
