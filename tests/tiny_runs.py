"""Tiny checkpoint folders for tests that need a real model on disk, written without training
(untrained weights: the folder, tokenizer and layouts are what those tests exercise)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from conftest import TINY, make_documents


def tiny_checkpoint(out: Path, method: str = "sed", overrides: tuple[str, ...] = ()) -> Path:
    """Write a TINY-config checkpoint of ``method`` (with ``overrides``) with freshly initialised weights to ``out``."""
    from sedlm.data.tokenizer import train_bpe
    from sedlm.families import get_family, load_config
    from sedlm.model.embedding import random_table
    from sedlm.train.checkpoint import save_checkpoint

    cfg = load_config(None, [*TINY, *overrides])
    cfg.family = method
    tok = train_bpe(make_documents(10), cfg.data.vocab_size)
    cfg.model.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    table = random_table(tok.vocab_size, cfg.model.d_embed, torch.Generator().manual_seed(0))
    model = get_family(method).build(cfg, tok, table)
    save_checkpoint(out, cfg, model.state_dict(), tok)
    return out


def slow_model(ckpt: Path, seconds_per_call: float = 0.005):
    """Load ``ckpt`` with every network call slowed down and counted: (model, list with one item per call).
    At the default, 1000 denoising steps take about 5 s, so a test can stop a run midway."""
    from sedlm.api import load_pretrained

    model, calls = load_pretrained(ckpt), []

    def slow(*_) -> None:
        calls.append(1)
        time.sleep(seconds_per_call)

    model.model.register_forward_hook(slow)
    return model, calls


def wait_idle(runner, timeout: float = 5.0) -> bool:
    """Wait until the server's runner has no request running or queued; False on timeout."""
    deadline = time.monotonic() + timeout
    while runner.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    return runner.pending == 0
