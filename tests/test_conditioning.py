"""Span/prefix masks, templates, and conditional generation (prompt, infill, seq2seq layouts)."""

import pytest
import torch
from conftest import make_documents

from sedlm.data.masks import MASKS, mixture_mask, parse_mixture, prefix_mask, span_mask
from sedlm.data.tokenizer import train_bpe
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.model.denoiser import SEDDenoiser
from sedlm.sampling.generate import make_denoise_fn, sample_ids
from sedlm.sampling.samplers import SAMPLERS
from sedlm.sampling.templates import layout_prompt, layout_source, layout_template, parse_template


def _n_spans(row: torch.Tensor) -> int:
    return 1 + int((row[1:] != row[:-1]).sum())


def test_span_mask_statistics():
    g = torch.Generator().manual_seed(0)
    m = span_mask(4000, 32, g, max_spans=5)
    spans = torch.tensor([_n_spans(r) for r in m])
    assert spans.min() >= 1 and spans.max() <= 5
    unconditional = ~m.any(1)
    # n = 1 (probability 1/5) gives no given positions; n >= 2 always gives some and generates some
    assert 0.17 < unconditional.float().mean() < 0.23
    cond = m[~unconditional]
    assert torch.all(cond.any(1)) and torch.all((~cond).any(1))
    # flip rate: the first span is given about half of the time
    assert 0.45 < cond[:, 0].float().mean() < 0.55


def test_prefix_and_mixture_masks():
    g = torch.Generator().manual_seed(0)
    m = prefix_mask(500, 16, g)
    k = m.sum(1)
    assert torch.all(k >= 1) and torch.all(k <= 15)
    assert torch.all(m == (torch.arange(16)[None] < k[:, None]))
    mix = mixture_mask("prefix:1,none:1", 2000, 16, g)
    assert 0.45 < (~mix.any(1)).float().mean() < 0.55
    assert parse_mixture("span:3,prefix:1") == {"span": 0.75, "prefix": 0.25}
    with pytest.raises(SedlmError, match="valid masks"):
        parse_mixture("spam:1")
    assert set(MASKS) >= {"span", "prefix", "none"}


@pytest.fixture(scope="module")
def tok():
    return train_bpe(make_documents(10), 300)


def test_template_layout(tok):
    assert parse_template("a [___] b [___:3] c") == ["a ", None, " b ", 3, " c"]
    lay = layout_template("The king [___] in the [___:3].", tok, 32)
    given_text = tok.decode(lay.ids[lay.given].tolist())
    assert given_text == "The king" + " in the" + "."  # the pieces; a space before a blank belongs to the blank
    before_blank = [int(lay.ids[i]) for i in range(31) if lay.given[i] and not lay.given[i + 1]]
    assert before_blank and all(tok.decode([i]).strip() for i in before_blank)  # no stray space token before a blank
    assert int(lay.no_pad.sum()) == 3 and not torch.any(lay.no_pad & lay.given)
    assert int((~lay.given).sum()) == 32 - len(tok.encode("The king")) - len(tok.encode(" in the")) - len(
        tok.encode(".")
    )


@pytest.mark.parametrize(
    "template, fragment",
    [
        ("", "empty"),
        ("no blanks here", "no blanks"),
        ("x [___:0]", "N >= 1"),
        ("the king [___:40]", "sequence length"),
    ],
)
def test_template_errors(tok, template, fragment):
    with pytest.raises(SedlmError, match=fragment):
        layout_template(template, tok, 32)


def test_prompt_and_source_errors(tok):
    long = "the king speaks in the castle " * 20
    with pytest.raises(SedlmError, match="shorten the prompt"):
        layout_prompt(long, tok, 16)
    with pytest.raises(SedlmError, match="shorten"):
        layout_source(long, tok, 16)
    lay = layout_source("the king", tok, 16)
    assert lay.ids[int(lay.given.sum()) - 1] == tok.eos_id


def _model(tok):
    cfg = load_config(
        None,
        [
            "model.d_model=32",
            "model.n_layers=1",
            "model.n_heads=2",
            "model.d_embed=8",
            f"model.vocab_size={tok.vocab_size}",
        ],
    )
    torch.manual_seed(0)
    return SEDDenoiser.from_config(cfg, torch.randn(tok.vocab_size, 8)).eval()


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_given_tokens_come_back_exactly(tok, sampler):
    model = _model(tok)
    template = "The king [___] in the castle [___:4] sea."
    lay = layout_template(template, tok, 32)
    ids = sample_ids(model, n=3, seq_len=32, steps=5, sampler=sampler, layout=lay, pad_id=tok.pad_id, guidance=2.0)
    assert torch.all(ids[:, lay.given] == lay.ids[lay.given])
    assert not torch.any(ids[:, lay.no_pad] == tok.pad_id)  # fixed blanks have exactly N real tokens
    for row in ids:
        text = tok.decode(row.tolist())
        assert text.startswith("The king") and " in the castle" in text and text.endswith(" sea.")


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_given_positions_follow_the_forward_process(tok, sampler):
    """Every estimate at a given position is the clean embedding, so a deterministic sampler's state
    there is exactly sqrt(abar) E[w] + sqrt(1 - abar) eps for the starting eps, as in training."""
    from sedlm.diffusion.schedules import get_schedule, time_grid

    model = _model(tok)
    lay = layout_template("The king [___] in the castle [___:4] sea.", tok, 32)
    clean = model.embed(lay.ids)[lay.given]  # (G, De)
    seen = []
    sample_ids(
        model,
        n=2,
        seq_len=32,
        steps=6,
        sampler=sampler,
        layout=lay,
        pad_id=tok.pad_id,
        seed=3,
        callback=lambda info: seen.append((info["x0_hat"][:, lay.given].clone(), info["x"][:, lay.given].clone())),
    )
    assert seen and all(torch.equal(x0, clean.expand_as(x0)) for x0, _ in seen)
    if SAMPLERS[sampler].stochastic:
        return  # fresh noise at every step: only its law is fixed
    ts = time_grid(6, kind="uniform")
    ab = get_schedule("cosine")(ts.double()).clamp(1e-8, 1.0)
    x_T = torch.randn(2, 32, 8, generator=torch.Generator().manual_seed(3))[:, lay.given]
    eps = (x_T - ab[0].sqrt() * clean) / (1 - ab[0]).sqrt()
    for k, (_, x) in enumerate(seen[:-1]):
        a = ab[k + 1].float()
        assert torch.allclose(x, a.sqrt() * clean + (1 - a).sqrt() * eps, atol=1e-3), f"step {k}"


def test_guidance_on_an_unconditional_sample_does_what_it_says(tok):
    """mode cond: nothing is given, so guidance is a no-op (one network row per sample and step) and
    the user is told; mode self_cond: guidance on the self-conditioning estimate, two rows."""
    model = _model(tok)
    rows = []
    model.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    with pytest.warns(UserWarning, match="runs unguided"):
        a = sample_ids(model, n=2, seq_len=8, steps=4, sampler="ddim", guidance=2.5)
    assert rows == [2] * 4
    b = sample_ids(model, n=2, seq_len=8, steps=4, sampler="ddim", guidance=1.0)
    assert torch.equal(a, b)
    rows.clear()
    sample_ids(model, n=2, seq_len=8, steps=4, sampler="ddim", guidance=2.5, guidance_mode="self_cond")
    assert rows == [4] * 4
    x, t, sc = torch.randn(2, 8, 8), torch.full((2,), 0.5), torch.randn(2, 8, 8)
    with torch.no_grad():
        with_sc, without = model(x, t, sc)[0], model(x, t, torch.zeros_like(sc))[0]
        guided = make_denoise_fn(model, guidance=2.5, guidance_mode="self_cond")(x, t, sc)
    assert torch.allclose(guided, without + 2.5 * (with_sc - without), atol=1e-5)


def test_guidance_one_is_the_plain_estimate_and_batched_cfg_matches_two_calls(tok):
    model = _model(tok)
    x = torch.randn(2, 8, 8)
    t = torch.full((2,), 0.5)
    sc = torch.randn(2, 8, 8)
    cond = torch.randn(2, 8, 8)
    mask = torch.zeros(2, 8)
    mask[:, :3] = 1
    gen = ~mask.bool()  # generated positions; given ones are held at cond
    with torch.no_grad():
        plain = model(x, t, sc, cond, mask)[0]
        out = make_denoise_fn(model, cond, mask, 1.0)(x, t, sc)
        assert torch.equal(out[gen], plain[gen]) and torch.equal(out[~gen], cond[~gen])
        uncond = model(x, t, torch.zeros_like(sc), torch.zeros_like(cond), torch.zeros_like(mask))[0]
        guided = make_denoise_fn(model, cond, mask, 2.5)(x, t, sc)
    assert torch.allclose(guided[gen], (uncond + 2.5 * (plain - uncond))[gen], atol=1e-5)
    assert torch.equal(guided[~gen], cond[~gen])


def _copy_pairs(n: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    words = ["red", "blue", "green", "black", "white", "gold"]
    return [{"src": " ".join(s := [rng.choice(words) for _ in range(4)]), "tgt": " ".join(s)} for _ in range(n)]


@pytest.mark.parametrize("extra", [[], ["diffusion.position_warp=true"]], ids=["shared-schedule", "per-position"])
def test_seq2seq_copy_task_beats_chance(tmp_path, extra):
    """Also with SeqDiffuSeq's per-position schedules, whose fitted warps must differ by position."""
    import json

    from sedlm.api import SED
    from sedlm.train.trainer import train

    data = tmp_path / "copy.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in _copy_pairs(400)))
    cfg = load_config(
        None,
        [
            f"data.source={data}",
            "data.task=seq2seq",
            "data.seq_len=16",
            "data.vocab_size=300",
            "model.d_model=64",
            "model.n_layers=2",
            "model.n_heads=2",
            "model.d_embed=16",
            "embed.kind=random",
            "train.batch_size=32",
            "train.max_steps=300",
            "train.lr=3e-3",
            "train.warmup_steps=20",
            "train.eval_every=300",
            "train.log_every=50",
            "train.checkpoint_every=300",
            "train.ema_decay=0.9",
            *extra,
        ],
    )
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    model = SED.from_pretrained(tmp_path / "run")
    if extra:
        knots = model.model.position_knots  # (L, B + 1): fitted on generated (target) positions only
        mids = model.model.position_times(torch.tensor([0.5]), 16)[0]
        assert not torch.allclose(knots[-1], torch.linspace(0, 1, knots.shape[1])) and mids.max() - mids.min() > 0.02
    hits = total = 0
    for p in _copy_pairs(12, seed=1):
        out = model.generate(n=1, src=p["src"], steps=20, seed=0)[0].split()
        want = p["tgt"].split()
        hits += sum(a == b for a, b in zip(out, want))
        total += len(want)
    assert hits / total > 0.9  # chance is 1/6 per word; a source mask misaligned with its tokens stays far below


def test_infill_and_prompt_through_the_api_and_cli(tmp_path, tiny_overrides, capsys):
    import json

    from sedlm.api import SED
    from sedlm.cli import main
    from sedlm.train.trainer import train

    over = [*tiny_overrides, "diffusion.cond_masks=span:0.8,prefix:0.2"]
    train(load_config(None, over), tmp_path / "run", progress=False, log=lambda s: None)
    model = SED.from_pretrained(tmp_path / "run")
    texts = model.infill("The king [___] castle [___:2].", n=2, steps=4)
    assert all(t.startswith("The king") and " castle" in t and t.endswith(".") for t in texts)
    assert all(t.startswith("The ghost") for t in model.generate(n=2, prompt="The ghost", steps=4))
    code = main(["infill", "--ckpt", str(tmp_path / "run"), "The [___] waits [___:3] sea.", "--steps", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["samples"][0].startswith("The") and out["samples"][0].endswith(" sea.")
    code = main(["sample", "--ckpt", str(tmp_path / "run"), "--prompt", "A fool", "--steps", "3", "--n", "1"])
    assert code == 0 and "A fool" in capsys.readouterr().out
    code = main(["infill", "--ckpt", str(tmp_path / "run"), "no blanks at all"])
    err = capsys.readouterr().err
    assert code == 2 and "no blanks" in err and len(err.strip().splitlines()) == 1
