"""LangFlow's network pieces (Chen et al. 2026, arXiv 2604.11748) as general SED options: the zero-initialised
self-conditioning input and the logit skip term, each against what it must compute."""

from __future__ import annotations

import pytest
import torch

from sedlm.config import load_config
from sedlm.diffusion.schedules import get_schedule
from sedlm.errors import SedlmError
from sedlm.families import check_config
from sedlm.model.denoiser import SEDDenoiser

V, L, DE = 30, 8, 8


def _model(*over: str) -> SEDDenoiser:
    cfg = load_config(
        None,
        ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", f"model.d_embed={DE}", f"model.vocab_size={V}"]
        + list(over),
    )
    torch.manual_seed(0)
    return SEDDenoiser.from_config(cfg, torch.randn(V, DE, generator=torch.Generator().manual_seed(1))).eval()


def _state(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, L, DE, generator=g), torch.rand(n, generator=g) * 0.9 + 0.05


def test_a_zero_initialised_self_conditioning_input_is_ignored_at_first_and_then_learned():
    x, t = _state()
    sc = torch.randn_like(x)
    for init, ignored in (("zero", True), ("default", False)):
        model = _model(f"model.self_cond_init={init}")
        a, b = model(x, t, torch.zeros_like(x))[0], model(x, t, sc)[0]
        assert torch.allclose(a, b, atol=1e-6) == ignored, init
    model = _model("model.self_cond_init=zero").train()
    model(x, t, sc)[0].pow(2).sum().backward()
    assert model.inp.weight.grad[:, DE : 2 * DE].abs().sum() > 0  # it learns from the first step


@pytest.mark.parametrize("per_position", [False, True])
def test_the_logit_skip_is_the_exact_token_posterior_of_the_state(per_position):
    """With the network's own logits at zero, softmax(logits) is p(v | x_t) for one token drawn uniformly:
    proportional to N(x_t; alpha_t E_v, sigma_t^2 I). A skip with the wrong scale (alpha/sigma, 1/sigma^2) or
    sign, or one at another time than the position's, fails."""
    model = _model("diffusion.x0_estimate=interp", "model.logit_skip=true")
    with torch.no_grad():
        model.logits_head.weight.zero_()
        model.logits_head.bias.zero_()
    x, t = _state()
    if per_position:
        t = torch.rand(3, L, generator=torch.Generator().manual_seed(5)) * 0.9 + 0.05
    E = model.embedding.weight
    abar = get_schedule("cosine")(t)
    a, s2 = abar.sqrt(), 1 - abar
    a, s2 = (a[:, None, None], s2[:, None, None]) if t.dim() == 1 else (a[..., None], s2[..., None])
    log_lik = -((x[:, :, None, :] - a[..., None] * E) ** 2).sum(-1) / (2 * s2)  # (n, L, V)
    logits = model(x, t)[1]
    assert torch.allclose(logits.softmax(-1), log_lik.softmax(-1), atol=1e-5)
    plain = _model("diffusion.x0_estimate=interp")  # no skip: the zeroed head alone would be uniform
    with torch.no_grad():
        plain.logits_head.weight.zero_()
        plain.logits_head.bias.zero_()
    assert torch.allclose(plain(x, t)[1].softmax(-1), torch.full((3, L, V), 1 / V))


def test_the_logit_skip_needs_interp_estimates():
    cfg = load_config(None, ["model.logit_skip=true"])
    with pytest.raises(SedlmError, match="diffusion.x0_estimate=interp"):
        check_config(cfg)


def _gumbel_losses(mu: float, beta: float, H: float, bins: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin loss sums and counts whose means are H F_G(-log SNR) at the bin centres (cosine schedule)."""
    from sedlm.diffusion.schedules import log_snr
    from sedlm.diffusion.timewarp import gumbel_cdf

    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    gamma = -log_snr(get_schedule("cosine")(centres).double())
    return H * gumbel_cdf(gamma, mu, beta), torch.ones(bins, dtype=torch.float64)


def test_the_gumbel_fit_recovers_a_known_proposal_and_draws_from_it():
    """Losses made from H F_G(gamma) with known (mu, beta, H) give those parameters back, and times drawn
    through the fitted warp put gamma = -log SNR at the Gumbel's quantiles (LangFlow's training draws)."""
    from sedlm.diffusion.schedules import log_snr, time_grid, unwarp
    from sedlm.diffusion.timewarp import fit_gumbel

    mu, beta, H = 2.0, 1.5, 7.0
    sums, counts = _gumbel_losses(mu, beta, H)
    knots, (m, b, h) = fit_gumbel(sums, counts, get_schedule("cosine"))
    assert abs(m - mu) < 0.1 and abs(b - beta) / beta < 0.1 and abs(h - H) / H < 0.02
    cos = get_schedule("cosine")
    for q in (0.2, 0.5, 0.8):
        t = unwarp(knots, torch.tensor([q]))
        gamma = float(-log_snr(cos(t.double())))
        assert abs(gamma - (mu - beta * torch.log(-torch.log(torch.tensor(q))).item())) < 0.15, q
    grid = time_grid(4, kind="warped", schedule=cos, knots=knots)  # sampling steps at the quantiles too
    assert torch.allclose(grid[1:-1], unwarp(knots, torch.tensor([0.75, 0.5, 0.25])), atol=1e-6)


def test_a_gumbel_warped_model_refits_its_proposal_in_training():
    from sedlm.diffusion.timewarp import WARP_EVERY, WARP_START, update_warps

    model = _model("diffusion.time_warp=true", "diffusion.warp_fit=gumbel")
    sums, counts = _gumbel_losses(1.0, 2.0, 5.0)
    model.warp_sums.copy_(sums.float() * 1e3)  # statistics of many steps: one more barely moves them
    model.warp_counts.copy_(counts.float() * 1e3)
    t = torch.full((4,), 0.5)
    step = WARP_EVERY * (WARP_START // WARP_EVERY + 1) - 1  # a step that refits
    update_warps(model, {"t": t, "ce_rows": 5.0 * torch.ones(4)}, step)
    mu, beta, H = model.warp_gumbel.tolist()
    assert abs(mu - 1.0) < 0.2 and abs(beta - 2.0) < 0.3 and abs(H - 5.0) < 0.3
    assert not torch.allclose(model.time_warp, torch.linspace(0, 1, len(model.time_warp)))
    with pytest.raises(SedlmError, match="diffusion.time_warp=true"):
        check_config(load_config(None, ["diffusion.warp_fit=gumbel"]))
