"""ELF's self-conditioning guidance trained into the network (diffusion.guidance_input): the weight input, the
mixed regression target, and sampling with the weight in one call."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sedlm.config import load_config
from sedlm.diffusion.objective import sed_loss
from sedlm.diffusion.schedules import get_schedule
from sedlm.errors import SedlmError

B, L, D, V = 4, 6, 3, 11


class Stub(nn.Module):
    """x0_u = A without a self-conditioning estimate, x0_c = C with one (plus a learnable offset)."""

    time_warp = None
    position_knots = None

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.E, self.A, self.C = (torch.randn(*s, generator=g) for s in ((V, D), (B, L, D), (B, L, D)))
        self.offset = nn.Parameter(torch.zeros(()))
        self.calls: list[dict] = []

    def embed(self, ids):
        return self.E[ids]

    def forward(self, x, t, sc, cond, mask, score_temp=1.0, w=None, **kw):
        self.calls.append({"w": w, "sc": bool(sc.abs().sum() > 0)})
        out = (self.C if bool(sc.abs().sum() > 0) else self.A) + self.offset
        return out, torch.zeros(*out.shape[:2], V)


def _cfg(**over):
    cfg = load_config(None, [f"diffusion.{k}={v}" for k, v in over.items()]).diffusion
    return cfg


@pytest.mark.parametrize("seed", range(6))
def test_the_target_mixes_the_two_estimates_at_the_drawn_weight(seed):
    """MSE = mean ||C - (x0 + (1 - 1/w)(C - A))||^2 on self-conditioned examples; a (w - 1) factor, a swapped
    sign or an unmixed target differ."""
    cfg = _cfg(guidance_input="true", self_cond="half_nograd", sigma0=0, p_uncond=0, mse_weight=1, ce_weight=0)
    model = Stub()
    ids = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(seed))
    loss, out = sed_loss(model, ids, cfg, get_schedule("cosine"), torch.Generator().manual_seed(seed))
    w = model.calls[0]["w"]
    assert w is not None and w.shape == (B,) and all(c["w"] is w for c in model.calls)
    lo, hi = math.log1p(0.5), math.log1p(5.0)
    assert bool(((torch.log1p(w) >= lo) & (torch.log1p(w) <= hi)).all())
    x0 = model.E[ids]
    if len(model.calls) == 2:  # the self-conditioned branch: gradient-free x0_u, then the graded x0_c
        target = x0 + (1 - 1 / w)[:, None, None] * (model.C - model.A)
        expect = ((model.C - target) ** 2).mean()
    else:  # no self-conditioning this step: the plain target
        expect = ((model.A - x0) ** 2).mean()
    assert float(out["mse"]) == pytest.approx(float(expect), rel=1e-5)


def test_a_guidance_input_model_samples_with_the_weight_in_one_call(tmp_path, corpus_file):
    from conftest import TINY

    from sedlm.api import load_pretrained
    from sedlm.train.trainer import train

    over = ["diffusion.guidance_input=true", "diffusion.self_cond=half_nograd", f"data.source={corpus_file}"]
    train(load_config(None, [*TINY, *over, "train.max_steps=3"]), tmp_path / "elf", progress=False, log=lambda s: None)
    model = load_pretrained(tmp_path / "elf")
    seen = []
    model.model.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw.get("w")), with_kwargs=True)
    a = model.generate_ids(2, steps=3, seed=0, sc_weight=1.0)
    assert len(seen) == 3 and seen[0] == 1.0  # one call per step, the weight passed
    b = model.generate_ids(2, steps=3, seed=0)
    assert seen[-1] == 3.0  # ELF's default weight
    x = torch.randn(1, 4, model.config.model.d_embed)
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        model.model.w_mlp[-1].weight.add_(1.0)  # make the weight matter visibly in this untrained net
        assert not torch.allclose(model.model(x, t, w=1.0)[0], model.model(x, t, w=3.0)[0])
    assert a.shape == b.shape
    plain = tmp_path / "plain"
    train(
        load_config(None, [*TINY, f"data.source={corpus_file}", "train.max_steps=1"]),
        plain,
        progress=False,
        log=lambda s: None,
    )
    with pytest.raises(SedlmError, match="diffusion.guidance_input"):
        load_pretrained(plain).generate_ids(1, steps=2, sc_weight=2.0)


def test_guidance_input_needs_a_gradient_free_first_pass():
    from sedlm.families import check_config

    with pytest.raises(SedlmError, match="self_cond=half_nograd"):
        check_config(load_config(None, ["diffusion.guidance_input=true"]))
