"""The autoregressive and masked-diffusion baselines on the shared backbone, trainer and checkpoints."""

import pytest
import torch

from sedlm import AR, MDLM, SED, load_pretrained
from sedlm.config import ModelConfig
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.families.ar import ARModel, ar_generate, sample_next
from sedlm.families.mdlm import MDLMModel, mdlm_loss, mdlm_sample
from sedlm.train.trainer import train


def _cfg(**kw):
    return ModelConfig(d_model=32, n_layers=2, n_heads=2, vocab_size=50, **kw)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_kv_cache_generation_equals_full_recompute(temperature):
    torch.manual_seed(0)
    model = ARModel(_cfg()).eval()
    prefix = torch.randint(0, 50, (3, 4), generator=torch.Generator().manual_seed(1))
    runs = [
        ar_generate(
            model,
            prefix,
            12,
            temperature=temperature,
            top_p=0.9,
            generator=torch.Generator().manual_seed(5),
            use_cache=c,
        )
        for c in (True, False)
    ]
    assert runs[0].shape == (3, 16)
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :4], prefix)


def test_cached_logits_match_full_forward():
    torch.manual_seed(0)
    model = ARModel(_cfg()).eval()
    ids = torch.randint(0, 50, (2, 9))
    full = model(ids)
    cache = model.new_cache()
    steps = [model(ids[:, :5], cache=cache)] + [model(ids[:, i : i + 1], cache=cache) for i in range(5, 9)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, 0.7, g).item() for _ in range(200)}
    assert draws == {0, 1}
    assert sample_next(logits, 0.0, 0.7, g).item() == 0


def test_mdlm_samples_have_no_masks_and_skip_idle_steps():
    torch.manual_seed(0)
    model = MDLMModel(_cfg(), mask_id=49).eval()
    ids, nfe = mdlm_sample(model, 2, 8, steps=64, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, 8) and not (ids == 49).any()
    assert nfe < 64  # steps that reveal nothing make no network call
    ids2, _ = mdlm_sample(model, 2, 8, steps=64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, ids2)


def test_mdlm_bound_is_finite_and_never_predicts_the_mask():
    torch.manual_seed(0)
    model = MDLMModel(_cfg(), mask_id=49)
    ids = torch.randint(0, 49, (4, 8))
    loss, m = mdlm_loss(model, ids, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0
    assert torch.all(model(ids)[..., 49] == float("-inf"))


@pytest.mark.parametrize("method, cls", [("ar", AR), ("mdlm", MDLM)])
def test_baselines_train_save_and_sample(method, cls, tiny_overrides, tmp_path):
    cfg = load_config(None, [*tiny_overrides, "train.max_steps=30", "train.eval_every=15", "train.lr=3e-3"])
    cfg.family = method
    result = train(cfg, tmp_path / method, progress=False, log=lambda s: None)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    model = load_pretrained(tmp_path / method)
    assert isinstance(model, cls)
    texts = model.generate(n=3, steps=8, seed=0)
    assert len(texts) == 3 and all("<mask>" not in t and "<pad>" not in t for t in texts)
    assert model.generate(n=3, steps=8, seed=0) == texts
    with pytest.raises(SedlmError, match="not 'sed'"):
        SED.from_pretrained(tmp_path / method)
