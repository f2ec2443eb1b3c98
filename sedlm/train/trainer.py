"""The training loop: AdamW, warmup + cosine LR, clipping, EMA, validation, checkpoints, resume.

Every random draw of step ``s`` comes from generators seeded by (train.seed, s), and the batch of
step ``s`` is a pure function of (train.seed, s), so a resumed run repeats exactly what an
uninterrupted run would have done. Ctrl-C finishes the current step, saves and returns.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from sedlm.config import Config
from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.data.packing import PackedRows
from sedlm.data.tokenizer import Tokenizer, load_tokenizer
from sedlm.diffusion.timewarp import fit_warp, record
from sedlm.errors import SedlmError
from sedlm.methods import Method, get_method
from sedlm.model.embedding import load_table, random_table
from sedlm.pretrained import resolve_device
from sedlm.train.checkpoint import is_checkpoint, load_checkpoint, load_training_state, save_checkpoint
from sedlm.train.embed import build_table, save_embedding


@dataclass
class TrainResult:
    out: Path
    step: int
    val_loss: float | None
    interrupted: bool
    elapsed_s: float
    tokens_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


def lr_at(step: int, cfg: Config) -> float:
    """Linear warmup to train.lr, then cosine decay to train.lr * min_lr_ratio at max_steps."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


WARP_START, WARP_EVERY = 100, 50  # steps before the first time-warp fit, and between refits


@torch.no_grad()
def update_time_warp(model: torch.nn.Module, metrics: dict[str, torch.Tensor], step: int) -> None:
    """Record this step's per-example (t, CE) and refit the warp every WARP_EVERY steps (CDCD §3.3)."""
    record(model.warp_sums, model.warp_counts, metrics["t"], metrics["ce_rows"])
    if step + 1 >= WARP_START and (step + 1) % WARP_EVERY == 0:
        model.time_warp.copy_(fit_warp(model.warp_sums, model.warp_counts))


def _step_generator(device: torch.device, seed: int, step: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


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


@torch.no_grad()
def validation_loss(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor | None]], cfg: Config, tokenizer: Tokenizer,
                    device: torch.device) -> float:
    """Mean training loss of the model's family on fixed validation batches with fixed noise
    (comparable across steps): SED loss, next-token NLL, or the MDLM bound."""
    method = get_method(cfg.method)
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(2024)
    total = sum(method.loss(model, ids.to(device), cfg, g, tokenizer, None if given is None else given.to(device))[0].item()
                for ids, given in batches)
    model.train(was_training)
    return total / max(1, len(batches))


def _embedding_table(cfg: Config, data: PreparedData, out: Path, device: torch.device, progress: bool, log) -> torch.Tensor:
    V, De = data.tokenizer.vocab_size, cfg.model.d_embed
    if cfg.embed.kind in ("random", "learned"):
        return random_table(V, De, torch.Generator().manual_seed(cfg.embed.seed))
    if cfg.embed.path:
        return load_table(_embedding_file(cfg.embed.path), V, De)
    table = build_table(cfg.embed, data.train, data.tokenizer, De, device, progress, log)
    save_embedding(out / "embeddings.safetensors", table)
    return table


def _embedding_file(path: str) -> Path:
    p = Path(path)
    return p / "embeddings.safetensors" if p.is_dir() else p


def _tokenizer_for(cfg: Config):
    """A tokenizer saved beside a pretrained embedding table wins over data.tokenizer=bpe,
    since the table's rows are indexed by it."""
    if cfg.embed.kind in ("mlm", "ppmi") and cfg.embed.path and cfg.data.tokenizer == "bpe":
        beside = _embedding_file(cfg.embed.path).parent / "tokenizer.json"
        if beside.is_file():
            return load_tokenizer(beside)
    return None


def _truncate_metrics(path: Path, last_step: int) -> None:
    """On resume, drop log rows written after the checkpoint the run restarts from."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(r + "\n" for r in rows))
    os.replace(tmp, path)


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step; a second one interrupts at once."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.set:
                    raise KeyboardInterrupt
                self.set = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(
    cfg: Config,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data: PreparedData | None = None,
) -> TrainResult:
    """Train a model of family ``cfg.method`` and write the run (checkpoint + metrics.jsonl) to ``out``."""
    out = Path(out)
    if resume and not is_checkpoint(out):
        raise SedlmError(f"--resume given but '{out}' holds no checkpoint; drop --resume to start a new run")
    if not resume and is_checkpoint(out):
        raise SedlmError(f"'{out}' already holds a run; pass --resume to continue it, or choose another --out")
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)

    saved = load_checkpoint(out) if resume else None  # (config, EMA weights, tokenizer)
    tokenizer = saved[2] if saved else _tokenizer_for(cfg)
    if data is None:
        log(f"loading data from {cfg.data.source}")
        data = prepare_data(cfg.data, tokenizer)
    cfg.model.vocab_size = data.tokenizer.vocab_size
    method: Method = get_method(cfg.method)
    # Families that end text with EOS train on unpadded rows (the shared pipeline pads for the others).
    pad = cfg.data.pad_fraction if method.pads else 0.0
    train_rows = PackedRows(data.train.rows, data.tokenizer.pad_id, pad, data.train.given)
    val_rows = PackedRows(data.val.rows, data.tokenizer.pad_id, pad, data.val.given) if data.val else None
    state = load_training_state(out) if resume else None
    out.mkdir(parents=True, exist_ok=True)
    table = None
    if method.uses_embedding_table:
        table = state["model"]["embedding.table"] if state else _embedding_table(cfg, data, out, device, progress, log)
    tok = data.tokenizer
    model = method.build(cfg, tok, table).to(device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"{method.name} ({method.description}): {n_params / 1e6:.2f}M trainable parameters; "
        f"{len(train_rows)} training rows of {cfg.data.seq_len} tokens")

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.train.lr, betas=(0.9, 0.98),
    )
    ema = EMA(model, cfg.train.ema_decay)
    step, elapsed_before = 0, 0.0
    metrics_path = out / "metrics.jsonl"
    if state:
        model.load_state_dict(state["model"])
        ema.state = {k: v.to(device) for k, v in saved[1].items()}
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        step, elapsed_before = state["meta"]["step"], state["meta"]["elapsed_s"]
        _truncate_metrics(metrics_path, step)
        log(f"resuming from step {step}")

    def checkpoint() -> None:
        save_checkpoint(out, cfg, ema.state, data.tokenizer, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "meta": {"step": step, "elapsed_s": elapsed_before + time.perf_counter() - t0},
        })

    ema_model = method.build(cfg, tok, table).to(device)  # holds the EMA weights for validation
    val_batches = val_rows.fixed_batches(cfg.train.batch_size, cfg.train.eval_batches) if val_rows else []
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    t0 = time.perf_counter()
    window_t, window_steps = t0, 0
    val_loss, interrupted, history = None, False, []
    rate = 0.0
    model.train()
    bar = tqdm(total=cfg.train.max_steps, initial=step, desc="train", disable=not progress, dynamic_ncols=True)
    with _StopFlag() as stop, metrics_path.open("a") as mlog:
        while step < cfg.train.max_steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = train_rows.batch(step, cfg.train.batch_size, cfg.train.seed).to(device)
            given = train_rows.batch_given(step, cfg.train.batch_size, cfg.train.seed)
            given = None if given is None else given.to(device)
            loss, m = method.loss(model, batch, cfg, _step_generator(device, cfg.train.seed, step), tok, given)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            if getattr(model, "time_warp", None) is not None:
                update_time_warp(model, m, step)
            ema.update(model, step)
            step += 1
            window_steps += 1
            bar.update(1)

            out_of_time = cfg.train.max_minutes > 0 and time.perf_counter() - t0 + elapsed_before >= 60 * cfg.train.max_minutes
            last = step >= cfg.train.max_steps or out_of_time or stop.set
            if step % cfg.train.log_every == 0 or last:
                now = time.perf_counter()
                rate = window_steps * tokens_per_step / max(now - window_t, 1e-9)
                window_t, window_steps = now, 0
                row: dict[str, Any] = {
                    "step": step, "loss": round(loss.item(), 5), "lr": group["lr"], "tokens_per_s": round(rate, 1),
                    **{k: round(v.item(), 5) for k, v in m.items() if v.ndim == 0},
                    "elapsed_s": round(elapsed_before + now - t0, 2),
                }
                if val_batches and (step % cfg.train.eval_every == 0 or last):
                    ema_model.load_state_dict(ema.state)
                    val_loss = validation_loss(ema_model, val_batches, cfg, tok, device)
                    row["val_loss"] = round(val_loss, 5)
                mlog.write(json.dumps(row) + "\n")
                mlog.flush()
                history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{rate:,.0f}", **({"val": f"{val_loss:.3f}"} if val_loss else {}))
            if step % cfg.train.checkpoint_every == 0 or last:
                checkpoint()
            if last:
                interrupted = stop.set
                break
    bar.close()
    elapsed = elapsed_before + time.perf_counter() - t0
    if interrupted:
        log(f"interrupted at step {step}; checkpoint saved to {out} (continue with --resume)")
    return TrainResult(out, step, val_loss, interrupted, elapsed, rate, history)
