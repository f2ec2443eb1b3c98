"""Block diffusion sampling (BD3-LM, Arriola et al. 2025, §3; semi-autoregressive SSD-LM, Han et al. 2022):
a row of L tokens is written as L / B blocks of B, left to right. Each block is denoised by the family's
sampler (for SED any registered one) given the finished blocks before it, whose keys and values a KV
cache holds, so later blocks read earlier ones without recomputing them. A finished block enters the cache
in the first network call of the next block: that call runs it beside the noisy block under the training
mask (the model's ``pending`` ids) and appends its keys and values, so the cache costs no extra call (a
separate clean pass per block would double the calls of a one-step student, and at batch 1 a call's cost
hardly depends on its length). Without the cache (``use_cache=False``) every call runs all the clean
blocks beside the noisy one under the training mask (``block_attention_mask``), the same function at more
cost: a test checks that both give the same tokens.

Given tokens (a prompt) fill their blocks: a block wholly given is not sampled, a partly given one is
sampled around them. A row ends at its first end-of-text token: everything after it becomes padding,
and sampling stops once every row has ended. A callback sees each sampler step with its number over all
blocks (``i``; ``step_count`` gives the total), the block (``block`` of ``blocks``), the finished ids before it
(``prefix``) and the block's layout (``block_layout``), so previews show the row so far.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sedlm.sampling.core import Callback
from sedlm.sampling.templates import Layout

SEED_MIX = 1_000_003  # block k samples with seed * SEED_MIX + k (mod 2^63): distinct noise per block


class _BlockView:
    """The denoiser as a sampler sees it while it writes one block: every call also reads the finished
    blocks before it (``cache`` or ``clean``) and places the block at its row positions (``offset``)."""

    def __init__(self, model: nn.Module, pending: torch.Tensor | None = None, **reads: Any):
        self._model, self._reads, self.pending = model, reads, pending

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self.pending is None:
            return self._model(*args, **kw, **self._reads)
        pending, self.pending = self.pending, None  # the first call writes the finished blocks to the cache
        return self._model(*args, **kw, **self._reads, pending=pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _block_layout(layout: Layout | None, n: int, start: int, end: int) -> Layout | None:
    if layout is None:
        return None
    ids = layout.ids.expand(n, -1)[:, start:end]
    given = layout.given.expand(n, -1)[:, start:end]
    return Layout(ids, given, layout.no_pad[start:end]) if bool(given.any()) else None


# (view, n, block_size, seed, layout, callback) -> (n, block_size) ids: one block by a family's own sampler
SampleBlock = Callable[[Any, int, int, int, "Layout | None", "Callback | None"], torch.Tensor]


@torch.inference_mode()
def sample_blocks(
    model: nn.Module,
    sample_block: SampleBlock,
    *,
    n: int,
    seq_len: int,
    block_size: int,
    seed: int = 0,
    layout: Layout | None = None,
    pad_id: int = 0,
    eos_id: int | None = None,
    use_cache: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Sample ``n`` rows of ``seq_len`` ids block by block (module docstring). ``model`` is a block model
    (``new_cache`` and calls that take ``offset`` with ``cache`` and ``pending`` ids, or with ``clean`` ids);
    ``sample_block`` writes one block with the family's sampler through the view it is given. (n, L)"""
    device = next(model.parameters()).device
    B = block_size
    out = torch.full((n, seq_len), pad_id, dtype=torch.long, device=device)
    cache = model.new_cache() if use_cache else None
    ended = torch.zeros(n, dtype=torch.bool, device=device)
    pending = None  # (n, P) finished blocks the cache does not hold yet
    done = 0  # sampler steps so far, over all blocks: a callback's "i"

    def step_cb(info: dict[str, Any], k: int, start: int, part: Layout | None) -> None:
        nonlocal done
        assert callback is not None
        callback(
            {**info, "i": done, "block": k, "blocks": seq_len // B, "prefix": out[:, :start], "block_layout": part}
        )
        done += 1

    for k in range(seq_len // B):
        start, end = k * B, (k + 1) * B
        part = _block_layout(layout, n, start, end)
        if part is not None and bool(part.given.all()):  # a wholly given block (a prompt): nothing to sample
            block = part.ids.to(device)
        else:
            reads = {"cache": cache, "pending": pending} if use_cache else {"clean": out[:, :start]}
            cb = None if callback is None else (lambda info, k=k, start=start, part=part: step_cb(info, k, start, part))
            view = _BlockView(model, offset=start, **reads)
            block = sample_block(view, n, B, (seed * SEED_MIX + k) % (1 << 63), part, cb)
            pending = view.pending  # None once a call has written them
        out[:, start:end] = block
        if use_cache:
            pending = block if pending is None else torch.cat([pending, block], dim=1)
        if eos_id is not None:
            ended |= (block == eos_id).any(-1)
            if bool(ended.all()):
                break
    return out if eos_id is None else end_at_eos(out, eos_id, pad_id)


def on_finished_blocks(emit: Callable[[torch.Tensor], None], callback: Callback | None = None) -> Callback:
    """A sampler callback that passes every step on to ``callback`` and calls ``emit(prefix)`` with the
    finished ids (n, k * B) once, when a block model starts block k: those tokens are final, so they can be
    streamed while later blocks are written. Whole-row samplers report no blocks and never emit."""
    started = 0

    def cb(info: dict[str, Any]) -> None:
        nonlocal started
        k = info.get("block")
        if k is not None and k > started:
            started = k
            emit(info["prefix"])
        if callback is not None:
            callback(info)

    return cb


def step_count(steps: int, block_size: int, seq_len: int) -> int:
    """Sampler steps of a request of ``steps`` (per block for a block model) over ``seq_len`` positions."""
    return steps * (seq_len // block_size) if 0 < block_size < seq_len else steps


def per_block_steps(steps: int, block_size: int, seq_len: int) -> int:
    """Steps per block that spend about ``steps`` per row over a block model's blocks (at least one each)."""
    return max(1, round(steps / (seq_len // block_size))) if 0 < block_size < seq_len else steps


def end_at_eos(ids: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """Every position after a row's first end-of-text token becomes padding. (n, L) -> (n, L)"""
    is_eos = (ids == eos_id).long()
    after = (is_eos.cumsum(-1) - is_eos) > 0  # (n, L) strictly after the first eos
    return torch.where(after, torch.full_like(ids, pad_id), ids)
