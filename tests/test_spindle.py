"""DiffusionBERT's spindle schedule in the mdlm family (He et al. 2023; ``sedlm.families.mdlm``): it reduces
to the linear schedule bit for bit, its weight integrates to one (a uniform model scores log(V - 1)), the
rate is a valid schedule that masks informative tokens first, the sampler reveals them last, and it trains,
saves and loads through the ordinary trainer and checkpoints without touching linear checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_runs import tiny_checkpoint

from sedlm import load_pretrained
from sedlm.config import ModelConfig
from sedlm.families import get_family, load_config
from sedlm.families.mdlm import MDLMModel, mask_rate, mdlm_loss, mdlm_sample, spindle_info
from sedlm.losses import token_nll
from sedlm.model.transformer import Transformer
from sedlm.train.checkpoint import load_checkpoint
from sedlm.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

V, MASK = 20, 19
TEMPLATE = "The king [___] in the [___:2]."


def _cfg() -> ModelConfig:
    return ModelConfig(d_model=16, n_layers=1, n_heads=2, vocab_size=V)


def _linear_loss(model: MDLMModel, ids: torch.Tensor, generator: torch.Generator, eps: float = 1e-3) -> torch.Tensor:
    """The mdlm loss as it was before the spindle: weight 1/t, masking probability t."""
    B, L = ids.shape
    u = (torch.rand((), generator=generator) + torch.arange(B) / B) % 1.0
    t = eps + (1 - eps) * u
    masked = torch.rand(ids.shape, generator=generator) < t[:, None]
    z = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
    ce = token_nll(model(z).float(), ids)
    return (ce * masked / t[:, None]).sum() / (B * L)


class Uniform(MDLMModel):
    """Predicts the uniform distribution over the V - 1 non-mask tokens, whatever it sees."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*z.shape, V)
        logits[..., MASK] = float("-inf")
        return logits


def test_spindle_without_information_or_lambda_is_the_linear_loss_bit_for_bit():
    torch.manual_seed(0)
    linear = MDLMModel(_cfg(), MASK)
    spindle = MDLMModel(_cfg(), MASK, "spindle", 0.5)
    spindle.load_state_dict(linear.state_dict(), strict=False)  # same weights, token_info still zero
    ids = torch.randint(0, MASK, (6, 12), generator=torch.Generator().manual_seed(1))
    ref = _linear_loss(linear, ids, torch.Generator().manual_seed(7))
    ref_grad = torch.autograd.grad(ref, linear.tok.weight)[0]  # per-token weights reach it one by one
    for model, lam in ((linear, None), (spindle, None), (spindle, 0.0)):
        loss = mdlm_loss(model, ids, torch.Generator().manual_seed(7), spindle_lambda=lam)[0]
        assert torch.equal(loss, ref) and torch.equal(torch.autograd.grad(loss, model.tok.weight)[0], ref_grad)
    spindle.token_info.copy_(torch.linspace(-1, 1, V))
    assert torch.equal(mdlm_loss(spindle, ids, torch.Generator().manual_seed(7), spindle_lambda=0.0)[0], ref)
    assert not torch.equal(
        mdlm_loss(spindle, ids, torch.Generator().manual_seed(7))[0], ref
    )  # lambda 0.5 does change it


@pytest.mark.parametrize("lam", [0.25, 0.5])  # 0.5 > 1/pi: both clips (at 0 and at 1) are exercised
def test_a_uniform_model_scores_log_v_minus_1_under_the_spindle(lam):
    """E[weight * 1[masked]] = int_0^1 m'(t) dt = 1 per token, so the NELBO of the uniform model is log(V - 1).
    Information is skewed positive so that a wrong weight (1/t) or a wrong masking rate cannot cancel out."""
    model = Uniform(_cfg(), MASK, "spindle", lam)
    model.token_info.copy_(torch.linspace(-0.4, 1.0, V))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, MASK, (16, 32), generator=g)
    draws = torch.tensor([mdlm_loss(model, ids, g, eps=1e-5)[0].item() for _ in range(400)], dtype=torch.float64)
    se = draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean() - math.log(V - 1)) < 3 * se, (draws.mean().item(), se.item())
    assert se < 0.02 * math.log(V - 1)  # the check is tight enough to see a 6% error


def test_the_rate_is_a_schedule_that_masks_informative_tokens_first():
    h = torch.linspace(-1, 1, 41, dtype=torch.float64)  # (41,)
    t = torch.linspace(0, 1, 4001, dtype=torch.float64)[:, None]  # (T, 1)
    for lam in (0.2, 0.5, 1.0):
        m, dm = mask_rate(t, h, lam)  # (T, 41)
        assert torch.all(m[0] == 0) and torch.all(m[-1] == 1)
        assert torch.all(m.diff(dim=0) >= 0) and torch.all((m >= 0) & (m <= 1))
        # dm/dt is the derivative of m (0 where clipped): compare with central differences off the kinks
        fd = (m[2:] - m[:-2]) / (t[2:] - t[:-2])
        smooth = (fd - dm[1:-1]).abs() < 1e-4
        assert smooth.float().mean() > 0.99
    for ends in (torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0], dtype=torch.float64)):
        m, _ = mask_rate(ends[:, None], h.to(ends.dtype), 0.5)
        assert torch.equal(m, torch.stack([torch.zeros_like(m[0]), torch.ones_like(m[0])]))
    mid, _ = mask_rate(torch.tensor(0.5, dtype=torch.float64), h, 0.5)
    assert torch.all(mid.diff() > 0)  # more information: more likely masked at t = 1/2


def test_token_information_ranks_rare_tokens_higher_and_is_centred_on_the_data():
    counts = torch.tensor([1000, 0, 50, 500, 5, 0, 7000, 80])  # id 1 pad, 5 mask, 6 eos (specials)
    h = spindle_info(counts, {1, 5, 6}).double()
    assert h[1] == 0 and h[5] == 0 and h[6] == 0
    words = torch.tensor([0, 3, 7, 2, 4])  # decreasing frequency
    assert torch.all(h[words].diff() > 0)
    assert abs((counts[words] * h[words]).sum() / counts[words].sum()) < 1e-6  # mean 0 over the data (float32)
    assert h[words].abs().max() <= 1 and math.isclose(h[words].max() - h[words].min(), 1.0, rel_tol=1e-6)


def test_the_spindle_sampler_reveals_informative_tokens_last():
    """With a fixed prediction, positions that become high-information tokens are revealed later on
    average under the spindle kernel, and at the same time as the others under the linear rule."""
    model = Uniform(_cfg(), MASK, "spindle", 0.3)
    info = torch.where(torch.arange(V) % 2 == 0, 1.0, -1.0)
    info[MASK] = 0
    model.token_info.copy_(info)
    gap = {}
    for lam in (0.3, 0.0):
        when = torch.full((64, 16), -1)

        def record(d: dict) -> None:
            when[(d["z"] != MASK) & (when < 0)] = d["i"]

        ids, _ = mdlm_sample(
            model, 64, 16, 32, generator=torch.Generator().manual_seed(0), callback=record, spindle_lambda=lam
        )
        assert not (ids == MASK).any() and (when >= 0).all()
        rare = info[ids] > 0
        gap[lam] = (when[rare].double().mean() - when[~rare].double().mean()).item()
    assert gap[0.3] > 4 and abs(gap[0.0]) < 2, gap  # 32 steps; rare tokens come several steps later


def test_spindle_trains_saves_its_token_information_and_generates(tiny_overrides, tmp_path):
    cfg = load_config(
        None,
        [
            *tiny_overrides,
            "diffusion.mask_schedule=spindle",
            "train.max_steps=4",
            "train.eval_every=4",
            "train.checkpoint_every=4",
        ],
    )
    cfg.family = "mdlm"
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    config, weights, tok = load_checkpoint(tmp_path / "run")
    info = weights["token_info"]
    assert get_family("mdlm").setting(config, "mask_schedule") == "spindle" and info.abs().max() > 0
    assert all(info[i] == 0 for i in (tok.pad_id, tok.eos_id, tok.mask_id))
    lm = load_pretrained(tmp_path / "run")
    assert torch.equal(lm.model.token_info, info)
    # the family passes the configured lambda through its loss and its sampler
    fam, ids = get_family("mdlm"), torch.randint(0, tok.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    ids[ids == tok.mask_id] = tok.eos_id
    ours = fam.loss(lm.model, ids, config, torch.Generator().manual_seed(1), tok)[0]
    assert torch.equal(ours, mdlm_loss(lm.model, ids, torch.Generator().manual_seed(1), spindle_lambda=0.5)[0])
    assert not torch.equal(ours, mdlm_loss(lm.model, ids, torch.Generator().manual_seed(1), spindle_lambda=0.0)[0])
    runs = {
        lam: mdlm_sample(
            lm.model, 4, 16, 8, generator=torch.Generator().manual_seed(3), pad_id=tok.pad_id, spindle_lambda=lam
        )[0]
        for lam in (0.5, 0.0)
    }
    assert torch.equal(lm.generate_ids(n=4, steps=8, seed=3), runs[0.5]) and not torch.equal(runs[0.5], runs[0.0])
    texts = lm.generate(n=2, steps=8, seed=0)
    assert len(texts) == 2 and all("<mask>" not in t for t in texts)
    layout = lm.make_layout(template=TEMPLATE)
    ids = lm.generate_ids(n=2, steps=8, seed=0, layout=layout)
    assert not (ids == tok.mask_id).any()
    assert torch.equal(ids[:, layout.given], layout.ids[layout.given].expand(2, -1))
    filled = lm.infill(TEMPLATE, n=2, steps=8, seed=0)
    assert all(t.startswith("The king") and " in the" in t for t in filled)


def test_linear_checkpoints_keep_their_old_keys(tmp_path):
    cfg = _cfg()
    old = {"tok.weight"} | {
        f"backbone.{k}"
        for k in Transformer(
            cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, causal=False
        ).state_dict()
    }
    assert set(MDLMModel(cfg, MASK).state_dict()) == old
    assert set(MDLMModel(cfg, MASK, "spindle").state_dict()) == old | {"token_info"}
    ckpt = tiny_checkpoint(tmp_path / "linear", "mdlm")  # through the family's build, as training saves it
    assert "token_info" not in load_checkpoint(ckpt)[1]
    lm = load_pretrained(ckpt)
    assert lm.family.setting(lm.config, "mask_schedule") == "linear" and len(lm.generate(n=1, steps=4, seed=0)) == 1
    assert get_family("mdlm").build(lm.config, lm.tokenizer, None).spindle_lambda == 0.0
