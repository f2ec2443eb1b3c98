"""Samplers against a data distribution whose exact x0 predictor is known in closed form.

For Gaussian data x0 ~ N(mu, s^2) (independently per dimension) and the variance-preserving forward
process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4), the minimum-MSE x0
estimate is linear in x_t:

    E[x0 | x_t] = mu + sqrt(abar) s^2 / (abar s^2 + 1 - abar) (x_t - sqrt(abar) mu),

and in sigma space (x~ = x / sqrt(abar), sigma^2 = (1 - abar) / abar; Karras et al. 2022, §2)
it is D(x~, sigma) = mu + s^2 / (s^2 + sigma^2) (x~ - mu), so the probability-flow ODE
dx~/dsigma = (x~ - D) / sigma has the exact solution

    x~(sigma) - mu = sqrt((s^2 + sigma^2) / (s^2 + sigma_a^2)) (x~(sigma_a) - mu).

With that denoiser every sampler must turn N(0, I) noise into N(mu, s^2) data, ODE solvers must show
their order of accuracy against the exact solution, and every network call must see an input
distributed as the forward marginal at the time the network is told. These are the scheduler checks
of diffusers' test suite, but against analytic answers instead of stored snapshots.
"""

from __future__ import annotations

import math

import pytest
import torch

from sedlm.diffusion.schedules import get_schedule, time_grid
from sedlm.sampling import samplers

MU, S = 0.7, 0.5
AB = get_schedule("cosine")
N_ROWS, DIMS = 20000, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def _sampler(name: str):
    return samplers.get_sampler(name)  # looked up at call time: a patched registry is what gets tested


def posterior_mean(x: torch.Tensor, ab: float) -> torch.Tensor:
    """E[x0 | x_t] for x0 ~ N(MU, S^2) at signal level abar = ab."""
    gain = math.sqrt(ab) * S**2 / (ab * S**2 + 1 - ab)
    return x * gain + MU * (1 - math.sqrt(ab) * gain)


class GaussianDenoiser:
    """The exact x0 predictor for the time it is told; ignores self-conditioning. With ``record`` it keeps,
    per call, (t, abar, the input's mean and per-dimension variance), to compare with the forward marginal."""

    def __init__(self, record: bool = False):
        self.record, self.calls = record, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor) -> torch.Tensor:
        assert bool((t == t[0]).all()), "samplers call the network with one time for the whole batch"
        tt = float(t[0])
        ab = min(max(float(AB(torch.tensor([tt], dtype=torch.float64))), 0.0), 1.0)
        if self.record:
            self.calls.append((tt, ab, float(x.mean()), float(x.var(0).mean())))
        return posterior_mean(x, ab)


def start_noise(rows: int = N_ROWS, dims: int = DIMS, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """N(0, I) noise, standardised per dimension so that its sample mean is exactly 0 and its sample std
    exactly 1: the exact flow then maps it to data with mean MU and std S exactly, and a deterministic
    sampler's error is discretisation error only (no Monte Carlo noise). (rows, 1, dims)"""
    z = torch.randn(rows, 1, dims, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return ((z - z.mean(0)) / z.std(0)).to(dtype)


def data_error(out: torch.Tensor) -> tuple[float, float]:
    """(mean - MU, std - S) of the samples, the std taken per dimension and averaged."""
    out = out.double()
    return float(out.mean() - MU), float(out.std(0).mean() - S)


def matches_data(out: torch.Tensor, tol_mean: float, tol_std: float) -> bool:
    """True when the samples' mean and std are within the tolerances of the data's."""
    dm, ds = data_error(out)
    return abs(dm) < tol_mean and abs(ds) < tol_std


def run(name: str, steps: int, grid: str = "uniform", x: torch.Tensor | None = None, seed: int = 1, fn=None, **kw):
    x = start_noise() if x is None else x
    ts = time_grid(steps, kind=grid, schedule=AB)
    return _sampler(name)(
        fn or GaussianDenoiser(),
        x,
        ts,
        alpha_bar=AB,
        generator=torch.Generator().manual_seed(seed),
        self_condition=False,
        **kw,
    )


# --- Every registered sampler reproduces the data ----------------------------------------------------
# The steps and tolerances are the ones each sampler's registry entry declares (``SamplerEntry.tolerance``), so a
# new sampler is checked as soon as it is registered, and one registered without a tolerance fails.
# Measured at 100 steps, (mean err, std err) uniform / karras: ddim = euler (0.000, -0.008) / (-0.004, -0.013);
# heun (0.000, +0.002) / (-0.004, +0.001); dpmpp_2m (0.000, +0.000) / (-0.004, +0.001); ddpm at 1000 steps
# (-0.0003, -0.002) / (-0.002, -0.001); consistency (flow-map denoiser) at 4 steps: see FlowMapDenoiser.
# The karras grid starts at sigma_max = 80, where N(0, I) misses the marginal's mean sqrt(abar) mu:
# -0.7 / 80 * 0.5 ~= -0.0044 in the output mean. First-order samplers get a wider std budget.


class FlowMapDenoiser:
    """The exact flow map of Gaussian data: the end x0 of the probability-flow ODE trajectory through x_t,
    x0 = mu + s / sqrt(s^2 + sigma^2) (x~ - mu) (module docstring, at sigma -> 0). It is what a
    consistency-distilled student learns, and what samplers meant for flow maps are checked with."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor) -> torch.Tensor:
        ab = min(max(float(AB(torch.tensor([float(t[0])], dtype=torch.float64))), 1e-12), 1.0)
        sigma2 = (1 - ab) / ab
        return MU + S / math.sqrt(S**2 + sigma2) * (x / math.sqrt(ab) - MU)


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_every_sampler_declares_its_exact_answer_tolerance(name):
    assert isinstance(samplers.SAMPLERS[name].tolerance, samplers.Tolerance), (
        f"sampler {name} is registered without a tolerance for the exact-answer check; declare one in its entry"
    )


@pytest.mark.parametrize("grid", ["uniform", "karras"])
@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_every_sampler_turns_noise_into_the_data_distribution(name, grid):
    entry = samplers.SAMPLERS[name]
    tol = entry.tolerance
    assert tol is not None, f"sampler {name} declares no tolerance"
    out = run(name, tol.steps, grid, fn=FlowMapDenoiser() if entry.for_flow_maps else None)
    assert out.shape == (N_ROWS, 1, DIMS)
    dm, ds = data_error(out)
    assert abs(dm) < tol.mean, f"{name} on {grid}: mean off by {dm:+.4f}"
    assert abs(ds) < tol.std, f"{name} on {grid}: std off by {ds:+.4f}"


def test_the_flow_map_check_fails_for_a_sampler_that_keeps_x_t():
    """DDIM with a flow-map denoiser is not a consistency sampler: it keeps the state's noise instead of
    drawing it afresh, and its samples leave the data distribution; the consistency check must see that."""
    out = run("ddim", 4, "uniform", fn=FlowMapDenoiser())
    assert not matches_data(out, 0.01, 0.05), data_error(out)


@pytest.mark.parametrize("grid", ["uniform", "karras"])
def test_ddim_without_noise_is_euler_in_sigma_space(grid):
    """DDIM (eta = 0) writes x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps_hat; divided by sqrt(abar_s)
    that is x~_s = D + (sigma_s / sigma_t)(x~_t - D), exactly an Euler step of the PF-ODE (Karras et al. 2022,
    §3; Song et al. 2021, eq. 14). The uniform grid is started at t = 0.98, where abar is not clamped."""
    ts = time_grid(12, kind=grid, schedule=AB)
    if grid == "uniform":
        ts = ts * 0.98
    x = start_noise(rows=500, seed=3)
    outs, trajs = {}, {}
    for name in ("ddim", "euler"):
        trajs[name] = []
        outs[name] = _sampler(name)(
            GaussianDenoiser(),
            x,
            ts,
            alpha_bar=AB,
            self_condition=False,
            callback=lambda info, k=name: trajs[k].append(info["x"].clone()),
        )
    assert torch.allclose(outs["ddim"], outs["euler"], atol=2e-5, rtol=1e-5)
    for a, b in zip(trajs["ddim"][:-1], trajs["euler"][:-1]):  # the states in between agree too
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


# --- Order of accuracy ------------------------------------------------------------------------------


def exact_flow(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """What every PF-ODE sampler on the grid ``ts`` tends to as the grid is refined by adding points (the
    karras grid keeps its ends): the exact flow from sigma_0 to the last nonzero sigma, then the exact
    denoiser there (the samplers' last step, to sigma = 0, returns D). Same clamp of abar as the samplers."""
    ab = AB(ts.double()).clamp(1e-8, 1.0)
    sig = ((1 - ab) / ab).sqrt()
    s0, s_last = sig[0], sig[-2]
    x_tilde = x.double() / ab[0].sqrt()
    at_last = MU + ((S**2 + s_last**2) / (S**2 + s0**2)).sqrt() * (x_tilde - MU)
    return MU + S**2 / (S**2 + s_last**2) * (at_last - MU)


def test_the_exact_flow_is_what_a_fine_heun_run_reaches():
    x = start_noise(rows=2000, seed=5, dtype=torch.float64)
    ts = time_grid(1000, kind="karras", schedule=AB)
    out = run("heun", 1000, "karras", x=x)
    assert (out - exact_flow(x, ts)).abs().max() < 1e-4


def _slope(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of -log(error) against log(steps): the order of convergence."""
    lx = torch.tensor([math.log(k) for k in steps], dtype=torch.float64)
    ly = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float(-(lx * ly).sum() / (lx * lx).sum())


def test_second_order_solvers_converge_faster_than_euler():
    """On the karras grid (fixed ends) the max error against the exact flow falls as K^-p: measured slopes
    euler 0.99, heun 2.1, dpmpp_2m 2.1 over K = 16, 32, 64 (heun 6.3e-3 vs euler 8.2e-2 at K = 64). Not on the
    uniform grid: there the last nonzero sigma moves with K (so does the limit), and heun's first step, from
    sigma = 1e4 (abar clamped at t = 1), dominates the error at small K."""
    x = start_noise(rows=2000, seed=5, dtype=torch.float64)
    steps = [16, 32, 64]
    errors = {}
    for name in ("euler", "heun", "dpmpp_2m"):
        errors[name] = []
        for k in steps:
            ts = time_grid(k, kind="karras", schedule=AB)
            errors[name].append(float((run(name, k, "karras", x=x) - exact_flow(x, ts)).abs().max()))
    slopes = {name: _slope(steps, e) for name, e in errors.items()}
    assert 0.8 < slopes["euler"] < 1.3, (slopes, errors)
    for name in ("heun", "dpmpp_2m"):
        assert slopes[name] > slopes["euler"] + 0.7, (slopes, errors)
        assert errors[name][-1] < errors["euler"][-1] / 5, (slopes, errors)


# --- Ancestral sampling -----------------------------------------------------------------------------


def ddpm_without_the_xt_term(denoise_fn, x, ts, *, alpha_bar, generator=None, callback=None, self_condition=True):
    """A subtly wrong DDPM: the posterior mean keeps only its x0_hat term (drops sqrt(alpha_{t|s})(1 - abar_s) /
    (1 - abar_t) x_t of Ho et al. 2020, eq. 7); the posterior variance is right. Used to show that the
    distribution check below can fail."""

    def update(x, x0_hat, ab_t, ab_s):
        beta = 1 - ab_t / ab_s
        one_m = (1 - ab_t).clamp(min=1e-12)
        var = (beta * (1 - ab_s) / one_m).clamp(min=0.0)
        return ab_s.sqrt() * beta / one_m * x0_hat + var.sqrt() * torch.randn(
            x.shape, generator=generator, dtype=x.dtype
        )

    return samplers._step_loop(denoise_fn, x, ts, alpha_bar, update, callback, self_condition)


# Measured at 1000 steps: mean -0.0003, std -0.002 (the Monte Carlo std of the std is ~0.002). Without the
# x_t term: mean -0.70, std -0.49 (every sample collapses onto ~0).
DDPM_TOL = (samplers.SAMPLERS["ddpm"].tolerance.mean, samplers.SAMPLERS["ddpm"].tolerance.std)  # the registry's


def test_the_ddpm_check_fails_without_the_xt_term_of_the_posterior_mean():
    out = ddpm_without_the_xt_term(
        GaussianDenoiser(),
        start_noise(),
        time_grid(1000),
        alpha_bar=AB,
        generator=torch.Generator().manual_seed(1),
        self_condition=False,
    )
    assert not matches_data(out, *DDPM_TOL), data_error(out)


# --- Stochastic samplers -----------------------------------------------------------------------------
# Measured (mean err, std err) with the denoiser evaluated at the churn-raised level, uniform / karras:
# euler churn 20, 200 steps (+0.002, -0.016) / (+0.006, -0.018): Euler's own O(gamma) bias, gamma = 0.1;
# heun churn 20, 100 steps (+0.005, +0.002) / (+0.004, +0.004); ddim eta=1, 1000 steps within 0.002;
# dpmpp_2m eta=1, 200 steps (+0.005, +0.003) / (+0.007, +0.001).
# Evaluating the raised state at the grid time instead (the bug this guards against) gives std errors
# euler +0.033 / +0.030 and heun +0.048 / +0.049.
STOCHASTIC = [
    ("euler", {"churn": 20.0}, 200, 0.025),
    ("heun", {"churn": 20.0}, 100, 0.015),
    ("ddim", {"eta": 1.0}, 1000, 0.01),
    ("dpmpp_2m", {"eta": 1.0}, 200, 0.01),
]


@pytest.mark.parametrize("grid", ["uniform", "karras"])
@pytest.mark.parametrize("name, kw, steps, tol", STOCHASTIC, ids=[f"{n}-{list(k)[0]}" for n, k, _, _ in STOCHASTIC])
def test_stochastic_samplers_reproduce_the_data_distribution(name, kw, steps, tol, grid):
    out = run(name, steps, grid, **kw)
    dm, ds = data_error(out)
    assert abs(dm) < 0.01 and abs(ds) < tol, f"{name} {kw} on {grid}: mean {dm:+.4f}, std {ds:+.4f}"


# --- Every network call sees the forward marginal of the time it is told -------------------------------
# x_t at time t must be distributed as sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: mean sqrt(abar_t) MU and
# variance abar_t S^2 + 1 - abar_t. A sampler that tells the network the wrong time (an off-by-one index,
# a churn-raised level evaluated at the grid time) fails this at the calls concerned.
# Measured worst relative variance error over the calls with t >= 0.1, 100 steps (uniform / karras):
#   ddpm, ddim eta=1 0.040 / 0.087; ddim, euler 0.021 / 0.045; euler churn 10 0.059 / 0.079;
#   heun 0.010 / 0.003; dpmpp_2m 0.000 / 0.001; dpmpp_2m eta=1 0.020 / 0.023; heun churn 20 0.025 / 0.023;
#   heun churn 1000 (gamma = sqrt(2) - 1) 0.028 / 0.038.
# Evaluating the churn-raised state at the grid time instead: 0.22 (churn 10), 0.45 (churn 20), 1.0 (churn 1000).
# Worst mean error 0.012 std everywhere (the karras grid's start at sigma_max = 80 is most of it).
MARGINAL = [
    ("ddpm", {}, 0.12),
    ("ddim", {}, 0.12),
    ("ddim", {"eta": 1.0}, 0.12),
    ("euler", {}, 0.12),
    ("heun", {}, 0.05),
    ("dpmpp_2m", {}, 0.05),
    ("dpmpp_2m", {"eta": 1.0}, 0.05),
    ("euler", {"churn": 10.0}, 0.12),
    ("heun", {"churn": 20.0}, 0.05),
    ("heun", {"churn": 1000.0}, 0.06),
]


@pytest.mark.parametrize("grid", ["uniform", "karras"])
@pytest.mark.parametrize("name, kw, tol", MARGINAL, ids=[f"{n}-{k}" for n, k, _ in MARGINAL])
def test_every_network_call_sees_the_forward_marginal_of_its_time(name, kw, tol, grid):
    fn = GaussianDenoiser(record=True)
    run(name, 100, grid, fn=fn, **kw)
    assert len(fn.calls) == samplers.nfe(name, 100, time_grid(100, kind=grid, schedule=AB), AB)
    worst_var, worst_mean = 0.0, 0.0
    for t, ab, mean, var in fn.calls:
        if t < 0.1:  # near t = 0 the marginal's variance -> S^2 and relative errors of first-order steps grow
            continue
        expect_var = ab * S**2 + 1 - ab
        worst_var = max(worst_var, abs(var / expect_var - 1))
        worst_mean = max(worst_mean, abs(mean - math.sqrt(ab) * MU) / math.sqrt(expect_var))
    assert worst_var < tol, f"{name} {kw}: input variance off the marginal by {worst_var:.3f} (relative)"
    assert worst_mean < 0.025, f"{name} {kw}: input mean off the marginal by {worst_mean:.3f} std"


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_self_conditioning_feeds_back_the_previous_estimate(name):
    """Self-conditioning (Chen et al. 2022, Analog Bits §3.2): each call gets the x0 estimate of the call before
    (zeros at the first); with self_condition=False always zeros."""
    x = start_noise(rows=64, seed=2)
    for on in (True, False):
        seen, returned = [], []

        def fn(x_t, t, sc):
            seen.append(sc.clone())
            out = GaussianDenoiser()(x_t, t, sc)
            returned.append(out.clone())
            return out

        _sampler(name)(
            fn,
            x,
            time_grid(10, schedule=AB),
            alpha_bar=AB,
            self_condition=on,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.all(seen[0] == 0)
        for sc, prev in zip(seen[1:], returned[:-1]):
            assert torch.allclose(sc, prev if on else torch.zeros_like(prev), atol=1e-6)


@pytest.mark.parametrize("steps", [4, 8])
def test_heun_from_pure_noise_stays_on_the_data_at_few_steps(steps):
    """The uniform grid starts at t = 1 (sigma ~ 1e4): averaging the two slopes of a step that wide put
    Heun's 8-step std at 5.0 for data of std 0.5. Its first step is an Euler (= DDIM) step, exact there."""
    out = run("heun", steps, "uniform")
    assert abs(out.std().item() - S) < 0.12 and abs(out.mean().item() - MU) < 0.05
