"""Block diffusion for SED (diffusion.block_size): the block mask, training, block-by-block sampling with a
KV cache, and end-of-text stopping."""

from __future__ import annotations

import pytest
import torch

from sedlm.config import load_config
from sedlm.diffusion.objective import sed_loss
from sedlm.diffusion.schedules import get_schedule
from sedlm.model.denoiser import SEDDenoiser
from sedlm.model.transformer import block_attention_mask
from sedlm.sampling.blocks import end_at_eos, sample_blocks
from sedlm.sampling.generate import sample_ids

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


def _other(ids: torch.Tensor, sl: slice) -> torch.Tensor:
    """``ids`` with every token of the slice replaced by another."""
    out = ids.clone()
    out[:, sl] = (out[:, sl] + 7) % V
    return out


@pytest.mark.parametrize("k", range(L // BS))
def test_a_block_reads_nothing_of_later_blocks_nor_other_noisy_blocks(k):
    """Changing the block's own clean tokens or any clean token of a later block, or any noisy input of
    another block, leaves block k's output unchanged; changing a clean token of an earlier block changes it
    (the reads are real)."""
    _, model = _model()
    ids, x_t, t = _inputs()
    sl = slice(k * BS, (k + 1) * BS)
    with torch.no_grad():
        base = model(x_t, t, clean=ids)[0][:, sl]
        # the block's own clean tokens are the answer: never read
        assert torch.allclose(model(x_t, t, clean=_other(ids, sl))[0][:, sl], base, atol=1e-6), "own clean block"
        for j in range(L // BS):
            if j == k:
                continue
            other = slice(j * BS, (j + 1) * BS)
            x2 = x_t.clone()
            x2[:, other] += 3.0
            assert torch.allclose(model(x2, t, clean=ids)[0][:, sl], base, atol=1e-6), ("noisy", j)
            moved = model(x_t, t, clean=_other(ids, other))[0][:, sl]
            if j > k:
                assert torch.allclose(moved, base, atol=1e-6), ("clean later", j)
            else:
                assert not torch.allclose(moved, base, atol=1e-3), ("clean earlier is read", j)


def test_a_leaky_mask_is_caught(monkeypatch):
    """The check above turns red for a mask that lets a block see the next block's clean tokens."""
    import sedlm.model.transformer as tr

    def leaky(n_noisy, n_clean, block, offset=0, device=None, clean_start=0):
        return torch.ones(n_noisy + n_clean, n_noisy + n_clean, dtype=torch.bool, device=device)

    monkeypatch.setattr(tr, "block_attention_mask", leaky)
    _, model = _model()
    ids, x_t, t = _inputs()
    with torch.no_grad():
        moved = model(x_t, t, clean=_other(ids, slice(BS, 2 * BS)))[0][:, :BS]
        assert not torch.allclose(moved, model(x_t, t, clean=ids)[0][:, :BS], atol=1e-6)


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
        assert torch.equal(clean, ids)
    assert metrics["t"].shape == metrics["ce_rows"].shape == (3 * L // BS,)
    # stratified: each row's block times fall one in each of the L / B strata of [0, 1)
    strata = (metrics["t"].view(3, L // BS) * (L // BS)).floor().sort(dim=1).values
    assert torch.equal(strata, torch.arange(L // BS).float().expand(3, -1))


@pytest.mark.parametrize("pending_blocks", [1, 2])
def test_the_cache_reads_what_the_mask_reads(pending_blocks):
    """A block's output from the KV cache of the clean blocks before it equals the output with those blocks
    run beside it under the mask (to 1e-5), both in the call that writes the last finished blocks to the
    cache (``pending``; one or two blocks at a time, as after a prompt) and in the calls that only read it."""
    _, model = _model()
    ids, x_t, _ = _inputs()
    cache = model.new_cache()
    with torch.no_grad():
        for k in range(0, L // BS, pending_blocks):
            sl = slice(k * BS, (k + 1) * BS)
            t = torch.full((2,), 0.3 + 0.1 * k)
            masked = model(x_t[:, sl], t, offset=k * BS, clean=ids[:, : k * BS])[0]
            pending = ids[:, max(0, k - pending_blocks) * BS : k * BS] if k else None
            writing = model(x_t[:, sl], t, offset=k * BS, cache=cache, pending=pending)[0]
            reading = model(x_t[:, sl], t, offset=k * BS, cache=cache)[0]
            assert torch.allclose(writing, masked, atol=1e-5), k
            assert torch.allclose(reading, masked, atol=1e-5), k
            assert cache[0]["k"].shape[2] == k * BS if k else not cache[0], k


def test_the_cache_costs_no_extra_call():
    """With the cache, a finished block is written by the next block's first call: a one-step sampler
    makes one network call per block, as many as without the cache."""
    _, model = _model()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    kw = dict(n=2, seq_len=L, block_size=BS, seed=0)
    for cache in (True, False):
        calls.clear()
        sample_blocks(model, _sed_block("ddim", steps=1), use_cache=cache, **kw)
        assert len(calls) == L // BS, cache


def _sed_block(sampler: str = "ddpm", steps: int = 6):
    def one(view, n, length, seed, part, callback):
        return sample_ids(
            view, n=n, seq_len=length, seed=seed, layout=part, callback=callback, steps=steps, sampler=sampler
        )

    return one


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_cached_sampling_equals_uncached(sampler):
    _, model = _model()
    kw = dict(n=3, seq_len=L, block_size=BS, seed=4)
    a = sample_blocks(model, _sed_block(sampler), use_cache=True, **kw)
    b = sample_blocks(model, _sed_block(sampler), use_cache=False, **kw)
    assert a.shape == (3, L)
    assert torch.equal(a, b)


def test_cached_sampling_after_a_prompt_equals_uncached():
    """Two whole prompt blocks enter the cache together in the first sampled block's first call."""
    from sedlm.sampling.templates import Layout

    _, model = _model()
    ids, given = torch.zeros(L, dtype=torch.long), torch.zeros(L, dtype=torch.bool)
    ids[: 2 * BS + 1], given[: 2 * BS + 1] = torch.arange(3, 4 + 2 * BS), True
    layout = Layout(ids, given, torch.zeros(L, dtype=torch.bool))
    kw = dict(n=2, seq_len=L, block_size=BS, seed=3, layout=layout)
    outputs = []  # every call's estimate: tokens alone are too coarse to show a block missing from the cache
    model.register_forward_hook(lambda mod, args, out: outputs.append(out[0]))
    a = sample_blocks(model, _sed_block("ddim", steps=3), use_cache=True, **kw)
    cached, outputs[:] = list(outputs), []
    b = sample_blocks(model, _sed_block("ddim", steps=3), use_cache=False, **kw)
    assert torch.equal(a, b)
    assert torch.equal(a[:, : 2 * BS + 1], ids[: 2 * BS + 1].expand(2, -1))
    assert len(cached) == len(outputs)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(cached, outputs, strict=True))


def test_a_prompt_fills_the_first_blocks_and_is_kept():
    from sedlm.sampling.templates import Layout

    _, model = _model()
    ids = torch.zeros(L, dtype=torch.long)
    given = torch.zeros(L, dtype=torch.bool)
    ids[:6] = torch.arange(3, 9)
    given[:6] = True  # one whole block and half of the next
    layout = Layout(ids, given, torch.zeros(L, dtype=torch.bool))
    out = sample_blocks(model, _sed_block(steps=4), n=2, seq_len=L, block_size=BS, layout=layout)
    assert torch.equal(out[:, :6], ids[:6].expand(2, -1))


def test_end_of_text_leaves_nothing_after_it():
    ids = torch.tensor([[5, 6, 2, 7, 8], [5, 2, 2, 9, 9], [5, 6, 7, 8, 9]])
    assert end_at_eos(ids, eos_id=2, pad_id=0).tolist() == [[5, 6, 2, 0, 0], [5, 2, 0, 0, 0], [5, 6, 7, 8, 9]]


def test_sampling_stops_once_every_row_has_ended():
    """A sampler that writes end-of-text in the first block is asked for no further block."""
    calls = []

    def eos_early(view, n, length, seed, part, callback):
        calls.append(1)
        return torch.tensor([[4, 2, 4, 4]] * n)

    _, model = _model()
    out = sample_blocks(model, eos_early, n=2, seq_len=L, block_size=BS, pad_id=0, eos_id=2)
    assert len(calls) == 1
    assert out[:, :2].tolist() == [[4, 2]] * 2 and (out[:, 2:] == 0).all()


def test_block_size_must_divide_the_row():
    from sedlm.errors import SedlmError

    with pytest.raises(SedlmError, match="must divide data.seq_len"):
        load_config(None, ["data.seq_len=16", "diffusion.block_size=5"])


# --- The masked family with blocks (the bd3lm recipe) -------------------------------------------------------


def _mdlm(block_size: int = BS):
    from sedlm.families.mdlm import MDLMModel

    cfg = load_config(None, ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", f"model.vocab_size={V}"])
    torch.manual_seed(0)
    return MDLMModel(cfg.model, mask_id=V - 1, block_size=block_size).eval()


@pytest.mark.parametrize("k", range(L // BS))
def test_mdlm_blocks_read_only_earlier_clean_blocks(k):
    model = _mdlm()
    ids, _, _ = _inputs()
    z = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.5, V - 1, ids)
    sl = slice(k * BS, (k + 1) * BS)
    with torch.no_grad():
        base = model(z, clean=ids)[:, sl]
        assert torch.allclose(model(z, clean=_other(ids, sl))[:, sl], base, atol=1e-6), "own clean block"
        for j in range(L // BS):
            if j == k:
                continue
            other = slice(j * BS, (j + 1) * BS)
            assert torch.allclose(model(_other(z, other), clean=ids)[:, sl], base, atol=1e-6), ("noisy", j)
            moved = model(z, clean=_other(ids, other))[:, sl]
            assert torch.allclose(moved, base, atol=1e-6) == (j > k), ("clean", j)


def test_mdlm_whole_row_block_is_plain_mdlm_and_blocks_train():
    from sedlm.families.mdlm import mdlm_loss

    ids = torch.randint(0, V - 1, (4, L), generator=torch.Generator().manual_seed(0))
    plain = mdlm_loss(_mdlm(0), ids, torch.Generator().manual_seed(1))[0]
    whole = mdlm_loss(_mdlm(L), ids, torch.Generator().manual_seed(1))[0]
    assert abs(plain.item() - whole.item()) < 1e-6
    model = _mdlm().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def eval_loss():
        with torch.no_grad():
            return sum(mdlm_loss(model, ids, torch.Generator().manual_seed(99 + i))[0].item() for i in range(8))

    before = eval_loss()
    for step in range(200):
        loss, _ = mdlm_loss(model, ids, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.65 * before  # measured 0.56 (plain MDLM on these random rows: 0.91)


def test_mdlm_cached_sampling_equals_uncached():
    from sedlm.families.mdlm import mdlm_sample

    model = _mdlm()

    def one(view, n, length, seed, part, callback):
        g = torch.Generator().manual_seed(seed)
        return mdlm_sample(view, n, length, 4, generator=g, layout=part, callback=callback)[0]

    a = sample_blocks(model, one, n=3, seq_len=L, block_size=BS, seed=1, use_cache=True)
    b = sample_blocks(model, one, n=3, seq_len=L, block_size=BS, seed=1, use_cache=False)
    assert (a != V - 1).all()  # every position revealed
    assert torch.equal(a, b)


def test_mdlm_block_training_reads_the_clean_row():
    from sedlm.families.mdlm import mdlm_loss

    model = _mdlm()
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw.get("clean")), with_kwargs=True)
    ids = torch.randint(0, V - 1, (4, L), generator=torch.Generator().manual_seed(0))
    mdlm_loss(model, ids, torch.Generator().manual_seed(1))
    assert len(seen) == 1 and torch.equal(seen[0], ids)


def test_previews_show_the_row_so_far_and_count_steps_over_all_blocks():
    from types import SimpleNamespace

    from sedlm.families import get_family
    from sedlm.sampling.blocks import step_count

    _, model = _model()
    seen = []
    lm = SimpleNamespace(model=model, tokenizer=SimpleNamespace(pad_id=0))
    preview = get_family("sed").preview

    def callback(info):
        seen.append((info["i"], info["block"], preview(lm, info, None).shape))

    sample_blocks(model, _sed_block(steps=3), n=2, seq_len=L, block_size=BS, callback=callback)
    assert [i for i, _, _ in seen] == list(range(step_count(3, BS, L)))
    assert [shape for _, _, shape in seen] == [(2, (b + 1) * BS) for _, b, _ in seen]


def test_the_harness_spends_its_steps_over_the_blocks():
    from sedlm.sampling.blocks import per_block_steps, step_count

    assert per_block_steps(200, 4, 64) == 12 and step_count(12, 4, 64) == 192
    assert per_block_steps(200, 0, 64) == per_block_steps(200, 64, 64) == 200  # whole-row models: unchanged
    assert per_block_steps(3, 4, 64) == 1  # at least one step per block


def test_the_sed_bound_of_a_block_model_reads_the_true_earlier_blocks():
    """Every call of the variational bound gets the row's clean tokens, so each block's terms are its bound
    given the blocks before it (the sum bounds -log p(row) by the chain rule)."""
    from sedlm.diffusion.likelihood import embedding_vlb

    _, model = _model()
    ids, _, _ = _inputs()
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw.get("clean")), with_kwargs=True)
    terms = embedding_vlb(model, ids, get_schedule("cosine"), torch.Generator().manual_seed(0), points=4)
    assert seen and all(c is not None and torch.equal(c, ids) for c in seen)
    assert torch.isfinite(terms["total"]).all()
