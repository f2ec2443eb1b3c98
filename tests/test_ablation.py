"""The options the ablation covers (schedule shift, PPMI table, CE-only score interpolation, sampling
knobs) and `sedlm bench ablate` end to end on a micro budget."""

import json
import random

import pytest
import torch
from conftest import TINY

from sedlm.bench.ablate import PAPER, VARIANTS, ablate, get_variants, variant_config
from sedlm.cli import main
from sedlm.diffusion.schedules import get_schedule, log_snr, shift_log_snr
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.model.denoiser import SEDDenoiser
from sedlm.sampling.generate import sample_ids
from sedlm.train.embed import ppmi_table
from sedlm.train.trainer import train


@pytest.mark.parametrize("name", ["cosine", "linear", "sqrt"])
@pytest.mark.parametrize("shift", [-4.0, -1.0, 2.0])
def test_log_snr_shift_keeps_endpoints_and_monotonicity(name, shift):
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    base, shifted = get_schedule(name)(t), get_schedule(name, shift)(t)
    assert shifted[-1] < 1e-3  # pure noise at t = 1
    if name != "sqrt":  # sqrt itself starts at abar = 0.99
        assert shifted[0] > 0.9999  # clean at t = 0
    exact = shift_log_snr(lambda t: 1 - t, shift)(t)
    assert exact[0] == 1.0 and exact[-1] == 0.0  # abar = 1 and abar = 0 are fixed points
    assert torch.all(shifted[1:] <= shifted[:-1])
    inner = (base > 1e-4) & (base < 1 - 1e-4)
    assert torch.allclose(log_snr(shifted[inner]), log_snr(base[inner]) + shift, atol=1e-3)
    mid = shifted[500] < base[500] if shift < 0 else shifted[500] > base[500]
    assert mid  # a negative shift means more noise at the same t


def _topic_corpus(n_rows: int = 400, length: int = 24, seed: int = 0) -> torch.Tensor:
    """Rows drawn from one of two topics: animals (ids 0-4) with verbs 10-14, colours (ids 5-9)
    with verbs 15-19; shared filler ids 20-23 everywhere."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n_rows):
        topic = rng.random() < 0.5
        words, verbs = (range(0, 5), range(10, 15)) if topic else (range(5, 10), range(15, 20))
        rows.append(
            [
                rng.choice(list(words) if i % 3 == 0 else list(verbs) if i % 3 == 1 else range(20, 24))
                for i in range(length)
            ]
        )
    return torch.tensor(rows)


def test_ppmi_table_shape_norms_and_related_words_closer():
    rows = _topic_corpus()
    E = ppmi_table(rows, vocab_size=30, d_embed=8, window=2, ignore=(29,))
    assert E.shape == (30, 8) and not torch.isnan(E).any()
    assert torch.allclose(E.norm(dim=-1), torch.full((30,), 8**0.5), atol=1e-4)
    cos = E @ E.t() / 8
    same = cos[0, 1:5].mean()  # animal vs animal
    other = cos[0, 5:10].mean()  # animal vs colour
    assert same > other + 0.3
    assert cos[5, 6:10].mean() > cos[5, 0:5].mean() + 0.3
    assert torch.equal(E, ppmi_table(rows, 30, 8, window=2, ignore=(29,)))  # deterministic


def test_interp_ce_only_trains_and_loss_falls(tmp_path, tiny_overrides):
    cfg = load_config(
        None,
        [
            *tiny_overrides,
            "diffusion.x0_estimate=interp",
            "diffusion.mse_weight=0",
            "train.max_steps=40",
            "train.lr=3e-3",
            "train.log_every=5",
            "train.eval_every=40",
        ],
    )
    result = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-3:]) / 3 < sum(losses[:2]) / 2 - 0.3
    model = SEDDenoiser.from_config(cfg, torch.randn(cfg.model.vocab_size, cfg.model.d_embed))
    x0, logits = model(torch.randn(2, 5, cfg.model.d_embed), torch.rand(2))
    # an interpolated estimate is the expected embedding under the predicted distribution
    assert torch.allclose(x0, torch.softmax(logits, -1) @ model.embedding.weight, atol=1e-5)


def test_sampling_knobs(tiny_overrides):
    cfg = load_config(None, tiny_overrides)
    cfg.model.vocab_size = 50
    model = SEDDenoiser.from_config(cfg, torch.randn(50, cfg.model.d_embed)).eval()
    seen = []
    ids = sample_ids(
        model, n=2, seq_len=6, steps=4, clamp=True, seed=0, callback=lambda info: seen.append(info["x0_hat"])
    )
    E = model.embedding.weight
    for x0 in seen:  # every estimate is snapped onto a row of E
        assert torch.cdist(x0.reshape(-1, x0.shape[-1]), E).min(-1).values.max() < 1e-2
    assert ids.shape == (2, 6)
    a = sample_ids(model, n=2, seq_len=6, steps=4, noise_temp=0.0, seed=0)
    b = sample_ids(model, n=2, seq_len=6, steps=4, noise_temp=0.0, seed=1)
    c = sample_ids(model, n=2, seq_len=6, steps=4, noise_temp=1.0, seed=0)
    assert a.shape == b.shape == c.shape
    cfg.diffusion.x0_estimate = "interp"
    interp = SEDDenoiser.from_config(cfg, torch.randn(50, cfg.model.d_embed)).eval()
    sharp = sample_ids(interp, n=2, seq_len=6, steps=4, score_temp=0.5, seed=0)
    assert sharp.shape == (2, 6) and int(sharp.max()) < 50


def test_new_options_are_validated():
    for bad in ["embed.kind=glove", "diffusion.x0_estimate=eps", "sample.noise_temp=-1", "sample.score_temp=0"]:
        with pytest.raises(SedlmError):
            load_config(None, [bad])


def test_variants_registry_and_configs():
    with pytest.raises(SedlmError, match="valid variants: paper"):
        get_variants("paper,nope")
    base = load_config(None, [])
    paper = variant_config(base, VARIANTS["paper"])
    assert paper.embed.kind == "mlm" and paper.diffusion.self_cond == "both" and paper.diffusion.x0_estimate == "direct"
    off = variant_config(base, VARIANTS["self-cond-off"])
    assert off.diffusion.self_cond == "off" and off.embed.kind == "mlm"
    assert all(v.reuse in (None, *VARIANTS) for v in VARIANTS.values())
    assert len(PAPER) >= 8


def _micro(tmp_path, judge_dir, *overrides: str) -> dict:
    """`ablate` keywords for a micro budget: a few rows of Shakespeare, 4 samples of 2 tokens."""
    over = [
        o for o in TINY if not o.startswith(("train.max_steps", "data.vocab_size", "data.val_fraction", "embed.kind"))
    ]
    return dict(
        judge_name=str(judge_dir),
        n=4,
        steps=3,
        eval_tokens=2,  # a micro budget pads most of a row
        runs_dir=tmp_path / "runs",
        results_dir=tmp_path / "results",
        overrides=[*over, "data.max_chars=60000", "data.vocab_size=300", *overrides],
        log=lambda s: None,
    )


def test_bench_ablate_micro_budget(tmp_path, tiny_judge_dir):
    kw = _micro(tmp_path, tiny_judge_dir, "embed.steps=3")
    rows = ablate("shakespeare", train_steps=4, variants="paper,embed-ppmi,interp-ce,clamp", **kw)
    assert [r["variant"] for r in rows] == ["paper", "embed-ppmi", "interp-ce", "clamp", "ar"]
    payload = json.loads((tmp_path / "results" / "ablation-shakespeare.json").read_text())
    assert set(payload) == {"name", "command", "machine", "rows"}
    assert [r["variant"] for r in payload["rows"]][-1] == "data"
    for r in payload["rows"]:
        assert r["judge_nll"] is not None and r["unigram_entropy"] is not None and "entropy_vs_data" in r
    assert rows[3]["train_steps"] == rows[0]["train_steps"]  # clamp samples the paper variant's model
    assert rows[1]["table_s"] >= 0 and rows[0]["params"] == rows[1]["params"]
    # a rerun reuses finished variants instead of training again
    again = ablate("shakespeare", train_steps=4, variants="paper,embed-ppmi,interp-ce,clamp", **kw)
    assert [r["judge_nll"] for r in again] == [r["judge_nll"] for r in rows]
    # --rescore scores a saved model again without training it: same steps, and the log says so
    logged = []
    rescored = ablate(
        "shakespeare",
        train_steps=4,
        variants="paper,embed-ppmi,interp-ce,clamp",
        rescore=("embed-ppmi",),
        **{**kw, "log": logged.append},
    )
    assert "embed-ppmi: scoring the saved model again" in logged and not any(
        "embed-ppmi: training" in m for m in logged
    )
    assert rescored[1]["train_steps"] == rows[1]["train_steps"] and rescored[1]["judge_nll"] == rows[1]["judge_nll"]
    with pytest.raises(SedlmError, match="--rescore names variants not in --variants"):
        ablate("shakespeare", train_steps=4, variants="paper", rescore=("clamp",), **kw)


def test_cli_ablate_list(capsys):
    assert main(["bench", "ablate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "embed-ppmi" in out and "interp-ce" in out and "samples paper's model" in out


def test_ablation_budget_is_optimiser_steps_by_default(tmp_path, monkeypatch):
    """A time budget let machine load change the step counts (244-981 steps in one table); the default is a
    fixed number of steps for every run, and a time budget must be asked for."""
    import sedlm.bench.ablate as ab
    from sedlm.errors import SedlmError

    seen = []
    monkeypatch.setattr(ab, "seconds_per_step", lambda cfg, data: seen.append("timed") or 0.5)
    monkeypatch.setattr(ab, "train", lambda cfg, out, **kw: type("R", (), {"elapsed_s": 1.0})())
    cfg = ab.load_config(None, ["train.warmup_steps=5"])
    assert ab._train_for(cfg, None, ("steps", 37), tmp_path / "a", print)["train_steps"] == 37 and not seen
    assert cfg.train.max_steps == 37
    assert ab._train_for(cfg, None, ("minutes", 1.0), tmp_path / "b", print)["train_steps"] == 120 and seen
    with pytest.raises(SedlmError, match="not both"):
        ab.ablate("shakespeare", 1.0, train_steps=10)


def test_bench_ablate_seeds_train_each_variant_per_seed(tmp_path, tiny_judge_dir):
    """With several training seeds every variant and the AR baseline is trained once per seed (the seed
    reaches the trainer), sampling variants score the model of their own seed, and the -seeds file
    summarises each variant over its seeds."""
    kw = _micro(tmp_path, tiny_judge_dir, "embed.steps=3")
    rows = ablate("shakespeare", train_steps=4, variants="paper,clamp", seeds=(0, 1), **kw)
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("paper", 0),
        ("paper", 1),
        ("clamp", 0),
        ("clamp", 1),
        ("ar", 0),
        ("ar", 1),
    ]
    for name in ("paper", "paper-seed1", "ar", "ar-seed1", "paper-seed1/eval-clamp"):
        assert (tmp_path / "runs" / name / "row.json").is_file(), name
    seed_of = lambda run: json.loads((tmp_path / "runs" / run / "config.json").read_text())["train"]["seed"]  # noqa: E731
    assert (seed_of("paper"), seed_of("paper-seed1"), seed_of("ar-seed1")) == (0, 1, 1)
    assert rows[0]["judge_nll"] != rows[1]["judge_nll"]  # another seed, another model
    summary = json.loads((tmp_path / "results" / "ablation-shakespeare-seeds.json").read_text())["rows"]
    assert [(r["method"], r["seeds"]) for r in summary] == [("paper", 2), ("clamp", 2), ("ar", 2)]
    mean = (rows[0]["judge_nll"] + rows[1]["judge_nll"]) / 2
    assert summary[0]["judge_nll_mean"] == pytest.approx(mean, abs=1e-4) and summary[0]["judge_nll_seed_sd"] > 0
    with pytest.raises(SedlmError, match="fix their own training seed"):
        ablate("shakespeare", train_steps=4, variants="paper-seed-1", seeds=(0, 1), **kw)
    with pytest.raises(SedlmError, match="distinct non-negative"):
        ablate("shakespeare", train_steps=4, variants="paper", seeds=(1, 1), **kw)
