"""The systems a benchmark compares: a family or recipe, optionally with overrides (``system_config``),
sized to a reference parameter count (``match_width``), each trained for a fixed number of optimiser steps
into its own run folder per training seed (``train_system``), or reused when a finished run matches."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sedlm.config import Config, apply_overrides, resolve_config_path
from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.errors import SedlmError
from sedlm.families import FAMILIES, check_config, get_family, load_config
from sedlm.families.base import count_parameters
from sedlm.families.recipes import RECIPES, apply_recipe
from sedlm.model.embedding import effective_d_embed
from sedlm.train.trainer import train


def param_count(cfg: Config, data: PreparedData) -> int:
    """Parameters (and buffers) of the model ``cfg`` builds, counted without allocating it."""
    family = get_family(cfg.family)
    cfg.model.d_embed = effective_d_embed(cfg.embed.kind, cfg.model.vocab_size, cfg.model.d_embed)
    with torch.device("meta"):
        table = torch.empty(cfg.model.vocab_size, cfg.model.d_embed) if family.uses_embedding_table else None
        return count_parameters(family.build(cfg, data.tokenizer, table))


def match_width(cfg: Config, target: int, data: PreparedData) -> int:
    """Set cfg.model.d_model (a multiple of 2 * n_heads) so the parameter count is closest to ``target``."""
    step = 2 * cfg.model.n_heads
    best = None
    for d in range(step, 4 * max(cfg.model.d_model, 64) + step, step):
        cfg.model.d_model = d
        n = param_count(cfg, data)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (d, n)
    cfg.model.d_model, n = best
    if abs(n - target) / target > 0.10:
        raise SedlmError(f"could not match {cfg.family} to {target:,} parameters within 10% (closest {n:,})")
    return n


def seconds_per_step(cfg: Config, data: PreparedData, n: int = 3) -> float:
    """Seconds per optimiser step of this family (a random embedding table where it needs one; timing only)."""
    family = get_family(cfg.family)
    table = torch.randn(cfg.model.vocab_size, cfg.model.d_embed) if family.uses_embedding_table else None
    model = family.build(cfg, data.tokenizer, table)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(n + 1):
        start = time.perf_counter()
        loss, _ = family.loss(model, data.train.batch(step, cfg.train.batch_size, 0), cfg, g, data.tokenizer)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / n  # the first step pays one-off costs


def system_config(base: Config, spec: str) -> Config:
    """The config of one compared system: ``NAME[:section.key=value[:...]]`` where NAME is a family or a
    recipe (``sedlm recipes``) and the optional overrides make a variant of it (e.g.
    ``cdcd:diffusion.time_warp=false`` to see what time warping does)."""
    name, *extra = spec.split(":")
    cfg = base.copy()
    if name in RECIPES:
        apply_recipe(cfg, name)
    elif name in FAMILIES:
        cfg.family = name
    else:
        raise SedlmError(
            f"unknown system '{name}'; valid: the families {', '.join(FAMILIES)} or the recipes "
            f"{', '.join(RECIPES)}, optionally followed by :section.key=value overrides"
        )
    apply_overrides(cfg, extra)
    check_config(cfg)
    return cfg


def prepare_systems(
    source: str, methods: tuple[str, ...], overrides: list[str] | None = None
) -> tuple[Config, PreparedData, dict[str, Config], dict[str, int]]:
    """The tiny config on the text ``source`` (a ``data.source``), its data, and each system's config with its
    width matched to the first system's parameter count (and that count)."""
    base = load_config(resolve_config_path("tiny"), [f"data.source={source}", *(overrides or [])])
    data = prepare_data(base.data)
    base.model.vocab_size = data.tokenizer.vocab_size
    cfgs = {m: system_config(base, m) for m in methods}
    for cfg in cfgs.values():
        apply_overrides(cfg, list(overrides or []))  # the caller's overrides win over a recipe's
    reference = methods[0]
    target = param_count(cfgs[reference], data)
    params = {m: target if m == reference else match_width(cfgs[m], target, data) for m in methods}
    return base, data, cfgs, params


def run_folder(runs_dir: str | Path, system: str, seed: int = 0) -> Path:
    """Where a system's run lives; seed 0 keeps the name runs had before seeds were a choice."""
    name = system.replace(":", "_").replace("=", "-")
    return Path(runs_dir) / (name if seed == 0 else f"{name}-seed{seed}")


def train_system(
    cfg: Config,
    system: str,
    n_steps: int,
    runs_dir: str | Path,
    data: PreparedData,
    log: Callable[[str], None],
    reuse: bool = False,
) -> tuple[Path, float]:
    """Train one system for ``n_steps`` into its run folder (replacing an earlier run); with ``reuse``, a
    finished run of the same family, recipe, seed, data source, step count, width and diffusion, sampling and
    family settings is kept. Returns the folder and training seconds."""
    cfg.train.max_steps = n_steps
    cfg.train.max_minutes = 0.0
    cfg.train.eval_every = max(1, n_steps // 4)
    cfg.train.checkpoint_every = n_steps
    cfg.train.warmup_steps = min(cfg.train.warmup_steps, n_steps // 10 + 1)
    out = run_folder(runs_dir, system, cfg.train.seed)
    if reuse and (out / "config.json").is_file():
        from sedlm.train.checkpoint import load_checkpoint, load_training_state

        saved = load_checkpoint(out)[0]
        meta = load_training_state(out)["meta"]
        same = lambda c: (  # noqa: E731
            c.family,
            c.recipe,
            c.train.seed,
            c.data.source,
            c.model.d_model,
            c.model.n_layers,
            c.diffusion,
            c.sample,
            c.settings,
        )
        if meta["step"] == n_steps and same(saved) == same(cfg):
            log(f"reusing the finished run in {out}")
            return out, float(meta["elapsed_s"])
    if out.exists():
        shutil.rmtree(out)
    result = train(cfg, out, data=data, log=log)
    return out, result.elapsed_s
