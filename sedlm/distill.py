"""Few-step students of a continuous diffusion model: progressive and consistency distillation.

Both distil the teacher's deterministic sampler (DDIM, Song et al. 2021) in its own schedule. With
alpha = sqrt(abar) and sigma = sqrt(1 - abar), one DDIM step from t to s with estimate x0 is

    step(x_t, x0; t -> s) = alpha_s x0 + sigma_s (x_t - alpha_t x0) / sigma_t.

progressive   (Salimans & Ho 2022, Alg. 2) Rounds halve the grid: a student initialised from the teacher
              learns to take in one step what the teacher takes in two, t -> t' -> t'' on the teacher's
              grid of 2N steps, the student's target being the x0 whose single step lands where the
              teacher's two did:
                  x0_target = (x_t'' - r x_t) / (alpha_t'' - r alpha_t),   r = sigma_t'' / sigma_t.
              The student of one round is the teacher of the next, N = teacher_steps / 2, ..., nfe.
consistency   (Song et al. 2023, consistency distillation with the x0 parameterisation) On the fine
              grid of teacher_steps, the student's estimate at (x_t, t) is pulled to an EMA copy's
              estimate at the teacher's one DDIM step further, (x_t', t'); at t' = 0 the target is the
              teacher's x0 itself. It is sampled by multistep consistency sampling (the ``consistency``
              sampler: estimate, then re-noise afresh) on a uniform grid of nfe steps.

The teacher's estimate is both self-conditioning passes at the same x_t (the second fed the first's
estimate; recorded as ``teacher_sampler``), given positions held at their clean embedding, and classifier-free
guidance folded in when ``guidance`` != 1. The shipped samplers instead make one call per step and feed back
the previous step's estimate, which a fresh x_t drawn from the data does not have: the student copies that
two-pass DDIM, not the one-pass sampler of the teacher rows in the tables. Students are one pass with a
zero self-conditioning estimate (``diffusion.self_cond=off`` in their config), so a sample costs exactly
``nfe`` network calls.
Training rows, conditioning masks (prompts, infill spans) and padding are the teacher's training data.
A block teacher (diffusion.block_size) gives a per-block student: every call reads the true row's clean
blocks under the block mask, so all blocks of a row take the same step of their own block-by-block
trajectories at once, and the student samples block by block in ``nfe`` calls per block.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sedlm.errors import SedlmError
from sedlm.sampling.samplers import ddim_step

Estimate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, L, D), t (B,)) -> x0 (B, L, D)
METHODS = ("progressive", "consistency")


@dataclass
class DistillConfig:
    method: str = "progressive"
    nfe: int = 4  # network calls per sample of the student
    teacher_steps: int = 64  # progressive: the first teacher grid (nfe * 2^k); consistency: the fine grid
    steps_per_round: int = 300  # optimiser steps per halving (progressive) or in all (consistency)
    batch_size: int = 32
    lr: float = 1e-4
    guidance: float = 1.0  # the teacher's classifier-free guidance, folded into the student
    ema_decay: float = 0.95  # consistency: the target network's EMA
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise SedlmError(f"unknown distillation method '{self.method}'; valid: {', '.join(METHODS)}")
        for name in ("nfe", "teacher_steps", "steps_per_round", "batch_size"):
            if getattr(self, name) < 1:
                raise SedlmError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if not (self.lr > 0 and math.isfinite(self.lr)) or not (0 <= self.ema_decay < 1):
            raise SedlmError("--lr must be positive and the EMA decay in [0, 1)")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise SedlmError(f"--guidance must be a finite number >= 0 (got {self.guidance})")
        if self.method == "progressive":
            ratio = self.teacher_steps / self.nfe
            if ratio < 2 or ratio != 2 ** round(math.log2(ratio)):
                raise SedlmError(
                    f"progressive distillation halves the grid each round: --teacher-steps must be --nfe "
                    f"times a power of two >= 2 (got {self.teacher_steps} and {self.nfe})"
                )
        elif self.teacher_steps < self.nfe:
            raise SedlmError("--teacher-steps (the fine grid) must be at least --nfe")


def round_grids(teacher_steps: int, nfe: int) -> list[int]:
    """Student step counts of the progressive rounds: teacher_steps / 2, / 4, ..., nfe."""
    out, n = [], teacher_steps
    while n > nfe:
        n //= 2
        out.append(n)
    return out


def two_step_target(x_t: torch.Tensor, x_s: torch.Tensor, ab_t: torch.Tensor, ab_s: torch.Tensor) -> torch.Tensor:
    """The x0 whose single DDIM step from (x_t, t) lands on x_s at s (Salimans & Ho 2022, Alg. 2)."""
    r = (1 - ab_s).clamp(min=0).sqrt() / (1 - ab_t).clamp(min=1e-12).sqrt()
    return (x_s - r * x_t) / (ab_s.sqrt() - r * ab_t.sqrt())


def _draw(
    x0: torch.Tensor, n_steps: int, alpha_bar: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step (t, s) of the uniform grid of ``n_steps`` per row, and x_t drawn from q(x_t | x0).
    (B,), (B,), (B, L, D)"""
    grid = torch.linspace(1.0, 0.0, n_steps + 1, device=x0.device)
    i = torch.randint(0, n_steps, (x0.shape[0],), generator=generator, device=x0.device)
    t, s = grid[i], grid[i + 1]
    ab_t = alpha_bar(t)[:, None, None].to(x0.dtype)
    return t, s, ab_t.sqrt() * x0 + (1 - ab_t).sqrt() * torch.randn(x0.shape, generator=generator, device=x0.device)


def progressive_loss(
    student: Estimate,
    teacher: Estimate,
    x0: torch.Tensor,
    n_steps: int,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared error of the student's x0 at a random step of its uniform grid of ``n_steps`` against the
    two-teacher-step target, with Salimans & Ho's truncated-SNR weighting (§4, "truncated SNR"):
    max(||x0 - x0_hat||^2, ||eps - eps_hat||^2) = max(SNR_t, 1) ||x0 - x0_hat||^2, SNR_t = abar_t / (1 - abar_t).
    ``weight`` (B, L) masks positions (given ones carry no loss)."""
    t, s, x_t = _draw(x0, n_steps, alpha_bar, generator)
    mid = (t + s) / 2  # the teacher's grid of 2N steps
    ab_t, ab_m, ab_s = (alpha_bar(v)[:, None, None].to(x0.dtype) for v in (t, mid, s))
    with torch.no_grad():
        x_m = ddim_step(x_t, teacher(x_t, t), ab_t, ab_m)
        x_s = ddim_step(x_m, teacher(x_m, mid), ab_m, ab_s)
        target = two_step_target(x_t, x_s, ab_t, ab_s)
    snr = (ab_t / (1 - ab_t).clamp(min=1e-12)).clamp(min=1.0)[:, :, 0]  # (B, 1)
    return _masked_mse(student(x_t, t), target, weight, snr)


def consistency_loss(
    student: Estimate,
    target_net: Estimate,
    teacher: Estimate,
    x0: torch.Tensor,
    n_steps: int,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Consistency distillation on the fine grid of ``n_steps``: the student at (x_t, t) against the target
    network at the teacher's next point (x_s, s); the teacher's own x0 where s = 0."""
    t, s, x_t = _draw(x0, n_steps, alpha_bar, generator)
    ab_t, ab_s = (alpha_bar(v)[:, None, None].to(x0.dtype) for v in (t, s))
    with torch.no_grad():
        x0_teacher = teacher(x_t, t)
        x_s = ddim_step(x_t, x0_teacher, ab_t, ab_s)
        end = (s == 0)[:, None, None]
        target = torch.where(end, x0_teacher, target_net(x_s, s))
    return _masked_mse(student(x_t, t), target, weight)


def _masked_mse(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, scale: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Mean over counted positions of ``scale`` (B, 1) times the squared error per position."""
    err = (pred - target).pow(2).mean(-1) * scale  # (B, L)
    if weight is None:
        return err.mean()
    return (err * weight).sum() / weight.sum().clamp(min=1)


# --- SED models --------------------------------------------------------------------------------------


def sed_estimates(
    model: torch.nn.Module,
    cond: torch.Tensor,
    mask: torch.Tensor,
    *,
    two_pass: bool,
    guidance: float = 1.0,
    score_temp: float = 1.0,
    clean: torch.Tensor | None = None,
) -> Estimate:
    """An SED denoiser as (x_t, t) -> x0 with given positions held: both self-conditioning passes at the same
    x_t (``two_pass``, the teacher) or one pass with a zero estimate (a student); classifier-free guidance
    on the given tokens with scale ``guidance`` (rows with nothing given are unguided); ``score_temp`` for
    interp estimates, as the checkpoint samples with it. A block model (diffusion.block_size) reads the
    ``clean`` row (B, L) ids under the block mask, so each block is denoised given the true blocks before
    it and none of the other noisy blocks: every block of the row takes the same step of its own trajectory,
    as block-by-block sampling takes it."""
    given = mask.bool()[..., None]  # (B, L, 1)
    reads = {} if clean is None else {"clean": clean}

    def once(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros_like(x)
        first = model(x, t, zeros, c, m, score_temp=score_temp, **reads)[0]
        return model(x, t, first, c, m, score_temp=score_temp, **reads)[0] if two_pass else first

    def estimate(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = once(x, t, cond, mask)
        if guidance != 1.0:
            x0_u = once(x, t, torch.zeros_like(cond), torch.zeros_like(mask))
            guided = x0_u + guidance * (x0 - x0_u)
            x0 = torch.where(mask.bool().any(-1)[:, None, None], guided, x0)
        return torch.where(given, cond.to(x0.dtype), x0)

    return estimate


Batch = tuple[torch.Tensor, torch.Tensor | None, object]  # x0 (B, L, D), loss weight (B, L) or None, context
MakeEstimate = Callable[[torch.nn.Module, object, bool], Estimate]  # (network, batch context, is the first teacher)


def run_distillation(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    estimate: MakeEstimate,
    next_batch: Callable[[int], Batch],
    cfg: DistillConfig,
    alpha_bar: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    after_round: Callable[[int, torch.nn.Module], None] | None = None,
) -> list[dict]:
    """Train ``student`` (initialised from ``teacher``, updated in place) by ``cfg.method``. ``estimate``
    turns a network and a batch's context into an x0 estimate; the first teacher may differ (two passes,
    guidance). ``after_round(student_steps, student)`` is called after each round. Returns per-round records."""
    from sedlm.progress import progress as show_progress

    cfg.check()
    schedule = round_grids(cfg.teacher_steps, cfg.nfe) if cfg.method == "progressive" else [cfg.nfe]
    records, step, first = [], 0, True
    for r, n_steps in enumerate(schedule):
        opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
        target_net = copy.deepcopy(student).eval() if cfg.method == "consistency" else None
        bar = show_progress(total=cfg.steps_per_round, desc=f"distil {cfg.method} -> {n_steps} steps", enabled=progress)
        losses = []
        for _ in range(cfg.steps_per_round):
            x0, weight, ctx = next_batch(step)
            teacher_fn, student_fn = estimate(teacher, ctx, first), estimate(student, ctx, False)
            if cfg.method == "progressive":
                loss = progressive_loss(student_fn, teacher_fn, x0, n_steps, alpha_bar, generator, weight)
            else:
                loss = consistency_loss(
                    student_fn,
                    estimate(target_net, ctx, False),
                    teacher_fn,
                    x0,
                    cfg.teacher_steps,
                    alpha_bar,
                    generator,
                    weight,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            if target_net is not None:
                with torch.no_grad():
                    for pt, ps in zip(target_net.parameters(), student.parameters()):
                        pt.lerp_(ps, 1 - cfg.ema_decay)
            losses.append(loss.item())
            step += 1
            bar.update(1)
        bar.close()
        records.append(
            {
                "student_steps": n_steps,
                "optimizer_steps": cfg.steps_per_round,
                "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            }
        )
        log(f"round {r + 1}/{len(schedule)}: student of {n_steps} steps, loss {records[-1]['final_loss']:.5f}")
        if after_round is not None:
            after_round(n_steps, student)
        if cfg.method == "progressive":  # this round's student teaches the next
            teacher, first = copy.deepcopy(student).eval(), False
            for p in teacher.parameters():
                p.requires_grad_(False)
    return records


def distill(
    teacher_dir: str | Path,
    out: str | Path,
    cfg: DistillConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    save_rounds: bool = False,
) -> dict:
    """Distil the SED checkpoint in ``teacher_dir`` into a student that samples in ``cfg.nfe`` network calls,
    written to ``out`` (a checkpoint of the same family and size, with ``distill.json`` beside it). With
    ``save_rounds`` each progressive round's student is kept in ``out/round-<steps>``. Returns the record
    written to distill.json (rounds, student steps, minutes, the teacher's training cost)."""
    from sedlm.api import load_pretrained
    from sedlm.data.dataset import prepare_data
    from sedlm.data.masks import conditioning
    from sedlm.diffusion.schedules import get_schedule
    from sedlm.io import write_atomic
    from sedlm.train.checkpoint import load_training_state

    cfg.check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SedlmError(f"'{out}' is not an empty folder; choose another --out for the student")
    lm = load_pretrained(teacher_dir)
    if not lm.family.uses_embedding_table or not hasattr(lm.model, "embed"):
        raise SedlmError(
            f"distillation needs a continuous (embedding diffusion) teacher; '{teacher_dir}' is "
            f"a {lm.config.family} model"
        )
    if lm.model.position_knots is not None:
        raise SedlmError("distillation does not cover per-position schedules (diffusion.position_warp) yet")
    tcfg = lm.config
    alpha_bar = get_schedule(tcfg.diffusion.schedule, tcfg.diffusion.logsnr_shift)
    data = prepare_data(tcfg.data, tokenizer=lm.tokenizer)
    g = torch.Generator(device=lm.device).manual_seed(cfg.seed)
    teacher = lm.model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = copy.deepcopy(teacher).train()
    for name, p in student.named_parameters():
        p.requires_grad_(not name.startswith("embedding."))  # the table stays the teacher's
    two_pass = tcfg.diffusion.self_cond != "off"
    blocks = 0 < tcfg.diffusion.block_size < tcfg.data.seq_len  # a per-block student: nfe calls per block

    def next_batch(step: int) -> Batch:
        ids = data.train.batch(step, cfg.batch_size, cfg.seed).to(lm.device)  # (B, L)
        given = torch.zeros_like(ids, dtype=torch.bool)
        if tcfg.diffusion.cond_masks != "none":
            ids, given = conditioning(tcfg.diffusion.cond_masks, ids, lm.tokenizer.pad_id, g)
        x0 = teacher.embed(ids).detach()  # (B, L, D)
        m = given.float()
        return x0, 1 - m, (x0 * m[..., None], m, ids if blocks else None)

    def estimate(net: torch.nn.Module, ctx: object, first_teacher: bool) -> Estimate:
        cond, m, clean = ctx  # type: ignore[misc]
        return sed_estimates(
            net,
            cond,
            m,
            two_pass=two_pass and first_teacher,
            guidance=cfg.guidance if first_teacher else 1.0,
            score_temp=tcfg.sample.score_temp,
            clean=clean,
        )

    def after_round(n_steps: int, net: torch.nn.Module) -> None:
        if save_rounds and n_steps != cfg.nfe:
            _save_student(lm, net, tcfg, n_steps, out / f"round-{n_steps}")

    start = time.perf_counter()
    rounds = run_distillation(
        student, teacher, estimate, next_batch, cfg, alpha_bar, g, progress=progress, log=log, after_round=after_round
    )
    minutes = (time.perf_counter() - start) / 60
    _save_student(lm, student, tcfg, cfg.nfe, out, "consistency" if cfg.method == "consistency" else "ddim")
    try:
        meta = load_training_state(teacher_dir)["meta"]
        teacher_cost = {"teacher_steps_trained": meta["step"], "teacher_minutes": round(meta["elapsed_s"] / 60, 2)}
    except (SedlmError, KeyError, OSError):
        teacher_cost = {}
    record = {
        "teacher": str(teacher_dir),
        # what the student copies: not the shipped sampler, which makes one call per step and feeds back the
        # previous step's estimate (a fresh x_t drawn from the data has no previous step)
        "teacher_sampler": "ddim, both self-conditioning passes at each x_t (2 network calls per teacher step)"
        if two_pass
        else "ddim, one pass per step",
        **({"per_block": tcfg.diffusion.block_size} if blocks else {}),
        **asdict(cfg),
        "rounds": rounds,
        "student_optimizer_steps": sum(r["optimizer_steps"] for r in rounds),
        "minutes": round(minutes, 2),
        **teacher_cost,
    }
    if teacher_cost.get("teacher_minutes"):
        record["cost_vs_teacher"] = round(minutes / teacher_cost["teacher_minutes"], 3)
    write_atomic(out / "distill.json", json.dumps(record, indent=2))
    return record


def _save_student(lm, student: torch.nn.Module, tcfg, nfe: int, out: Path, sampler: str = "ddim") -> None:
    """The student as a checkpoint that samples with ``sampler`` in ``nfe`` steps and no self-conditioning."""
    from sedlm.train.checkpoint import save_checkpoint

    cfg = tcfg.copy()
    cfg.diffusion.self_cond = "off"
    cfg.sample.sampler, cfg.sample.steps, cfg.sample.time_grid, cfg.sample.guidance = sampler, nfe, "uniform", 1.0
    save_checkpoint(out, cfg, student.state_dict(), lm.tokenizer)
