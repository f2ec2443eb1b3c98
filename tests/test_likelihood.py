"""The variational bound of embedding diffusion (sedlm/diffusion/likelihood.py) on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from sedlm.diffusion.likelihood import diffusion_term, embedding_vlb, noisy, prior_term
from sedlm.diffusion.schedules import get_schedule, log_snr


def _gaussian_denoiser(s: float):
    """The exact posterior mean of x ~ N(0, s^2 I) given z_lam: sqrt(ab) s^2 z / (ab s^2 + 1 - ab)."""

    def denoise(z, lam):
        ab = torch.sigmoid(lam)[:, None, None]
        return ab.sqrt() * s**2 * z / (ab * s**2 + 1 - ab)

    return denoise


def test_gaussian_data_with_the_exact_denoiser_gives_the_exact_nll():
    """For x ~ N(0, s^2 I) and the optimal denoiser the continuous-time bound is tight: reconstruction with
    the Gaussian decoder N(x; z/alpha, sigma^2/alpha^2), plus diffusion, plus prior = -log N(x; 0, s^2 I)."""
    g = torch.Generator().manual_seed(0)
    s, B, L, D = 0.7, 4000, 2, 3
    x = s * torch.randn(B, L, D, generator=g, dtype=torch.float64)
    lam_min, lam_max = -12.0, 10.0
    diff = diffusion_term(_gaussian_denoiser(s), x, lam_min, lam_max, points=24, generator=g)
    z = noisy(x, lam_max, g)
    a2, s2 = 1 / (1 + math.exp(-lam_max)), 1 / (1 + math.exp(lam_max))
    recon = (0.5 * math.log(2 * math.pi * s2 / a2) + 0.5 * (x - z / math.sqrt(a2)) ** 2 / (s2 / a2)).sum((1, 2))
    bound = recon + diff + prior_term(x, lam_min)
    exact = (0.5 * math.log(2 * math.pi * s**2) + 0.5 * x**2 / s**2).sum((1, 2))
    gap = bound - exact
    assert abs(gap.mean().item()) < 3 * gap.std().item() / math.sqrt(B) + 0.01, (bound.mean(), exact.mean())
    # a worse denoiser can only raise it: the bound of a model that shrinks too little
    worse = diffusion_term(_gaussian_denoiser(1.5 * s), x, lam_min, lam_max, points=24, generator=g)
    assert (recon + worse + prior_term(x, lam_min)).mean() > bound.mean() + 0.5


def test_prior_term_is_the_gaussian_kl():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    lam = -1.3
    a, sig = math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))
    q = torch.distributions.Normal(a * x, sig)
    want = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum((1, 2))
    assert torch.allclose(prior_term(x, lam), want)


class TwoTokens(torch.nn.Module):
    """A one-position SED-shaped model of uniform data over two tokens with embeddings +-e: its logits are the
    exact posterior log p(w | z_t) and its estimate the posterior mean E[x | z_t]."""

    def __init__(self, schedule, d: int = 4, logit_cap: float = math.inf):
        super().__init__()
        self.e = torch.ones(d, dtype=torch.float64)  # norm sqrt(d), as SED's rows
        self.schedule, self.logit_cap = schedule, logit_cap
        self.position_knots = None
        self.embedding = torch.nn.Module()
        self.embedding.weight = torch.stack([self.e, -self.e]).float()  # (V, d)

    def embed(self, ids):
        return torch.where(ids[..., None] == 0, self.e, -self.e)  # (B, L, d)

    def forward(self, z, t, self_cond=None, *_):
        ab = self.schedule(t.double())[:, None, None].clamp(1e-12, 1 - 1e-12)
        # log N(z; +-sqrt(ab) e, (1 - ab)) difference: logit of p(w = 0 | z)
        logit = (2 * ab.sqrt() * (z.double() * self.e).sum(-1, keepdim=True) / (1 - ab)).clamp(
            -self.logit_cap, self.logit_cap
        )
        logits = torch.cat([logit / 2, -logit / 2], -1)  # (B, L, 2)
        x0 = (2 * torch.sigmoid(logit) - 1) * self.e
        return x0.to(z.dtype), logits.float()


def test_one_token_of_two_equally_likely_gives_log_2():
    """-log p(w) = log 2 for uniform data over two tokens; with the exact denoiser and readout the bound
    (32 log-SNR points, data noise 1e-2) reaches it."""
    schedule = get_schedule("cosine")
    model = TwoTokens(schedule)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 2, (4000, 1), generator=g)
    terms = embedding_vlb(model, ids, schedule, g, self_condition=False, posterior_from=math.inf)
    total = terms["total"]
    assert total.mean().item() == pytest.approx(math.log(2), abs=3 * total.std().item() / math.sqrt(len(ids)) + 0.01)
    assert terms["reconstruction"].mean() < 1e-3 and terms["prior"].mean() < 1e-5
    # the schedule's own end points set the range (cosine reaches abar = 1 at t = 0: capped at 1/sigma0^2)
    assert log_snr(schedule(torch.tensor([1.0]))).item() < -15


def test_bound_of_a_trained_model_falls_with_training(tmp_path, corpus_file):
    from conftest import TINY

    from sedlm.api import load_pretrained
    from sedlm.eval.likelihood import likelihood
    from sedlm.families import load_config
    from sedlm.train.trainer import train

    over = [*TINY, f"data.source={corpus_file}", "train.eval_every=1000", "train.checkpoint_every=1000"]
    results = []
    for steps in (1, 150):
        out = tmp_path / f"s{steps}"
        train(
            load_config(None, [*over, f"train.max_steps={steps}", "train.lr=3e-3"]),
            out,
            progress=False,
            log=lambda s: None,
        )
        results.append(likelihood(load_pretrained(out), rows=32, seed=0))
    early, late = results
    assert late["nll"] < early["nll"] - 3 * (early["nll_se"] + late["nll_se"]), (early, late)
    assert late["nll_kind"] == "bound" and late["perplexity"] == pytest.approx(math.exp(late["nll"]), rel=1e-6)


def test_posterior_estimate_keeps_a_saturating_models_bound_finite():
    """A model whose confidence saturates (logit differences capped at 4) keeps an error in its estimate as the
    noise vanishes; without the likelihood correction the e^lam weight blows that up, with it the bound stays
    near the truth (and above it)."""
    schedule = get_schedule("cosine")
    model = TwoTokens(schedule, logit_cap=4.0)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 2, (2000, 1), generator=g)
    plain = embedding_vlb(model, ids, schedule, g, self_condition=False, posterior_from=math.inf)["total"].mean()
    fixed = embedding_vlb(model, ids, schedule, g, self_condition=False)["total"].mean()
    assert plain > 5, plain
    assert math.log(2) - 0.05 < fixed < math.log(2) + 0.5, fixed


class SecondPassKnows(TwoTokens):
    """Knows nothing on its first pass (uniform logits; its estimate is all ones) and the exact posterior on
    the second, which it recognises by being fed that estimate as self-conditioning: the bound must take the
    second pass, fed the first's estimate, as sampling does."""

    def forward(self, z, t, self_cond=None, *_):
        if self_cond is None or not torch.any(self_cond == 1):
            return torch.ones_like(z), torch.zeros(*z.shape[:2], 2)
        return super().forward(z, t)


def test_bound_uses_the_second_self_conditioning_pass():
    schedule = get_schedule("cosine")
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 2, (2000, 1), generator=g)
    two = embedding_vlb(SecondPassKnows(schedule), ids, schedule, g, posterior_from=math.inf)["total"].mean()
    one = embedding_vlb(SecondPassKnows(schedule), ids, schedule, g, self_condition=False, posterior_from=math.inf)
    assert two.item() == pytest.approx(math.log(2), abs=0.05)
    assert one["total"].mean() > two + 1  # the uninformed first pass alone is a far looser bound


# --- Like for like: every family scores all L tokens of the same rows ------------------------------------


class _UnigramLogits(torch.nn.Module):
    """A token model that ignores its input: the same distribution at every position (the mask token, if
    any, gets no mass, as MDLM's SUBS parameterisation requires). (B, L) -> (B, L, V)"""

    def __init__(self, logits: torch.Tensor, mask_id: int | None = None):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())
        self.mask_id = mask_id

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.logits.expand(*z.shape, -1).clone()
        if self.mask_id is not None:
            out[..., self.mask_id] = float("-inf")
        return out


def _unigram_case(V: int = 12, L: int = 16, rows: int = 96):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(V, generator=g) * 1.5
    logits[V - 1] = float("-inf")  # token V - 1 plays MDLM's mask
    ids = torch.multinomial(torch.softmax(logits, -1), rows * L, replacement=True, generator=g).view(rows, L)
    exact = -torch.log_softmax(logits, -1)[ids].mean().item()  # -log p per token, every token counted
    tok = SimpleNamespace(eos_id=0, pad_id=1, mask_id=V - 1)
    return logits, ids, exact, tok


def test_a_unigram_model_scores_the_same_through_every_family_scorer():
    """For a model that ignores its input, -log p(row) is the sum of the tokens' unigram costs: AR's exact
    NLL must give it to rounding (all L tokens counted, the first included), MDLM's bound in expectation
    (E[masked * m'/m] = 1 per position) within its Monte Carlo error."""
    from sedlm.config import Config
    from sedlm.families import get_family

    logits, ids, exact, tok = _unigram_case()
    cfg = Config()
    ar = get_family("ar").nll_bound(_UnigramLogits(logits), ids, cfg, torch.Generator().manual_seed(1), tok)
    assert ar.mean().item() == pytest.approx(exact, abs=1e-5)
    mdlm = get_family("mdlm").nll_bound(
        _UnigramLogits(logits, mask_id=tok.mask_id), ids, cfg, torch.Generator().manual_seed(1), tok
    )
    se = mdlm.std().item() / len(mdlm) ** 0.5
    assert abs(mdlm.mean().item() - exact) < 4 * se + 1e-3, (mdlm.mean().item(), exact, se)


def test_ar_counts_the_first_token_of_a_row_even_a_one_token_row():
    from sedlm.config import Config
    from sedlm.families import get_family

    logits, ids, _, tok = _unigram_case()
    one = ids[:, :1]  # (rows, 1)
    got = get_family("ar").nll_bound(_UnigramLogits(logits), one, Config(), torch.Generator(), tok)
    assert torch.allclose(got, -torch.log_softmax(logits, -1)[one[:, 0]], atol=1e-6)


def test_mdlm_averages_several_stratified_times_per_row():
    """One time per row left the per-row estimate noisy (standard error 0.12 against SED's 0.03); several
    stratified times cut its Monte Carlo error while keeping its mean."""
    from sedlm.config import Config
    from sedlm.families import get_family, mdlm

    logits, ids, _, tok = _unigram_case(rows=256)
    model = _UnigramLogits(logits, mask_id=tok.mask_id)
    exact_rows = -torch.log_softmax(logits, -1)[ids].mean(-1)  # (rows,) each row's own exact figure
    noise = {}
    for k in (1, mdlm.NLL_TIMES):
        old, mdlm.NLL_TIMES = mdlm.NLL_TIMES, k
        try:
            est = get_family("mdlm").nll_bound(model, ids, Config(), torch.Generator().manual_seed(0), tok)
        finally:
            mdlm.NLL_TIMES = old
        # the Monte Carlo error of a row's estimate (mean absolute: the 1/t weight makes it heavy-tailed)
        noise[k] = (est.detach() - exact_rows).abs().mean().item()
    assert noise[mdlm.NLL_TIMES] < 0.7 * noise[1], noise  # measured 0.22 against 0.54


def test_the_spindle_figure_is_labelled_an_objective_not_a_bound():
    from sedlm.families import get_family, load_config

    fam = get_family("mdlm")
    assert fam.likelihood_kind(load_config(None, ["mdlm.mask_schedule=linear"])) == "bound"
    assert "not a bound" in fam.likelihood_kind(load_config(None, ["mdlm.mask_schedule=spindle"]))


# --- Conditional figures: the other tokens given some (lm-evaluation-harness loglikelihood) ---------------


class _CopyGiven(torch.nn.Module):
    """An MDLM predictor for rows of one repeated token: wherever a row shows a token, every masked position
    predicts it with probability 1 - eps (the rest spread evenly); a fully masked row predicts uniformly.
    -log p(others | one shown) is then -log(1 - eps) per token exactly. (B, L) -> (B, L, V)"""

    def __init__(self, V: int, mask_id: int, eps: float = 0.01):
        super().__init__()
        self.V, self.mask_id, self.eps = V, mask_id, eps
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, L = z.shape
        shown = z != self.mask_id
        first = torch.where(shown, z, torch.zeros_like(z)).max(-1).values  # (B,) the shown token (rows are constant)
        probs = torch.full((B, L, self.V), self.eps / (self.V - 2))
        probs.scatter_(-1, first[:, None, None].expand(B, L, 1), 1 - self.eps)
        probs[~shown.any(-1)] = 1.0 / (self.V - 1)
        probs[..., self.mask_id] = 0.0
        return probs.log()


def test_mdlm_conditional_bound_reads_the_given_tokens_and_counts_only_the_others():
    """Rows of one repeated token with its first position given: the NELBO of the others is -log(1 - eps)
    per token in expectation (E[masked * m'/m] = 1 per position, and the given token is always shown). A
    bound that masked the given token too would pay log V whenever the whole row is masked."""
    from sedlm.config import Config
    from sedlm.families import get_family

    V, L, rows, eps = 12, 16, 128, 0.01
    tok = type("Tok", (), {"eos_id": 0, "pad_id": 1, "mask_id": V - 1})()
    ids = torch.randint(2, V - 1, (rows, 1), generator=torch.Generator().manual_seed(0)).expand(rows, L).clone()
    given = torch.zeros(rows, L, dtype=torch.bool)
    given[:, 0] = True
    model = _CopyGiven(V, tok.mask_id, eps)
    cond = get_family("mdlm").nll_bound(model, ids, Config(), torch.Generator().manual_seed(1), tok, given=given)
    se = cond.std().item() / rows**0.5
    assert abs(cond.mean().item() - (-math.log(1 - eps))) < 4 * se + 1e-3, (cond.mean().item(), se)
    free = get_family("mdlm").nll_bound(model, ids, Config(), torch.Generator().manual_seed(1), tok)
    assert free.mean() > cond.mean() + 0.05  # nothing given: fully masked rows cost log(V - 1)


def test_ar_conditional_figure_is_the_chain_rule_share_of_the_row():
    """AR: -log p(continuation | context) is the sum of the continuation tokens' own terms, exactly."""
    from sedlm.config import Config
    from sedlm.families import get_family

    logits, ids, _, tok = _unigram_case()
    given = torch.zeros_like(ids, dtype=torch.bool)
    given[:, :5] = True
    got = get_family("ar").nll_bound(_UnigramLogits(logits), ids, Config(), torch.Generator(), tok, given=given)
    want = -torch.log_softmax(logits, -1)[ids[:, 5:]].mean(-1)
    assert torch.allclose(got, want, atol=1e-6)


class _ConstantDenoiser(torch.nn.Module):
    """An SED denoiser whose estimate ignores its inputs (the same logits everywhere); records what
    conditioning it was given."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.embedding = torch.nn.Embedding.from_pretrained(table)
        self.logits = torch.nn.Parameter(torch.randn(table.shape[0], generator=torch.Generator().manual_seed(3)))
        self.position_knots = None
        self.seen: list[tuple] = []

    def embed(self, ids):
        return self.embedding(ids)

    def forward(self, z, t, self_cond=None, cond=None, cond_mask=None):
        self.seen.append((cond, cond_mask))
        logits = self.logits.expand(*z.shape[:2], -1)
        return torch.softmax(logits, -1) @ self.embedding.weight, logits


def test_sed_conditional_bound_counts_only_the_other_positions_and_conditions_on_the_given():
    """With an estimate that ignores z, every position of a row of one repeated token costs the same in
    each term, so the bound per scored token with some positions given equals the whole row's per token;
    a term that still counted given positions (or a held estimate left out) would break the equality.
    Every network call sees the given positions' clean embeddings and mask."""
    from sedlm.diffusion.likelihood import embedding_vlb
    from sedlm.diffusion.schedules import get_schedule

    V, D, L = 10, 8, 12
    table = torch.randn(V, D, generator=torch.Generator().manual_seed(0))
    ids = torch.full((4, L), 3)
    given = torch.zeros(4, L, dtype=torch.bool)
    given[:, :4] = True
    sched = get_schedule("cosine", 0.0)
    model = _ConstantDenoiser(table)
    kw = {"self_condition": False, "posterior_from": math.inf}  # no likelihood readout: x_hat ignores z
    whole = embedding_vlb(model, ids, sched, torch.Generator().manual_seed(1), **kw)
    model.seen.clear()
    cond = embedding_vlb(model, ids, sched, torch.Generator().manual_seed(1), given=given, **kw)
    for k in ("reconstruction", "prior"):
        assert torch.allclose(cond[k] / (L - 4), whole[k] / L, rtol=1e-9), k
    # the diffusion term: a held estimate is exact at given positions, so only the others add to it
    assert torch.allclose(cond["diffusion"] / (L - 4), whole["diffusion"] / L, rtol=1e-6)
    assert model.seen and all(torch.equal(m.bool(), given) for _, m in model.seen)
    assert all(torch.allclose(c, table[ids] * given[..., None]) for c, _ in model.seen)


# --- The probability-flow ODE estimate (LangFlow's) ----------------------------------------------------------


def test_ode_flow_gives_the_exact_density_change_of_gaussian_data():
    """x ~ N(0, v I): y_s = s x + eps ~ N(0, (1 + s^2 v) I), E[x | y] = s v y / (1 + s^2 v), and the ODE carries
    y0 to y0 sqrt((1 + sK^2 v) / (1 + s0^2 v)); the integral is D/2 log((1 + s0^2 v) / (1 + sK^2 v)) per row."""
    from sedlm.diffusion.likelihood import ode_flow

    v, B, L, D = 0.5, 8, 16, 32
    g = torch.Generator().manual_seed(0)
    y0 = torch.randn(B, L, D, generator=g, dtype=torch.float64) * math.sqrt(1 + 9 * v)
    s = torch.exp(torch.linspace(math.log(3.0), math.log(0.01), 400, dtype=torch.float64)).tolist()
    flow, y_end = ode_flow(lambda y, sk: sk * v * y / (1 + sk**2 * v), y0, s, g)
    exact = 0.5 * L * D * math.log((1 + s[0] ** 2 * v) / (1 + s[-1] ** 2 * v))
    assert flow.mean().item() == pytest.approx(exact, rel=0.01), (flow.mean(), exact)
    want_end = y0 * math.sqrt((1 + s[-1] ** 2 * v) / (1 + s[0] ** 2 * v))
    assert torch.allclose(y_end, want_end, rtol=0.01, atol=1e-3)


def test_ode_estimate_of_two_equally_likely_tokens_is_log_2():
    """With the exact posterior as the denoiser, LangFlow's ODE estimate reaches -log p(w) = log 2 (Euler on
    512 steps), and a denoiser that ignores the state is far above it."""
    from sedlm.diffusion.likelihood import embedding_ode_nll

    schedule = get_schedule("cosine")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 2, (1200, 16), generator=g)  # 16 independent positions a row
    kw = {"self_condition": False, "posterior_from": math.inf, "steps": 512}
    terms = embedding_ode_nll(TwoTokens(schedule, d=1), ids, schedule, g, **kw)  # +-1: a posterior soft for long
    total = terms["total"] / 16  # per token
    assert total.mean().item() == pytest.approx(math.log(2), abs=3 * total.std().item() / math.sqrt(len(ids)) + 0.005)
    assert terms["reconstruction"].mean() < 16e-3

    class Blind(TwoTokens):  # the estimate is 0 wherever the state is: a flow that never moves
        def forward(self, z, t, self_cond=None, *_):
            return torch.zeros_like(z), torch.zeros(*z.shape[:2], 2)

    blind = embedding_ode_nll(Blind(schedule, d=1), ids, schedule, g, **kw)["total"].mean() / 16
    assert blind > total.mean() + 1, blind
