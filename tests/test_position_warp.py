"""SeqDiffuSeq's adaptive per-position noise schedule (``diffusion.position_warp``): the per-position fit,
samplers that follow a different schedule at every position, and the model and trainer that use it."""

from __future__ import annotations

import math

import pytest
import torch

from sedlm.diffusion.schedules import cosine, unwarp
from sedlm.diffusion.timewarp import BINS, WARP_EVERY, fit_warp_rows, record_rows, unwarp_rows, update_warps
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.sampling.samplers import SAMPLERS, ddim, ddpm


def test_unwarp_rows_is_one_unwarp_per_position():
    g = torch.Generator().manual_seed(0)
    grid = torch.linspace(0, 1, BINS + 1)
    knots = torch.stack([grid, grid**2, grid.sqrt()])  # (3, B + 1)
    u = torch.rand(4, 5, generator=g)
    out = unwarp_rows(knots, u)
    assert out.shape == (4, 5, 3)
    for p in range(3):
        assert torch.allclose(out[..., p], unwarp(knots[p], u), atol=1e-6)
    assert torch.allclose(out[..., 1], u.sqrt(), atol=1e-3)  # F = t^2 -> F^-1(u) = sqrt(u)


def test_per_position_fit_follows_each_positions_loss():
    """Position 0's loss rises early in t, position 1's late: position 0 must reach a given share of its
    loss at an earlier t, i.e. its warp puts the shared time's midpoint earlier."""
    g = torch.Generator().manual_seed(1)
    sums, counts = torch.zeros(2, BINS), torch.zeros(2, BINS)
    early = lambda t: torch.sigmoid(12 * (t - 0.25))  # noqa: E731
    late = lambda t: torch.sigmoid(12 * (t - 0.75))  # noqa: E731
    for _ in range(100):
        t = torch.rand(64, 2, generator=g)
        loss = torch.stack([early(t[:, 0]), late(t[:, 1])], 1)
        weight = torch.ones(64, 2)
        weight[:32, 1] = 0  # positions given (not generated) in a row do not count
        record_rows(sums, counts, t, loss, weight)
    knots = fit_warp_rows(sums, counts)
    mid = unwarp_rows(knots, torch.tensor([0.5]))[0]
    assert float(mid[0]) == pytest.approx(0.25, abs=0.06) and float(mid[1]) == pytest.approx(0.75, abs=0.06)
    assert float(counts[0].sum()) == pytest.approx(2 * float(counts[1].sum()), rel=0.05)


def _per_position(maps):
    """A per-position cosine schedule abar_i(u) = cosine(m_i(u)), as ``sample_ids`` builds it:
    (K + 1,) -> (K + 1, L, 1)."""
    return lambda u: torch.stack([cosine(m(u)) for m in maps], -1)[..., None]


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_samplers_follow_a_different_schedule_at_every_position(name):
    """Gaussian data x0 ~ N(0, s^2) with the exact posterior-mean denoiser E[x0 | x_t] = sqrt(ab) s^2 x_t /
    (ab s^2 + 1 - ab), evaluated with each position's own abar: the sampler must turn N(0, 1) noise into
    N(0, s^2) at every position. A sampler that used one position's schedule everywhere would not."""
    s = 0.5
    maps = [lambda u: u, lambda u: u**2, lambda u: 1 - (1 - u) ** 2]  # three very different per-position times
    ab_fn = _per_position(maps)

    def denoise(x, u, sc):  # x (B, L, D), u (B,)
        ab = ab_fn(u[:1])[0].to(x.dtype)  # (L, 1)
        return ab.sqrt() * s**2 * x / (ab * s**2 + 1 - ab)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, 2, generator=g)
    ts = torch.linspace(1, 0, 201)
    fn = {"ddim": ddim, "ddpm": ddpm}[name]
    out = fn(denoise, x, ts, alpha_bar=ab_fn, generator=g, self_condition=False)
    std = out.std(dim=(0, 2))
    assert torch.allclose(std, torch.full((3,), s), atol=0.03), std

    # the same denoiser under a sampler that steps with position 0's schedule at every position is off
    wrong = fn(
        denoise,
        x,
        ts,
        alpha_bar=lambda u: ab_fn(u)[:, :1],
        generator=torch.Generator().manual_seed(0),
        self_condition=False,
    )
    assert (wrong.std(dim=(0, 2))[1:] - s).abs().max() > 0.05


def test_only_elementwise_samplers_declare_per_position():
    assert {k for k, v in SAMPLERS.items() if v.per_position} == {"ddpm", "ddim", "consistency"}


def _model(tmp_path=None):
    from sedlm.model.denoiser import SEDDenoiser

    cfg = load_config(
        None,
        [
            "diffusion.position_warp=true",
            "model.d_model=32",
            "model.n_layers=1",
            "model.n_heads=2",
            "model.d_embed=8",
            "model.vocab_size=50",
            "data.seq_len=6",
        ],
    )
    table = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1) * math.sqrt(8)
    return cfg, SEDDenoiser.from_config(cfg, table)


def test_model_reads_the_shared_time_per_position_and_the_loss_noises_by_it():
    from sedlm.diffusion.objective import sed_loss
    from sedlm.diffusion.schedules import get_schedule

    cfg, model = _model()
    grid = torch.linspace(0, 1, BINS + 1)
    model.position_knots.copy_(torch.stack([grid**p for p in (0.5, 1, 2, 1, 1, 3)]))
    u = torch.tensor([0.3, 0.8])
    t = model.position_times(u, 8)  # rows longer than the trained length reuse the last position's warp
    assert t.shape == (2, 8) and torch.allclose(t[:, 6], t[:, 5]) and torch.allclose(t[:, 2], u.sqrt(), atol=1e-3)
    x, sc = torch.randn(2, 6, 8), torch.zeros(2, 6, 8)
    # a shared time means per-position times through the warp
    assert torch.allclose(model(x, u, sc)[0], model(x, model.position_times(u, 6), sc)[0], atol=1e-6)
    assert not torch.allclose(model(x, u, sc)[0], model(x, u[:, None].expand(2, 6).contiguous(), sc)[0], atol=1e-4)
    ids = torch.randint(0, 50, (4, 6))
    seen = []
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    loss, m = sed_loss(model, ids, cfg.diffusion, get_schedule("cosine"), torch.Generator().manual_seed(0))
    assert m["pos_t"].shape == (4, 6) and m["pos_loss"].shape == (4, 6)
    assert torch.allclose(m["pos_t"], model.position_times(m["t"], 6))
    # each position was noised at its own time: x_t = sqrt(abar_i) x0 + sqrt(1 - abar_i) eps, so with the clean
    # embedding (norm sqrt(d)) removed what is left has the per-position noise's size
    ab = cosine(m["pos_t"])[..., None]  # (4, 6, 1)
    eps = (seen[0] - ab.sqrt() * model.embed(ids)) / (1 - ab).sqrt().clamp(min=1e-3)
    ok = (ab < 0.99).squeeze(-1)
    assert torch.allclose(eps.pow(2).mean(-1)[ok], torch.ones(int(ok.sum())), atol=2.5)  # chi^2 over 8 dims
    assert eps.pow(2).mean() == pytest.approx(1.0, abs=0.35)


def test_trainer_hook_refits_the_per_position_warps():
    cfg, model = _model()
    g = torch.Generator().manual_seed(0)
    before = model.position_knots.clone()
    for step in range(2 * WARP_EVERY):
        t = torch.rand(16, 6, generator=g)
        loss = t ** (1 + torch.arange(6.0))  # later positions' losses rise later
        update_warps(model, {"pos_t": t, "pos_loss": loss, "pos_gen": torch.ones(16, 6)}, step)
    assert not torch.equal(model.position_knots, before)
    mids = model.position_times(torch.tensor([0.5]), 6)[0]
    assert torch.all(mids[1:] > mids[:-1])


def test_config_checks():
    with pytest.raises(SedlmError, match="two kinds of time warping"):
        load_config(None, ["diffusion.position_warp=true", "diffusion.time_warp=true"])
    with pytest.raises(SedlmError, match="use ddpm or ddim"):
        load_config(None, ["diffusion.position_warp=true", "sample.sampler=heun"])
    with pytest.raises(SedlmError, match="time_grid=uniform"):
        load_config(None, ["diffusion.position_warp=true", "sample.time_grid=karras"])


def test_sampling_a_position_warped_model_checks_the_sampler():
    from sedlm.sampling.generate import sample_ids

    _, model = _model()
    ids = sample_ids(model, n=2, seq_len=6, steps=4, sampler="ddim")
    assert ids.shape == (2, 6)
    with pytest.raises(SedlmError, match="use ddpm or ddim"):
        sample_ids(model, n=2, seq_len=6, steps=4, sampler="euler")
