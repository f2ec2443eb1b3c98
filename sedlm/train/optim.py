"""The optimiser side of training: AdamW with decay on matrices, warmup + cosine learning rate, and the EMA
of the weights that inference loads."""

from __future__ import annotations

import math

import torch

from sedlm.config import Config


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.train.lr,
        betas=(0.9, 0.98),
    )


def lr_at(step: int, cfg: Config) -> float:
    """Linear warmup to train.lr, then cosine decay to train.lr * min_lr_ratio at max_steps."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    """Exponential moving average of a model's floating-point state, with warmup
    decay_s = min(decay, (1 + s) / (10 + s))."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.params = {k for k, _ in model.named_parameters()}  # averaged; buffers are copied

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if k in self.params and v.dtype.is_floating_point:
                self.state[k].lerp_(v.detach(), 1 - d)
            else:  # buffers (frozen table, time-warp state) are copied, not averaged
                self.state[k].copy_(v)
