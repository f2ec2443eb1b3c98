"""Block diffusion for SED (diffusion.block_size): the block mask, training, block-by-block sampling with a
KV cache, and end-of-text stopping."""

from __future__ import annotations

import pytest
import torch

from sedlm.config import load_config
from sedlm.diffusion.objective import sed_loss
from sedlm.diffusion.schedules import get_schedule
from sedlm.model.denoiser import SEDDenoiser, block_attention_mask
from sedlm.sampling.blocks import end_at_eos, sample_blocks

V, L, BS = 20, 16, 4


def _model(block_size: int = BS, **over: str):
    extra = [f"{k}={v}" for k, v in over.items()]
    cfg = load_config(
        None,
        [
            "model.d_model=32",
            "model.n_layers=2",
            "model.n_heads=2",
            "model.d_embed=8",
            f"model.vocab_size={V}",
            f"data.seq_len={L}",
            f"diffusion.block_size={block_size}",
            *extra,
        ],
    )
    torch.manual_seed(0)
    model = SEDDenoiser.from_config(cfg, torch.randn(V, 8, generator=torch.Generator().manual_seed(1)))
    return cfg, model.eval()


def _inputs(n: int = 2):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, V, (n, L), generator=g)
    x_t = torch.randn(n, L, 8, generator=g)
    t = torch.rand(n, L // BS, generator=g).repeat_interleave(BS, dim=1)  # (n, L) one time per block
    return ids, x_t, t


def test_the_block_mask_is_bd3lms():
    """[noisy ; clean] with blocks of 2 over 4 positions, written out by hand."""
    want = torch.tensor(
        [
            # noisy 0..3 | clean 0..3
            [1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 1, 1],
            [0, 0, 0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_attention_mask(4, 4, 2), want)


@pytest.mark.parametrize("k", range(L // BS))
def test_a_block_reads_nothing_of_later_blocks_nor_other_noisy_blocks(k):
    """Perturbing any clean token of a later block, or any noisy input of another block, leaves block k's
    output unchanged; perturbing a clean token of an earlier block changes it (the reads are real)."""
    _, model = _model()
    ids, x_t, t = _inputs()
    clean = model.embed(ids)
    sl = slice(k * BS, (k + 1) * BS)
    with torch.no_grad():
        base = model(x_t, t, clean=clean)[0][:, sl]
        own = clean.clone()
        own[:, sl] += 3.0  # the block's own clean tokens are the answer: never read
        assert torch.allclose(model(x_t, t, clean=own)[0][:, sl], base, atol=1e-6), "own clean block"
        for j in range(L // BS):
            if j == k:
                continue
            other = slice(j * BS, (j + 1) * BS)
            x2 = x_t.clone()
            x2[:, other] += 3.0
            assert torch.allclose(model(x2, t, clean=clean)[0][:, sl], base, atol=1e-6), ("noisy", j)
            c2 = clean.clone()
            c2[:, other] += 3.0
            moved = model(x_t, t, clean=c2)[0][:, sl]
            if j > k:
                assert torch.allclose(moved, base, atol=1e-6), ("clean later", j)
            else:
                assert not torch.allclose(moved, base, atol=1e-3), ("clean earlier is read", j)


def test_a_leaky_mask_is_caught(monkeypatch):
    """The check above turns red for a mask that lets a block see the next block's clean tokens."""
    import sedlm.model.denoiser as den

    def leaky(n_noisy, n_clean, block, offset=0, device=None):
        return torch.ones(n_noisy + n_clean, n_noisy + n_clean, dtype=torch.bool, device=device)

    monkeypatch.setattr(den, "block_attention_mask", leaky)
    _, model = _model()
    ids, x_t, t = _inputs()
    clean = model.embed(ids)
    c2 = clean.clone()
    c2[:, BS : 2 * BS] += 3.0
    with torch.no_grad():
        assert not torch.allclose(model(x_t, t, clean=c2)[0][:, :BS], model(x_t, t, clean=clean)[0][:, :BS], atol=1e-6)


def test_block_size_of_the_whole_row_is_plain_sed():
    """B = L trains exactly as block_size=0 (same draws, same loss to 1e-6) and never computes a clean half."""
    cfg0, m0 = _model(0)
    cfgL, mL = _model(L)
    ids = torch.randint(0, V, (4, L), generator=torch.Generator().manual_seed(0))
    sched = get_schedule("cosine")
    seen = []
    mL.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw.get("clean")), with_kwargs=True)
    a = sed_loss(m0, ids, cfg0.diffusion, sched, torch.Generator().manual_seed(5))[0]
    b = sed_loss(mL, ids, cfgL.diffusion, sched, torch.Generator().manual_seed(5))[0]
    assert abs(a.item() - b.item()) < 1e-6
    assert seen and all(c is None for c in seen)


def test_block_training_feeds_each_block_its_own_time_and_the_clean_row():
    """Every call of a B = 4 model gets per-position times that are constant within a block, and the clean
    row; the time warp gets one (t, CE) pair per block."""
    cfg, model = _model()
    ids = torch.randint(0, V, (3, L), generator=torch.Generator().manual_seed(0))
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kw: seen.append((args[1], kw.get("clean"))), with_kwargs=True)
    _, metrics = sed_loss(model, ids, cfg.diffusion, get_schedule("cosine"), torch.Generator().manual_seed(1))
    for t, clean in seen:
        assert t.shape == (3, L)
        per_block = t.view(3, L // BS, BS)
        assert torch.equal(per_block, per_block[..., :1].expand_as(per_block))
        assert torch.allclose(clean, model.embed(ids))
    assert metrics["t"].shape == metrics["ce_rows"].shape == (3 * L // BS,)
    # stratified: each row's block times fall one in each of the L / B strata of [0, 1)
    strata = (metrics["t"].view(3, L // BS) * (L // BS)).floor().sort(dim=1).values
    assert torch.equal(strata, torch.arange(L // BS).float().expand(3, -1))


def test_the_cache_reads_what_the_mask_reads():
    """A block's output from the KV cache of the clean blocks before it equals the output with those blocks
    run beside it under the mask (to 1e-5)."""
    _, model = _model()
    ids, x_t, _ = _inputs()
    clean = model.embed(ids)
    cache = model.new_cache()
    with torch.no_grad():
        for k in range(L // BS):
            sl = slice(k * BS, (k + 1) * BS)
            t = torch.full((2,), 0.3 + 0.1 * k)
            cached = model(x_t[:, sl], t, offset=k * BS, cache=cache)[0]
            masked = model(x_t[:, sl], t, offset=k * BS, clean=clean[:, : k * BS])[0]
            assert torch.allclose(cached, masked, atol=1e-5), k
            model.encode_clean(clean[:, sl], cache)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_cached_sampling_equals_uncached(sampler):
    _, model = _model()
    kw = dict(n=3, seq_len=L, block_size=BS, steps=6, sampler=sampler, seed=4, pad_id=0)
    a = sample_blocks(model, use_cache=True, **kw)
    b = sample_blocks(model, use_cache=False, **kw)
    assert a.shape == (3, L)
    assert torch.equal(a, b)


def test_a_prompt_fills_the_first_blocks_and_is_kept():
    from sedlm.sampling.templates import Layout

    _, model = _model()
    ids = torch.zeros(L, dtype=torch.long)
    given = torch.zeros(L, dtype=torch.bool)
    ids[:6] = torch.arange(3, 9)
    given[:6] = True  # one whole block and half of the next
    out = sample_blocks(
        model, n=2, seq_len=L, block_size=BS, steps=4, seed=0, pad_id=0, layout=Layout(ids, given, ~given & False)
    )
    assert torch.equal(out[:, :6], ids[:6].expand(2, -1))


def test_end_of_text_leaves_nothing_after_it():
    ids = torch.tensor([[5, 6, 2, 7, 8], [5, 2, 2, 9, 9], [5, 6, 7, 8, 9]])
    assert end_at_eos(ids, eos_id=2, pad_id=0).tolist() == [[5, 6, 2, 0, 0], [5, 2, 0, 0, 0], [5, 6, 7, 8, 9]]


def test_sampling_stops_once_every_row_has_ended(monkeypatch):
    """A model that writes end-of-text in its first block is asked for no further block."""
    import sedlm.sampling.blocks as blocks

    calls = []

    def fake(model, *, n, seq_len, **kw):
        calls.append(1)
        return torch.tensor([[4, 2, 4, 4]] * n)

    monkeypatch.setattr(blocks, "sample_ids", fake)
    _, model = _model()
    out = sample_blocks(model, n=2, seq_len=L, block_size=BS, steps=3, pad_id=0, eos_id=2)
    assert len(calls) == 1
    assert out[:, :2].tolist() == [[4, 2]] * 2 and (out[:, 2:] == 0).all()


def test_block_size_must_divide_the_row():
    from sedlm.errors import SedlmError

    with pytest.raises(SedlmError, match="must divide data.seq_len"):
        load_config(None, ["data.seq_len=16", "diffusion.block_size=5"])
