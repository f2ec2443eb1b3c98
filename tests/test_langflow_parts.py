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
