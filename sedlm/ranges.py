"""The declared range of every numeric key of the shared config sections (``sedlm.config.validate`` checks
them first, before anything divides by a value; tests/test_wrong_numbers.py draws values outside each)."""

from __future__ import annotations

from dataclasses import dataclass

SEED_MAX = 2**63 - 1  # torch generators take a signed 64-bit seed


@dataclass(frozen=True)
class Range:
    """The declared range of a numeric config key: low <= v (low < v when ``open_low``), v <= high (v < high
    when ``open_high``); None leaves that side unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def holds(self, v: float) -> bool:
        low_ok = self.low is None or (v > self.low if self.open_low else v >= self.low)
        high_ok = self.high is None or (v < self.high if self.open_high else v <= self.high)
        return low_ok and high_ok

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}" if self.high < 1e15 else "< 2^63")
        return " and ".join(parts) or "a finite number"


_ONE, _POSITIVE, _NONNEG = Range(1), Range(0, open_low=True), Range(0)
_FRACTION, _SEED = Range(0, 1, open_high=True), Range(0, SEED_MAX)
# Every numeric key of the shared sections, with its range.
RANGES: dict[str, Range] = {
    "model.d_model": _ONE,
    "model.n_layers": _ONE,
    "model.n_heads": _ONE,
    "model.mlp_ratio": _POSITIVE,
    "model.d_embed": _ONE,
    "model.dropout": _FRACTION,
    "model.vocab_size": _NONNEG,  # 0: from the tokenizer
    "embed.d_model": _ONE,
    "embed.n_layers": _ONE,
    "embed.n_heads": _ONE,
    "embed.steps": _ONE,
    "embed.batch_size": _ONE,
    "embed.lr": _POSITIVE,
    "embed.mask_prob": _FRACTION,
    "embed.max_minutes": _NONNEG,
    "embed.seed": _SEED,
    "embed.window": _ONE,
    "diffusion.logsnr_shift": Range(),
    "diffusion.sigma0": _NONNEG,
    "diffusion.block_size": _NONNEG,  # 0: the whole row
    "diffusion.time_mean": Range(),
    "diffusion.time_std": _POSITIVE,
    "diffusion.mse_weight": _NONNEG,
    "diffusion.ce_weight": _NONNEG,
    "diffusion.round_weight": _NONNEG,
    "diffusion.p_uncond": _FRACTION,
    "diffusion.guidance_w_min": _NONNEG,
    "diffusion.guidance_w_max": _NONNEG,
    "data.vocab_size": _ONE,
    "data.seq_len": Range(2),
    "data.pad_fraction": _FRACTION,
    "data.val_fraction": _FRACTION,
    "data.split_seed": _SEED,
    "data.max_chars": _NONNEG,
    "train.max_steps": _ONE,
    "train.batch_size": _ONE,
    "train.lr": _POSITIVE,
    "train.weight_decay": _NONNEG,
    "train.warmup_steps": _NONNEG,
    "train.min_lr_ratio": Range(0, 1),
    "train.grad_clip": _POSITIVE,
    "train.ema_decay": _FRACTION,
    "train.seed": _SEED,
    "train.log_every": _ONE,
    "train.eval_every": _ONE,
    "train.eval_batches": _ONE,
    "train.checkpoint_every": _ONE,
    "train.max_minutes": _NONNEG,
    "train.micro_batch_size": _NONNEG,  # 0: no split
    "sample.steps": _ONE,
    "sample.rho": _POSITIVE,
    "sample.n": _ONE,
    "sample.guidance": _NONNEG,  # 1: no guidance
    "sample.seed": _SEED,
    "sample.noise_temp": _NONNEG,
    "sample.score_temp": _POSITIVE,
}
