"""Flow matching in embedding space (diffusion.path=flow, schedule flow): the straight path, its samplers,
the network's input and the training loss's weighting and times."""

from __future__ import annotations

import math

import pytest
import torch

from sedlm.diffusion.schedules import flow, log_snr, path_scale
from sedlm.families import load_config
from sedlm.sampling.samplers import SAMPLERS, ddim


def test_flow_schedule_is_the_straight_path():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    ab = flow(t)
    assert torch.allclose(log_snr(ab), 2 * torch.log((1 - t) / t))
    s = path_scale(ab)
    assert torch.allclose(s * ab.sqrt(), 1 - t) and torch.allclose(s * (1 - ab).sqrt(), t)
    assert flow(torch.tensor(0.0)) == 1 and flow(torch.tensor(1.0)) == 0


def _gaussian_x0(s: float):
    """Exact E[x0 | x_t] for x0 ~ N(0, s^2) under the VP form of the flow schedule. (x, t (B,), sc) -> x0"""

    def denoise(x, t, sc):
        ab = flow(t.double()).to(x.dtype)[:, None, None]
        return ab.sqrt() * s**2 * x / (ab * s**2 + 1 - ab)

    return denoise


def test_ddim_on_the_flow_schedule_is_euler_on_the_flow_ode():
    """Euler in t on dx/dt = v, v_hat = (x - x0_hat) / t for x = (1 - t) x0 + t eps, from x_1 = eps, is DDIM's
    step: the two must agree to rounding (a sampler taking a different step would not)."""
    s, g = 0.5, torch.Generator().manual_seed(0)
    eps = torch.randn(64, 4, 3, generator=g, dtype=torch.float64)
    ts = torch.linspace(1, 0, 21, dtype=torch.float64)
    denoise = _gaussian_x0(s)
    vp_out = ddim(denoise, eps.clone(), ts, alpha_bar=flow, self_condition=False)
    x = eps.clone()  # the straight path's state at t = 1
    for t, t_next in zip(ts[:-1], ts[1:]):
        ab = flow(t)
        x0 = denoise(x / path_scale(ab), t.expand(len(x)), None)  # the network's estimate from the VP state
        x = x0 if t_next == 0 else x + (t_next - t) * (x - x0) / t
    assert torch.allclose(vp_out, x, atol=1e-10)


@pytest.mark.parametrize("name", [k for k, v in SAMPLERS.items() if not v.for_flow_maps])
def test_every_sampler_converges_on_gaussian_data_under_the_flow_schedule(name):
    s, g = 0.5, torch.Generator().manual_seed(1)
    x = torch.randn(4000, 2, 2, generator=g)
    grid = torch.linspace(1, 0, 201)
    out = SAMPLERS[name](_gaussian_x0(s), x, grid, alpha_bar=flow, generator=g, self_condition=False)
    assert out.std().item() == pytest.approx(s, abs=0.03), name


def _model(*over):
    from sedlm.model.denoiser import SEDDenoiser

    cfg = load_config(
        None,
        [
            "diffusion.path=flow",
            "diffusion.schedule=flow",
            "model.d_model=32",
            "model.n_layers=1",
            "model.n_heads=2",
            "model.d_embed=8",
            "model.vocab_size=50",
            "data.seq_len=6",
            *over,
        ],
    )
    table = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1) * math.sqrt(8)
    return cfg, SEDDenoiser.from_config(cfg, table)


def test_the_network_sees_the_straight_paths_state():
    cfg, model = _model()
    seen = []
    model.inp.register_forward_pre_hook(lambda mod, args: seen.append(args[0][..., :8]))
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(3, 6, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    t = torch.tensor([0.2, 0.5, 0.9])
    ab = flow(t)[:, None, None]
    model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t)  # a VP state in, as samplers and the objective give it
    assert torch.allclose(seen[0], (1 - t)[:, None, None] * x0 + t[:, None, None] * eps, atol=1e-5)
    with pytest.raises(Exception, match="set diffusion.schedule=flow"):
        load_config(None, ["diffusion.path=flow"])


class Offset(torch.nn.Module):
    """Returns the clean embedding plus a constant: the x0 error is known exactly."""

    def __init__(self, d: float = 0.1):
        super().__init__()
        self.d, self.time_warp, self.position_knots = d, None, None
        self.table = torch.nn.functional.normalize(
            torch.randn(50, 8, generator=torch.Generator().manual_seed(0)), dim=-1
        )

    def embed(self, ids):
        self.clean = self.table[ids]
        return self.clean

    def forward(self, x_t, t, *args, **kw):
        x0 = self.clean + self.d
        return x0, torch.zeros(*x0.shape[:2], 50)


@pytest.mark.parametrize("weighting", ["x0", "velocity"])
def test_velocity_weighting_and_logit_normal_times(weighting):
    from sedlm.diffusion.objective import VELOCITY_WEIGHT_MAX, sed_loss
    from sedlm.diffusion.schedules import get_schedule

    cfg = load_config(
        None,
        [
            "diffusion.path=flow",
            "diffusion.schedule=flow",
            f"diffusion.mse_weighting={weighting}",
            "diffusion.time_dist=logit_normal",
            "diffusion.self_cond=off",
            "diffusion.sigma0=0",
        ],
    )
    ids = torch.randint(0, 50, (4000, 2), generator=torch.Generator().manual_seed(3))
    _, m = sed_loss(Offset(0.1), ids, cfg.diffusion, get_schedule("flow"), torch.Generator().manual_seed(4))
    t = m["t"]
    inside = ((t > torch.sigmoid(torch.tensor(-1.0))) & (t < torch.sigmoid(torch.tensor(1.0)))).float().mean()
    assert inside.item() == pytest.approx(0.683, abs=0.03)  # sigmoid(N(0, 1)): 68% within one standard deviation
    w = torch.ones_like(t) if weighting == "x0" else t.pow(-2).clamp(max=VELOCITY_WEIGHT_MAX)
    assert m["mse"].item() == pytest.approx(0.01 * w.mean().item(), rel=1e-4)  # (0.1)^2 per dimension, weighted


def test_the_flow_matching_recipe_trains_with_the_velocity_loss():
    """Lipman et al.'s flow-matching objective is ||v - v_hat||^2; for an x0 estimate on the straight path that
    is ||x0 - x0_hat||^2 / t^2 (ELF's released code computes it so). The recipe trained with the unweighted x0
    MSE before."""
    from sedlm.config import Config
    from sedlm.diffusion.objective import sed_loss
    from sedlm.diffusion.schedules import get_schedule
    from sedlm.families.recipes import RECIPES, apply_recipe
    from sedlm.model.denoiser import SEDDenoiser

    cfg = Config()
    apply_recipe(cfg, "flow-matching")
    assert cfg.diffusion.mse_weighting == "velocity" and cfg.diffusion.path == "flow"
    assert "velocity" in RECIPES["flow-matching"].keeps and "cap" in RECIPES["flow-matching"].leaves_out
    # and the weighting is what makes the loss the velocity loss: at the same draws, the weighted MSE exceeds
    # the plain one by the mean 1 / t^2 (>= 1 on [0, 1])
    cfg.model.vocab_size, cfg.model.d_model, cfg.model.n_layers, cfg.data.seq_len = 32, 32, 1, 8
    cfg.diffusion.ce_weight, cfg.diffusion.self_cond = 0.0, "off"
    table = torch.randn(32, cfg.model.d_embed, generator=torch.Generator().manual_seed(0))
    model = SEDDenoiser.from_config(cfg, table)
    ids = torch.randint(0, 32, (4, 8), generator=torch.Generator().manual_seed(1))
    schedule = get_schedule("flow")
    vel = sed_loss(model, ids, cfg.diffusion, schedule, torch.Generator().manual_seed(2))[0]
    cfg.diffusion.mse_weighting = "x0"
    plain = sed_loss(model, ids, cfg.diffusion, schedule, torch.Generator().manual_seed(2))[0]
    assert vel > plain
