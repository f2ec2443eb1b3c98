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


# --- Where an autoregressive row starts (ar.row_start) -------------------------------------------------


class _Spy(ARModel):
    """Records the first position of every input it is given."""

    def __init__(self):
        super().__init__(_cfg())
        self.first: list[torch.Tensor] = []

    def forward(self, ids, cache=None):
        if cache is None or not cache[0]:
            self.first.append(ids[:, 0].clone())
        return super().forward(ids, cache=cache)


def _ar_config(row_start: str | None = None):
    cfg = load_config(None, [f"ar.row_start={row_start}"] if row_start else [])
    cfg.family = "ar"
    return cfg


def test_the_training_loss_is_the_exact_nll_of_all_l_tokens_after_the_row_start():
    """With ``ar.row_start=window`` the loss trains every token of the row, the first from the row-start token,
    so it equals the exact NLL the likelihood table reports; ``document`` leaves the first token out."""
    from types import SimpleNamespace

    from sedlm.families import get_family

    torch.manual_seed(0)
    fam, model = get_family("ar"), ARModel(_cfg()).eval()
    tok = SimpleNamespace(pad_id=1, eos_id=2, mask_id=3)
    ids = torch.randint(4, 50, (3, 9))
    g = torch.Generator()
    window = _ar_config()
    with torch.no_grad():
        loss, _ = fam.loss(model, ids, window, g, tok)
        nll = fam.nll_bound(model, ids, window, g, tok)
        old, _ = fam.loss(model, ids, _ar_config("document"), g, tok)
        rest = torch.nn.functional.cross_entropy(model(ids[:, :-1]).transpose(1, 2), ids[:, 1:])
    assert loss.item() == pytest.approx(nll.mean().item(), abs=1e-5)
    assert old.item() == pytest.approx(rest.item(), abs=1e-5)  # tokens 2..L only


@pytest.mark.parametrize(("row_start", "start"), [("window", "pad_id"), ("document", "eos_id")])
def test_generation_starts_where_training_rows_start(row_start, start, monkeypatch):
    from types import SimpleNamespace

    from sedlm.families import get_family
    from sedlm.families.base import Request

    tok = SimpleNamespace(pad_id=1, eos_id=2, mask_id=3)
    spy = _Spy().eval()
    lm = SimpleNamespace(model=spy, tokenizer=tok, config=_ar_config(row_start), device=torch.device("cpu"))
    options = {"temperature": 1.0, "top_p": 1.0, "use_cache": True}
    out = get_family("ar").generate(
        lm, Request(n=2, seq_len=5, steps=5, seed=0, layout=None, kind="unconditional", options=options)
    )
    assert out.shape == (2, 5)
    assert spy.first and all((f == getattr(tok, start)).all() for f in spy.first)


def test_checkpoints_of_format_1_keep_their_document_start(tmp_path):
    """An autoregressive checkpoint written before ``ar.row_start`` existed was trained from end-of-text; it
    loads with that start, while a new one is saved with the row-start token."""
    import json

    from sedlm.data.tokenizer import train_word_level
    from sedlm.families import get_family
    from sedlm.train.checkpoint import load_checkpoint, save_checkpoint

    tok = train_word_level(["a b c d e f"] * 4, vocab_size=40)
    save_checkpoint(tmp_path / "new", _ar_config(), ARModel(_cfg()).state_dict(), tok)
    new, _, _ = load_checkpoint(tmp_path / "new")
    assert get_family("ar").setting(new, "row_start") == "window"
    raw = json.loads((tmp_path / "new" / "config.json").read_text())
    raw.pop("ar", None)
    raw["format_version"] = 1
    (tmp_path / "new" / "config.json").write_text(json.dumps(raw))
    old, _, _ = load_checkpoint(tmp_path / "new")
    assert get_family("ar").setting(old, "row_start") == "document"
