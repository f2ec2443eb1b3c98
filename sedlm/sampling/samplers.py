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

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sedlm.diffusion.schedules import time_of
from sedlm.errors import SedlmError
from sedlm.options import Option

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


class SelfConditioning:
    """Self-conditioning at sampling time (Chen et al. 2022, "Analog Bits", §3.2), in one place for every
    sampler: each call of the denoiser receives the previous call's x0 estimate (zeros on the first
    call, and always when ``enabled`` is False). (x_t, t) -> x0_hat"""

    def __init__(self, denoise_fn: DenoiseFn, enabled: bool = True):
        self.fn, self.enabled = denoise_fn, enabled
        self.last: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sc = self.last if self.enabled and self.last is not None else torch.zeros_like(x)
        self.last = self.fn(x, t, sc)
        return self.last


def _step_loop(
    denoise_fn: DenoiseFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    callback: Callback | None,
    self_condition: bool,
    time_delta: float = 0.0,
) -> torch.Tensor:
    """Shared loop of the one-step samplers: x0_hat = D(x_t, t', sc); x_s = update(x_t, x0_hat, abar_t, abar_s).
    ``time_delta`` td > 0 gives the network a later (noisier) time than the state's, in units of the
    step: t'_i = t_i + td (t_i - t_{i+1}), Analog Bits' asymmetric time intervals (Chen et al. 2022,
    §3.3 and Alg. 2, where td is counted in steps of 1/K). The last step returns x0_hat itself."""
    B = x.shape[0]
    abars = alpha_bar(ts.to(x.device)).clamp(0.0, 1.0)
    widths = torch.cat([ts[:-1] - ts[1:], ts.new_zeros(1)])  # (K + 1,) the step that starts at t_i
    t_eval = (ts + time_delta * widths).clamp(max=1.0).to(x.device)
    D = SelfConditioning(denoise_fn, self_condition)
    for i in range(len(ts) - 1):
        x0_hat = D(x, t_eval[i].expand(B))
        x = x0_hat if i == len(ts) - 2 else update(x, x0_hat, abars[i], abars[i + 1])
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
) -> torch.Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0 = x0_hat) (Ho et al. 2020, eq. 6-7):

        alpha_{t|s} = abar_t / abar_s,  beta = 1 - alpha_{t|s}
        mean = sqrt(abar_s) beta / (1 - abar_t) x0_hat + sqrt(alpha_{t|s}) (1 - abar_s) / (1 - abar_t) x_t
        var  = beta (1 - abar_s) / (1 - abar_t)
    ``noise_temp`` scales the standard deviation of the fresh noise (1 = the posterior's);
    ``time_delta`` > 0 uses asymmetric time intervals (see ``_step_loop``).
    """

    def update(x, x0_hat, ab_t, ab_s):
        alpha_ts = ab_t / ab_s
        beta = 1 - alpha_ts
        one_m = (1 - ab_t).clamp(min=1e-12)
        mean = ab_s.sqrt() * beta / one_m * x0_hat + alpha_ts.sqrt() * (1 - ab_s) / one_m * x
        var = (beta * (1 - ab_s) / one_m).clamp(min=0.0)
        return mean + noise_temp * var.sqrt() * _noise(x, generator)

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition, time_delta)


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
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): with eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t),

        x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s).
    eta = 0 is deterministic; eta = 1 matches ancestral sampling's variance; ``noise_temp`` scales z;
    ``time_delta`` > 0 uses asymmetric time intervals (see ``_step_loop``).
    """

    def update(x, x0_hat, ab_t, ab_s):
        sigma = eta * ((1 - ab_s) / (1 - ab_t).clamp(min=1e-12) * (1 - ab_t / ab_s)).clamp(min=0.0).sqrt()
        x = ddim_step(x, x0_hat, ab_t, ab_s, sigma)
        return x + noise_temp * sigma * _noise(x, generator) if eta > 0 else x

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition, time_delta)


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
        return ab_s.sqrt() * x0_hat + noise_temp * (1 - ab_s).clamp(min=0).sqrt() * _noise(x, generator)

    return _step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition)


# --- Samplers of the probability-flow ODE / SDE in sigma space (Karras et al. 2022) -----------------
# With sigma_t = sqrt((1 - abar_t) / abar_t) and x~ = x / sqrt(abar_t), the VP process becomes
# x~ = x0 + sigma eps, and the ODE is dx~/dsigma = (x~ - D(x~, sigma)) / sigma with D the x0 estimate.
# The state is kept in x~; the network still sees x = x~ sqrt(abar) at time t.

_AB_MIN = 1e-8  # abar at t = 1 can underflow to 0; sigma_max = 1e4 is noise enough for any embedding


def _sigmas(ts: torch.Tensor, alpha_bar: Callable[[torch.Tensor], torch.Tensor]) -> tuple[list[float], list[float]]:
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
    ab, sigma = _sigmas(ts, alpha_bar)
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


def _raise_noise(
    xt: torch.Tensor, s_t: float, gamma: float, noise_temp: float, generator
) -> tuple[torch.Tensor, float]:
    """Karras et al. 2022, Alg. 2 lines 5-6: sigma_hat = (1 + gamma) sigma_t, x~ += sqrt(sigma_hat^2 - sigma_t^2) z."""
    if gamma == 0:
        return xt, s_t
    s_hat = s_t * (1 + gamma)
    return xt + noise_temp * math.sqrt(s_hat**2 - s_t**2) * _noise(xt, generator), s_hat


def _karras_step(gamma: float, noise_temp: float, generator, second_order: bool):
    """One step of Karras et al. 2022, Alg. 2: optional churn, an Euler step, and Heun's correction
    when ``second_order`` (skipped on the last step, to sigma = 0)."""

    def step(D, xt, i, sigma, h):
        s_t, s_s = sigma[i], sigma[i + 1]
        raised = s_s > 0 and gamma > 0
        if raised:
            xt, s_t = _raise_noise(xt, s_t, gamma, noise_temp, generator)
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
            x_next = x_next + noise_temp * s_s * math.sqrt(-math.expm1(-2 * eta * hh)) * _noise(xt, generator)
        h["x0_prev"], h["h_prev"] = x0, hh
        return x_next, x0

    return _sigma_loop(denoise_fn, x, ts, alpha_bar, step, callback, self_condition)


# Options a sampler takes beyond the ones every sampler takes (noise_temp, self_condition): declared once here,
# named in the entries of the samplers that take them. The CLI flags, the API's keyword arguments, the server's
# schema and the config's defaults (``sample.NAME=value``) all read these declarations.
CHURN = Option("churn", float, "euler/heun: noise added back per step (Karras et al. 2022)", default=0.0, minimum=0.0)
ETA = Option("eta", float, "ddim/dpmpp_2m: stochasticity (0 = deterministic)", default=0.0, minimum=0.0)
TIME_DELTA = Option(
    "time_delta",
    float,
    "ddpm/ddim: evaluate the denoiser this many steps later than the state's "
    "time (asymmetric time intervals, Analog Bits, Chen et al. 2023, Alg. 2)",
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
        (TIME_DELTA,),
        "ancestral (Ho et al. 2020)",
        Tolerance(1000, 0.01, 0.01),
        stochastic=True,
        per_position=True,
    ),
    "ddim": SamplerEntry(
        ddim,
        1,
        "uniform",
        (ETA, TIME_DELTA),
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
        pure = int(_sigmas(ts[:1], alpha_bar)[1][0] >= SIGMA_PURE_NOISE)
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
