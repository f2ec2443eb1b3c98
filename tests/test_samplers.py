"""Time grids, the sigma-space samplers, honest NFE counting and `sedlm bench steps` on a micro budget."""

import json

import pytest
import torch

from sedlm.bench.steps import steps_bench, steps_for
from sedlm.diffusion.schedules import TIME_GRIDS, get_schedule, time_grid, time_of
from sedlm.errors import SedlmError
from sedlm.eval.harness import sample_texts
from sedlm.sampling.samplers import SAMPLERS, get_sampler, nfe
from sedlm.train.trainer import train


@pytest.mark.parametrize("kind", list(TIME_GRIDS))
@pytest.mark.parametrize("schedule", ["cosine", "linear", "sqrt"])
def test_time_grids_are_decreasing_and_end_at_zero(kind, schedule):
    u = torch.linspace(0, 1, 65)
    kw = {"knots": 0.9 * u**2 + 0.1 * u} if kind == "warped" else {}
    ts = time_grid(12, kind=kind, schedule=get_schedule(schedule), **kw)
    assert ts.shape == (13,) and ts[-1] == 0.0 and 0.5 < ts[0] <= 1.0
    assert torch.all(ts[1:] < ts[:-1])
    if kind != "karras":
        assert ts[0] == 1.0


def test_karras_grid_hits_its_sigmas():
    ab = get_schedule("cosine")
    ts = time_grid(10, kind="karras", schedule=ab, rho=7.0, sigma_min=0.01, sigma_max=80.0)
    a = ab(ts[:-1].double())
    sigma = ((1 - a) / a).sqrt()
    assert sigma[0] == pytest.approx(80.0, rel=1e-3) and sigma[-1] == pytest.approx(0.01, rel=1e-2)
    with pytest.raises(SedlmError, match="valid grids"):
        time_grid(4, kind="nope")


def test_time_of_inverts_the_schedule():
    ab = get_schedule("linear")
    t = torch.linspace(0.01, 0.99, 9, dtype=torch.float64)
    assert torch.allclose(time_of(ab, ab(t)), t, atol=1e-6)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("kind", ["uniform", "karras"])
def test_every_sampler_lands_on_x0_on_every_grid(name, kind):
    x0 = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(0))
    calls = []

    def oracle(x, t, sc):
        calls.append(1)
        return x0.expand_as(x)

    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1))
    ts = time_grid(8, kind=kind, schedule=get_schedule("cosine"))
    out = get_sampler(name)(oracle, x, ts, alpha_bar=get_schedule("cosine"), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(out, x0.expand_as(out), atol=1e-5)
    assert len(calls) == nfe(name, 8, ts, get_schedule("cosine"))


@pytest.mark.parametrize("name, kw", [("euler", {"churn": 2.0}), ("heun", {"churn": 2.0}), ("dpmpp_2m", {"eta": 1.0})])
def test_stochastic_options_draw_from_the_generator(name, kw):
    net = torch.nn.Linear(4, 4)
    fn = lambda x, t, sc: net(x) * (1 - t[:, None, None])  # noqa: E731
    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))

    def run(seed):
        return get_sampler(name)(
            fn,
            x,
            time_grid(6),
            alpha_bar=get_schedule("cosine"),
            generator=torch.Generator().manual_seed(seed),
            **kw,
        )

    with torch.no_grad():
        assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))


def test_steps_for_respects_the_budget():
    assert steps_for("ddpm", 16) == 16 and steps_for("heun", 16) == 8 and nfe("heun", 8) == 15
    assert steps_for("ddim", 16, guidance=2.0) == 8 and steps_for("heun", 4, guidance=2.0) == 1


def test_guided_calls_count_twice(tmp_path, tiny_overrides):
    from sedlm.api import SED
    from sedlm.families import load_config

    train(load_config(None, tiny_overrides), tmp_path / "run", progress=False, log=lambda s: None)
    model = SED.from_pretrained(tmp_path / "run")
    _, plain, _ = sample_texts(model, 3, batch_size=2, steps=5, seed=0)
    _, guided, _ = sample_texts(model, 3, batch_size=2, steps=5, guidance=2.0, guidance_mode="self_cond", seed=0)
    _, prompted, _ = sample_texts(model, 3, batch_size=2, steps=5, guidance=2.0, prompt="The king", seed=0)
    _, heun_nfe, _ = sample_texts(model, 3, batch_size=2, steps=5, sampler="heun", seed=0)
    assert (
        plain == 5
        and guided == 10
        and prompted == 10
        and heun_nfe == nfe("heun", 5, time_grid(5), get_schedule("cosine"))
    )


def test_bench_steps_micro(tmp_path, tiny_overrides, tiny_judge_dir):
    from sedlm.families import load_config

    train(load_config(None, tiny_overrides), tmp_path / "sed", progress=False, log=lambda s: None)
    ar_cfg = load_config(None, tiny_overrides)
    ar_cfg.family = "ar"
    train(ar_cfg, tmp_path / "ar", progress=False, log=lambda s: None)
    rows, speed = steps_bench(
        tmp_path / "sed",
        ar_ckpt=tmp_path / "ar",
        samplers=["ddpm", "heun", "dpmpp_2m"],
        nfes=(4, 8),
        n=3,
        judge_name=str(tiny_judge_dir),
        name="micro",
        results_dir=tmp_path / "res",
        eval_tokens=2,  # a barely trained model pads most of a row
        log=lambda s: None,
    )
    assert [(r["sampler"], r["nfe"]) for r in rows] == [
        ("ddpm", 4),
        ("ddpm", 8),
        ("heun", 3),
        ("heun", 7),
        ("dpmpp_2m", 4),
        ("dpmpp_2m", 8),
    ]
    assert all(r["nfe"] <= b for r, b in zip(rows, [4, 8] * 3))
    assert {(s["method"], s["batch_size"]) for s in speed} == {("sed", 1), ("sed", 32), ("ar", 1), ("ar", 32)}
    payload = json.loads((tmp_path / "res" / "steps-micro.json").read_text())
    assert set(payload) == {"name", "command", "machine", "rows"}
    assert {"sampler", "nfe", "judge_nll", "unigram_entropy", "seconds_per_sample"} <= set(payload["rows"][0])
    assert (tmp_path / "res" / "steps-micro.png").stat().st_size > 1000
    assert (tmp_path / "res" / "steps-micro-speed.md").is_file()


def test_time_warp_fit_recovers_a_known_monotone_function():
    from sedlm.diffusion.schedules import unwarp
    from sedlm.diffusion.timewarp import BINS, fit_warp, record, warp

    g = torch.Generator().manual_seed(0)
    f = lambda t: torch.sigmoid(10 * (t - 0.4))  # noqa: E731  a loss curve: flat, steep, flat
    sums, counts = torch.zeros(BINS), torch.zeros(BINS)
    for _ in range(200):
        t = torch.rand(64, generator=g)
        record(sums, counts, t, 3.0 * f(t) + 1.0 + 0.05 * torch.randn(64, generator=g))
    knots = fit_warp(sums, counts, floor=0.0)
    grid = torch.linspace(0, 1, BINS + 1)
    target = (f(grid) - f(grid[0])) / (f(grid[-1]) - f(grid[0]))
    assert knots[0] == 0 and knots[-1] == pytest.approx(1.0) and torch.all(knots[1:] >= knots[:-1])
    assert (knots - target).abs().max() < 0.06
    mixed = fit_warp(sums, counts)  # with the floor the warp is strictly increasing and invertible
    assert torch.all(mixed[1:] > mixed[:-1])
    u = torch.linspace(0, 1, 101)
    assert torch.allclose(warp(mixed, unwarp(mixed, u)), u, atol=1e-5)
    t = unwarp(mixed, torch.rand(20000, generator=g))  # training draws: densest where the loss is steepest
    assert ((t > 0.3) & (t < 0.5)).float().mean() > 2 * ((t > 0.8) & (t < 1.0)).float().mean()


def test_isotonic_fit_is_monotone_and_exact_on_monotone_input():
    from sedlm.diffusion.timewarp import isotonic

    y = torch.tensor([1.0, 3.0, 2.0, 4.0, 0.0, 5.0])
    out = isotonic(y)
    assert torch.all(out[1:] >= out[:-1]) and out.sum() == pytest.approx(y.sum())
    assert torch.equal(isotonic(torch.arange(5.0)), torch.arange(5.0))


def test_training_with_time_warp_fits_saves_and_samples(tmp_path, tiny_overrides):
    from sedlm.api import SED
    from sedlm.families import load_config

    cfg = load_config(
        None,
        [
            *tiny_overrides,
            "diffusion.time_warp=true",
            "train.max_steps=120",
            "train.checkpoint_every=120",
            "train.eval_every=120",
            "train.log_every=40",
        ],
    )
    train(cfg, tmp_path / "warp", progress=False, log=lambda s: None)
    model = SED.from_pretrained(tmp_path / "warp")
    knots = model.model.time_warp
    assert knots.shape[0] > 2 and knots[0] == 0 and knots[-1] == pytest.approx(1.0)
    assert torch.all(knots[1:] > knots[:-1]) and not torch.allclose(knots, torch.linspace(0, 1, len(knots)))
    seen = []
    model.generate(n=2, steps=6, time_grid="warped", seed=0, callback=lambda info: seen.append(float(info["t"])))
    assert seen[0] == 1.0 and all(a > b for a, b in zip(seen, seen[1:]))
    plain = tmp_path / "plain"
    train(load_config(None, tiny_overrides), plain, progress=False, log=lambda s: None)
    with pytest.raises(SedlmError, match="time_warp"):
        SED.from_pretrained(plain).generate(n=1, steps=3, time_grid="warped")


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_asymmetric_time_intervals_shift_the_network_time(name):
    x0 = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    times = []

    def oracle(x, t, sc):
        times.append(float(t[0]))
        return x0.expand_as(x)

    ts = time_grid(10)
    out = get_sampler(name)(
        oracle,
        torch.randn(2, 3, 4),
        ts,
        alpha_bar=get_schedule("cosine"),
        time_delta=0.5,
        generator=torch.Generator().manual_seed(1),
    )
    width = float(ts[0] - ts[1])  # time_delta counts in steps: half a step later here
    assert times[0] == 1.0 and times[1] == pytest.approx(float(ts[1]) + 0.5 * width)
    assert times[-1] == pytest.approx(float(ts[-2]) + 0.5 * width)
    assert torch.allclose(out, x0.expand_as(out))


def test_the_step_takes_eps_at_the_shifted_time_and_clips_x0_as_analog_bits_alg_2():
    """Alg. 2 of Analog Bits: net(x_t, t_now), then eps = (x_t - sqrt(gamma(t_now)) x_pred) / sqrt(1 - gamma(t_now))
    with x_pred clipped to [-scale, scale], and x_next = sqrt(gamma(t_next)) x_pred + sqrt(1 - gamma(t_next)) eps.
    A denoiser that always answers 3 makes both visible in the first DDIM step; the estimate returned (and fed
    back) is the network's own."""
    ab = get_schedule("cosine")
    ts = torch.tensor([0.6, 0.4, 0.0])
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    steps = []
    out = get_sampler("ddim")(
        lambda z, t, sc: torch.full_like(z, 3.0),
        x,
        ts,
        alpha_bar=ab,
        time_delta=0.5,
        x0_clip=1.0,
        callback=steps.append,
    )
    t_now, t_next = torch.tensor(0.6 + 0.5 * 0.2), ts[1]
    g_now, g_next = ab(t_now), ab(t_next)
    eps = (x - g_now.sqrt() * 1.0) / (1 - g_now).sqrt()
    want = g_next.sqrt() * 1.0 + (1 - g_next).sqrt() * eps
    assert torch.allclose(steps[0]["x"], want, atol=1e-5)
    assert torch.allclose(out, torch.full_like(out, 3.0))


def test_a_clip_beyond_the_float_range_is_no_clip():
    """x0_clip is declared with a minimum only, so a request may send 1e300: it clips nothing (it used to
    overflow float32 inside clamp)."""
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    ab, ts = get_schedule("cosine"), time_grid(4)
    run = lambda c: get_sampler("ddim")(lambda z, t, sc: 2 * z, x, ts, alpha_bar=ab, x0_clip=c)  # noqa: E731
    assert torch.equal(run(1e300), run(0.0))


@pytest.mark.parametrize("mode", ["off", "both"])
def test_sampling_feeds_self_conditioning_only_to_models_trained_with_it(mode, tmp_path, corpus_file):
    """A model trained with diffusion.self_cond=off never saw a non-zero estimate in that input (its weights
    there are untrained): sampling must give it zeros, and the previous estimate otherwise."""
    from conftest import TINY

    from sedlm.api import load_pretrained
    from sedlm.families import load_config
    from sedlm.train.trainer import train

    train(
        load_config(None, [*TINY, f"data.source={corpus_file}", "train.max_steps=2", f"diffusion.self_cond={mode}"]),
        tmp_path / "run",
        progress=False,
        log=lambda s: None,
    )
    lm = load_pretrained(tmp_path / "run")
    seen = []
    lm.model.register_forward_pre_hook(lambda mod, args: seen.append(args[2].abs().max().item()))
    lm.generate(n=2, steps=4, sampler="ddim")
    assert seen[0] == 0 and (max(seen[1:]) == 0 if mode == "off" else min(seen[1:]) > 0), seen
