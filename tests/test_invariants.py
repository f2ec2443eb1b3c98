"""Invariants of the method's core that hold exactly: the MDLM bound of a uniform predictor, gradient flow of
two-pass self-conditioning, SED span masks, and causality of the autoregressive baseline."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY
from torch import nn

from sedlm.config import ModelConfig
from sedlm.data import masks
from sedlm.diffusion import objective
from sedlm.diffusion.schedules import get_schedule
from sedlm.families import ar, load_config, mdlm
from sedlm.model.denoiser import SEDDenoiser
from sedlm.model.embedding import random_table

pytestmark = pytest.mark.usefixtures("one_thread")


# --- MDLM: the bound of a uniform predictor -------------------------------------------------------------
# MDLM (Sahoo et al. 2024, eq. 10) with the linear schedule alpha_t = 1 - t has the continuous-time NELBO
#     NELBO = E_t E_{z_t} [ alpha'_t / (1 - alpha_t) sum_{i masked} log p(x0_i | z_t) ]
#           = E_t [ 1/t sum_{i masked} CE_i ],
# reported per token (divided by L). A predictor whose logits are equal over the V - 1 real tokens (the SUBS
# parameterisation gives the mask token zero probability) has CE_i = log(V - 1) at every masked position, so
# for one batch with times t_b and m_b masked positions in row b the loss is exactly
#     NELBO_batch = log(V - 1) / (B L) * sum_b m_b / t_b,
# and since E[m_b | t_b] = L t_b its expectation is exactly log(V - 1) for any distribution of t: the bound
# of the uniform predictor is the entropy of the uniform distribution over real tokens.

V_MDLM = 17  # 16 real tokens + the mask


class UniformPredictor(nn.Module):
    """Logits 0 for every real token and -inf for the mask token (SUBS: the mask is never predicted)."""

    def __init__(self, vocab_size: int, mask_id: int):
        super().__init__()
        self.vocab_size, self.mask_id = vocab_size, mask_id
        self.dummy = nn.Parameter(torch.zeros(()))  # mdlm_sample looks up the device through the parameters
        self.inputs: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.inputs.append(z.clone())
        logits = torch.zeros(*z.shape, self.vocab_size) + 0 * self.dummy
        logits[..., self.mask_id] = float("-inf")
        return logits


def test_mdlm_bound_of_a_uniform_model_is_exactly_log_v_minus_1_per_masked_token_weighted_by_1_over_t():
    """The library's own MDLMModel, its token table zeroed (logits = 0 over real tokens, -inf on the mask), on a
    fixed batch: NELBO == log(V - 1) / (B L) sum_b m_b / t_b to float precision, and the reported CE (mean over
    masked positions) == log(V - 1). The masks are read from the model's input; the stratified times are
    replayed from a copy of the generator (t_b = eps + (1 - eps)((u + b / B) mod 1), u the first draw), and the
    replay is checked against the observed masks, so a changed draw order fails loudly rather than silently."""
    V, mask_id, B, L, eps = 50, 49, 8, 32, 1e-3
    model = mdlm.MDLMModel(ModelConfig(d_model=32, n_layers=1, n_heads=2, vocab_size=V), mask_id=mask_id)
    with torch.no_grad():
        model.tok.weight.zero_()
    seen = []
    model.register_forward_hook(lambda m, inp, out: seen.append(inp[0].clone()))
    ids = torch.randint(0, V - 1, (B, L), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    replay = torch.Generator().manual_seed(1)
    loss, metrics = mdlm.mdlm_loss(model, ids, gen, eps=eps)

    u = (torch.rand((), generator=replay) + torch.arange(B) / B) % 1.0
    t = eps + (1 - eps) * u  # (B,)
    masked_replay = torch.rand(ids.shape, generator=replay) < t[:, None]
    (z,) = seen
    masked = z == mask_id
    assert torch.equal(masked, masked_replay), "mdlm_loss draws its times/masks differently: update the replay"
    assert torch.equal(z[~masked], ids[~masked])  # unmasked tokens are carried over unchanged
    expected = math.log(V - 1) * (masked.sum(1) / t).sum() / (B * L)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["ce"].item() == pytest.approx(math.log(V - 1), rel=1e-6)


def test_mdlm_bound_of_a_uniform_model_is_log_v_minus_1_in_expectation():
    """Replay-free: averaged over many rows the 1/t-weighted bound of the uniform predictor is log(V - 1).
    Var(m_b / (t_b L) | t_b) = (1 - t_b) / (t_b L), so the mean over B rows of stratified times has a relative
    std of sqrt((ln(1 / eps) - 1) / (B L)) ~= 0.4% at B = 8192, L = 64; the tolerance is 2.5%. A missing or
    wrong time weight (1, 1/t^2, 1/(1 - t)) or normalising by the masked count moves it by far more."""
    model = UniformPredictor(V_MDLM, mask_id=V_MDLM - 1)
    ids = torch.randint(0, V_MDLM - 1, (8192, 64), generator=torch.Generator().manual_seed(0))
    loss, metrics = mdlm.mdlm_loss(model, ids, torch.Generator().manual_seed(3))
    assert loss.item() == pytest.approx(math.log(V_MDLM - 1), rel=0.025)
    assert metrics["ce"].item() == pytest.approx(math.log(V_MDLM - 1), rel=1e-6)


# --- SED objective: two-pass self-conditioning ------------------------------------------------------------


class Tapped(nn.Module):
    """Wraps a SEDDenoiser and adds a zero-valued leaf tensor ("tap") to each output of each call, so that
    d loss / d output of every pass can be read off separately: grad(loss, tap_k) = dL/d(output of pass k)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[dict] = []

    @property
    def time_warp(self):
        return self.inner.time_warp

    @property
    def position_knots(self):
        return self.inner.position_knots

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner.embed(ids)

    def forward(self, x_t, t, self_cond=None, cond=None, cond_mask=None, **kw):
        x0_hat, logits = self.inner(x_t, t, self_cond, cond, cond_mask, **kw)
        tap_x = torch.zeros_like(x0_hat, requires_grad=True)
        tap_l = torch.zeros_like(logits, requires_grad=True)
        out_x, out_l = x0_hat + tap_x, logits + tap_l
        self.calls.append({"sc": self_cond, "x0": out_x, "logits": out_l, "tap_x": tap_x, "tap_l": tap_l})
        return out_x, out_l


def _tiny_sed(seed: int = 0):
    cfg = load_config(None, TINY)
    cfg.model.vocab_size = 40
    cfg.diffusion.self_cond, cfg.diffusion.p_uncond = "both", 0.0
    torch.manual_seed(seed)
    model = SEDDenoiser.from_config(cfg, random_table(40, cfg.model.d_embed, torch.Generator().manual_seed(seed)))
    return cfg, model


def test_both_self_conditioning_passes_are_optimised_and_the_second_sees_a_detached_estimate():
    """SED (Strudel et al. 2022, §3) / Analog Bits (Chen et al. 2022, §3.2) with both passes optimised:
        L = (L(x0_1) + L(x0_2)) / 2,  x0_1 = f(x_t, 0),  x0_2 = f(x_t, stopgrad(x0_1)).
    Checked exactly through the taps:
      * each pass's logits get exactly 1/2 of its CE gradient, (softmax - onehot) * generated / n_generated;
      * d L / d x0_1 - d L / d x0_2 = mse_weight (x0_1 - x0_2) * generated / (n_generated d_embed): the noisy
        target x0 cancels, and any gradient reaching x0_1 through pass 2's self-conditioning input breaks it;
      * pass 2's self-conditioning input equals pass 1's estimate (at generated positions) and has no autograd
        path to it;
      * the parameter gradient is the sum of what flows in through each pass, and both parts are nonzero."""
    cfg, model = _tiny_sed()
    tapped = Tapped(model)
    B, L, De = 4, 16, cfg.model.d_embed
    ids = torch.randint(0, 40, (B, L), generator=torch.Generator().manual_seed(1))
    given = torch.zeros(B, L, dtype=torch.bool)
    given[:, :5] = True
    given[1] = False
    loss, _ = objective.sed_loss(
        tapped, ids, cfg.diffusion, get_schedule("cosine"), torch.Generator().manual_seed(2), cond_mask=given
    )
    assert len(tapped.calls) == 2, "self_cond='both' runs two passes"
    p1, p2 = tapped.calls
    assert p1["sc"] is None or torch.all(p1["sc"] == 0)
    # at generated positions pass 2 is conditioned on pass 1's estimate (given positions may hold their clean
    # embedding instead, as the samplers do)
    assert torch.equal(p2["sc"][~given], p1["x0"].detach()[~given]), "pass 2 is conditioned on pass 1's estimate"
    assert not p2["sc"].requires_grad, "pass 2's self-conditioning input must be detached from pass 1"

    params = [p for p in model.parameters() if p.requires_grad]
    taps = [p1["tap_x"], p1["tap_l"], p2["tap_x"], p2["tap_l"]]
    grads = torch.autograd.grad(loss, taps + params, retain_graph=True, allow_unused=True)
    gx1, gl1, gx2, gl2 = grads[:4]
    assert all(g is not None for g in (gx1, gl1, gx2, gl2)), "both passes must be in the loss's graph"

    gen = (~given).float()[..., None]  # (B, L, 1)
    n = gen.sum()
    for g, p in ((gl1, p1), (gl2, p2)):
        onehot = nn.functional.one_hot(ids, 40).float()
        expect = 0.5 * cfg.diffusion.ce_weight * (p["logits"].detach().float().softmax(-1) - onehot) * gen / n
        assert torch.allclose(g, expect, atol=1e-7), "each pass's CE enters the loss with weight 1/2"
    expect_diff = cfg.diffusion.mse_weight * (p1["x0"] - p2["x0"]).detach() * gen / (n * De)
    assert torch.allclose(gx1 - gx2, expect_diff, atol=1e-7), "pass 1's estimate gets only its own MSE gradient"
    assert gx1.abs().sum() > 0 and gx2.abs().sum() > 0

    # the parameter gradient is exactly what enters through pass 1's outputs plus pass 2's, and both are nonzero
    per_pass = [
        torch.autograd.grad([p["x0"], p["logits"]], params, [gx, gl], retain_graph=True, allow_unused=True)
        for p, gx, gl in ((p1, gx1, gl1), (p2, gx2, gl2))
    ]
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, total, a, b in zip(names, grads[4:], *per_pass):
        if total is None:
            continue
        assert torch.allclose(total, a + b, atol=1e-6), name
    k = names.index("inp.weight")  # the first layer, reached by both passes
    assert per_pass[0][k].abs().sum() > 0 and per_pass[1][k].abs().sum() > 0


# --- SED span masks --------------------------------------------------------------------------------------


def _n_spans(mask: torch.Tensor) -> torch.Tensor:
    """Maximal runs of equal values per row. (B, L) -> (B,)"""
    return 1 + (mask[:, 1:] != mask[:, :-1]).sum(1)


@pytest.mark.parametrize("L", [1, 2, 3, 7, 32])
@pytest.mark.parametrize("max_spans", [2, 5])
def test_span_mask_rows_follow_their_drawn_span_count(L, max_spans):
    """SED span masking (Strudel et al. 2022, §3.2): n ~ U[1, M] (at most L), n - 1 distinct cut points, spans
    alternate given / generated. So: n = 1 rows are entirely generated (nothing given, not even flipped to all
    given); n >= 2 rows have exactly n spans, hence both given and generated positions. n per row is replayed
    from a copy of the generator (the first draw), and checked against the observed span count."""
    B = 4000
    m = masks.span_mask(B, L, torch.Generator().manual_seed(7), max_spans=max_spans)
    n = torch.randint(1, max_spans + 1, (B,), generator=torch.Generator().manual_seed(7)).clamp(max=L)
    assert m.shape == (B, L) and m.dtype == torch.bool
    one = n == 1
    assert one.any() and (L == 1 or (~one).any())
    assert not m[one].any(), "n = 1 rows must be unconditional (nothing given)"
    multi = m[~one]
    assert torch.equal(_n_spans(multi), n[~one]), "a row drawn with n spans has exactly n alternating spans"
    assert torch.all(multi.any(1)) and torch.all((~multi).any(1)), "n >= 2 rows have given and generated positions"


@pytest.mark.parametrize("L", [1, 5, 64])
def test_span_mask_with_one_span_is_always_unconditional(L):
    for seed in range(5):
        m = masks.span_mask(256, L, torch.Generator().manual_seed(seed), max_spans=1, flip_prob=0.5)
        assert not m.any()


def test_span_mask_distribution_of_span_counts_without_replay():
    """Replay-free: every row is all-generated (n = 1) or has 2..M spans with both roles; never all given; each
    of the M outcomes has probability 1 / M (binomial std 0.003 at B = 20000)."""
    M, B, L = 5, 20000, 32
    m = masks.span_mask(B, L, torch.Generator().manual_seed(11), max_spans=M)
    assert not m.all(1).any(), "no row is entirely given"
    uncond = ~m.any(1)
    spans = torch.where(uncond, torch.ones(B, dtype=torch.long), _n_spans(m))
    assert torch.all(_n_spans(m[~uncond]) >= 2)
    freq = torch.bincount(spans, minlength=M + 1)[1:].float() / B
    assert freq.shape == (M,) and torch.all((freq - 1 / M).abs() < 0.02), freq


# --- Autoregressive baseline: causality -------------------------------------------------------------------


def _ar_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ar.ARModel(ModelConfig(d_model=32, n_layers=2, n_heads=2, vocab_size=50)).eval()
    with torch.no_grad():  # larger token embeddings than the 0.02 init: context effects well above float noise
        model.tok.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed))
    return model


@torch.no_grad()
def test_ar_logits_at_i_ignore_later_tokens_and_depend_on_earlier_ones():
    """p(w_{i+1} | w_<=i): logits at position i are unchanged when any tokens after i change (allclose at 1e-6,
    measured difference 0), and change by far more (> 1e-3) when any single token at or before i changes."""
    model = _ar_model()
    B, L, V = 3, 12, 50
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (B, L), generator=g)
    base = model(ids)  # (B, L, V)
    for i in range(L - 1):
        other = ids.clone()
        other[:, i + 1 :] = (
            ids[:, i + 1 :] + torch.randint(1, V, (B, L - i - 1), generator=g)
        ) % V  # every one differs
        out = model(other)
        assert torch.allclose(out[:, : i + 1], base[:, : i + 1], atol=1e-6, rtol=0), (
            f"logits at <= {i} see later tokens"
        )
    for j in range(L):
        other = ids.clone()
        other[:, j] = (ids[:, j] + 1 + torch.randint(0, V - 1, (B,), generator=g)) % V
        diff = (model(other) - base).abs().amax(-1)  # (B, L)
        assert torch.all(diff[:, :j] <= 1e-6), f"positions before {j} changed"
        assert torch.all(diff[:, j:] > 1e-3), f"positions >= {j} must depend on token {j}: {diff[:, j:].min():.2e}"


def test_token_nll_is_per_position_cross_entropy_with_ignored_targets():
    from sedlm.losses import token_nll

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    target = torch.randint(0, 7, (3, 5), generator=g)
    target[1, 2] = -100
    nll = token_nll(logits, target)
    assert nll.shape == (3, 5) and nll[1, 2] == 0
    expect = -torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
    keep = target != -100
    assert torch.allclose(nll[keep], expect[keep], atol=1e-6)
    ids = target.clamp(min=0)
    pad = int(ids[0, 0])  # another ignored id (a pad id) is honoured too
    padded = token_nll(logits, ids, ignore_index=pad)
    assert padded[ids == pad].abs().sum() == 0 and torch.all(padded[ids != pad] > 0)
