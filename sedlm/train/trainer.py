"""The training loop: AdamW, warmup + cosine LR, clipping, EMA, validation, checkpoints, resume.

The same loop runs on one process or many (Accelerate; see ``sedlm.train.distributed``).
Exact resume: every random draw of step ``s`` comes from generators seeded by (train.seed, s,
micro-batch) and the global RNG is reseeded by (train.seed, s, process) each step; the batch of
step ``s`` is a pure function of (train.seed, s). With model, EMA, optimizer and RNG states in the
checkpoint, a resumed run repeats exactly what an uninterrupted run would have done.
Ctrl-C finishes the current step, saves and returns.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sedlm.config import Config
from sedlm.data.dataset import PreparedData, fit_pair_rows
from sedlm.data.packing import PackedRows
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.families import check_config, get_family
from sedlm.io import check_output
from sedlm.model.embedding import effective_d_embed
from sedlm.progress import progress as show_progress
from sedlm.train.checkpoint import is_checkpoint, load_checkpoint, load_training_state, save_checkpoint
from sedlm.train.distributed import (
    Engine,
    full_tensors,
    load_optimizer_state,
    make_accelerator,
    micro_batches,
    optimizer_state,
    shard_like,
    tracker_config,
    trackers,
    wrap_model,
)
from sedlm.train.optim import EMA, lr_at, make_optimizer
from sedlm.train.rng import chunk_generator, rng_state, set_rng_state, step_seed
from sedlm.train.setup import (
    load_initial,
    prepare_on_main_first,
    table_on_main_first,
    tokenizer_for,
    truncate_metrics,
)
from sedlm.train.validation import family_rows, validation_batches, validation_loss


@dataclass
class TrainResult:
    out: Path
    step: int
    val_loss: float | None
    interrupted: bool
    elapsed_s: float
    tokens_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    main: bool = True  # False on the other processes of a distributed run


def resume_message(saved: int, reached: int, max_steps: int, checkpoint_every: int) -> str:
    """What a resumed run will do, truthfully: where it restarts, what it repeats, where it stops."""
    if saved >= max_steps:
        return (
            f"the run already reached train.max_steps={max_steps} (checkpoint at step {saved}); nothing to train "
            f"(raise it to continue, e.g. train.max_steps={max_steps * 2})"
        )
    msg = f"resuming from the checkpoint at step {saved}, training to step {max_steps}"
    if reached > saved:
        msg += (
            f"; steps {saved + 1}-{reached} ran after that checkpoint and are redone (their metrics rows are "
            f"replaced; train.checkpoint_every={checkpoint_every})"
        )
    return msg


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


def _mean_over_processes(accelerator, values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average scalar tensors over processes (a collective: every process calls it at the same step)."""
    keys = sorted(values)
    stacked = torch.stack([values[k].float() for k in keys])
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="mean")
    return dict(zip(keys, stacked.tolist()))


def _agree(accelerator, *flags: bool) -> tuple[bool, ...]:
    """Each flag set if it is set on any process, so that every process takes the same decision."""
    if accelerator.num_processes == 1:
        return flags
    summed = accelerator.reduce(torch.tensor([float(f) for f in flags], device=accelerator.device), reduction="sum")
    return tuple(bool(v > 0) for v in summed.tolist())


def train(
    cfg: Config,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data: PreparedData | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Train a model of family ``cfg.family`` and write the run (checkpoint + metrics.jsonl) to ``out``.
    ``init``: a checkpoint folder whose weights, tokenizer and embedding table the run starts from
    (fine-tuning; the optimiser and step count start afresh).

    Runs as one process or as many (launched by ``accelerate launch`` or ``torchrun``); see
    ``sedlm.train.distributed`` for how the global batch is shared. Only the main process logs
    and writes files."""
    out = Path(out)
    check_config(cfg)
    check_output(out, "--out")
    if resume and not is_checkpoint(out):
        raise SedlmError(f"--resume given but '{out}' holds no checkpoint; drop --resume to start a new run")
    if not resume and is_checkpoint(out):
        raise SedlmError(f"'{out}' already holds a run; pass --resume to continue it, or choose another --out")
    accelerator = make_accelerator(cfg, project_dir=str(out))
    reporting = bool(trackers(cfg))
    if reporting:
        accelerator.init_trackers("sedlm", config=tracker_config(cfg))  # TensorBoard's event files: <out>/sedlm
    device, main, world, rank = (
        accelerator.device,
        accelerator.is_main_process,
        accelerator.num_processes,
        accelerator.process_index,
    )
    log = log if main else (lambda _msg: None)
    micro, n_micro = micro_batches(cfg, world)
    torch.manual_seed(cfg.train.seed)

    if resume and init:
        raise SedlmError(
            "--resume continues the run in --out; --init starts a new one from a checkpoint: pass one of them"
        )
    saved = load_checkpoint(out) if resume else None  # (config, EMA weights, tokenizer)
    initial = load_checkpoint(init) if init else None
    tokenizer = saved[2] if saved else initial[2] if initial else tokenizer_for(cfg)
    if data is None:
        data = prepare_on_main_first(cfg, out, accelerator, tokenizer, log)
    if cfg.data.fit_rows:  # seq2seq rows sized to the pairs, the batch keeping its tokens
        data, k = fit_pair_rows(data, cfg.data.seq_len, cfg.diffusion.block_size)
        if k > 1:
            log(
                f"every pair fits in {cfg.data.seq_len // k} tokens: rows of {cfg.data.seq_len // k} tokens, "
                f"global batch {cfg.train.batch_size * k} rows (data.fit_rows)"
            )
            cfg.data.seq_len //= k
            cfg.train.batch_size *= k
            micro, n_micro = micro_batches(cfg, world)
        cfg.data.fit_rows = False  # the saved config holds the fitted rows: a resume must not halve them again
    cfg.model.vocab_size = data.tokenizer.vocab_size
    cfg.model.d_embed = effective_d_embed(cfg.embed.kind, cfg.model.vocab_size, cfg.model.d_embed)
    family = get_family(cfg.family)
    train_rows = family_rows(data.train, family)
    val_rows = family_rows(data.val, family) if data.val else None
    state = load_training_state(out) if resume else None
    table = None
    if family.uses_embedding_table:
        if state:
            table = state["model"]["embedding.table"]
        elif initial:
            table = initial[1]["embedding.table"]
        else:
            if main:
                out.mkdir(parents=True, exist_ok=True)
            table = table_on_main_first(cfg, data, out, accelerator, device, progress, log)
    tok = data.tokenizer
    model = family.build(cfg, tok, table).to(device)
    if initial:
        load_initial(model, initial[1], init)
        log(f"starting from the weights of {init}")
    elif not state:
        family.init_from_data(model, cfg, train_rows, tok)
    if main:  # only now: weights that do not fit leave no folder behind
        out.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"{family.name} ({family.description}): {n_params / 1e6:.2f}M trainable parameters; "
        f"{len(train_rows)} training rows of {cfg.data.seq_len} tokens; global batch {cfg.train.batch_size} rows = "
        f"{world} process(es) x {n_micro} micro-batch(es) x {micro}"
        + (f"; {torch.get_num_threads()} CPU thread(s)" if accelerator.device.type == "cpu" else "")
    )

    engine, opt = wrap_model(model, lambda m: make_optimizer(m, cfg), accelerator, cfg)
    ema = EMA(model, cfg.train.ema_decay)
    step, elapsed_before = 0, 0.0
    metrics_path = out / "metrics.jsonl"
    if state:
        try:
            model.load_state_dict(shard_like(state["model"], model.state_dict()))
        except (RuntimeError, KeyError, ValueError):
            raise SedlmError(
                f"the training state in '{out}' does not fit the model its config.json describes (was the "
                "config edited?); resume with the saved config or start a new run"
            ) from None
        ema.state = shard_like(saved[1], ema.state)
        load_optimizer_state(opt, state["optimizer"])
        set_rng_state(state["rng"], state["meta"].get("rng", {}))
        step, elapsed_before = state["meta"]["step"], state["meta"]["elapsed_s"]
        reached = truncate_metrics(metrics_path, step) if main else step
        log(resume_message(step, reached, cfg.train.max_steps, cfg.train.checkpoint_every))

    def checkpoint() -> None:
        """Gather full tensors on every process (sharded runs), write on the main one."""
        weights, raw, optim = full_tensors(ema.state), full_tensors(model.state_dict()), optimizer_state(opt)
        if main:
            rng, rng_meta = rng_state()
            rows_seen = step * cfg.train.batch_size
            save_checkpoint(
                out,
                cfg,
                weights,
                data.tokenizer,
                {
                    "model": raw,
                    "optimizer": optim,
                    "rng": rng,
                    "meta": {
                        "step": step,
                        "elapsed_s": elapsed_before + time.perf_counter() - t0,
                        "processes": world,
                        "data": {
                            "rows_seen": rows_seen,
                            "epoch": rows_seen // len(train_rows),
                            "row_in_epoch": rows_seen % len(train_rows),
                            "rows_per_epoch": len(train_rows),
                        },
                        "rng": rng_meta,
                    },
                },
            )
        accelerator.wait_for_everyone()

    ema_model = family.build(cfg, tok, table).to(device)  # holds the EMA weights for validation
    val_batches = validation_batches(val_rows, cfg) if val_rows else []
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    share = slice(rank * micro * n_micro, (rank + 1) * micro * n_micro)  # this process's rows of each global batch
    t0 = time.perf_counter()
    window_t, window_steps = t0, 0
    val_loss, interrupted, history = None, False, []
    rate = 0.0
    model.train()
    bar = show_progress(
        total=cfg.train.max_steps, initial=step, desc="train", enabled=progress and main, dynamic_ncols=True
    )
    with _StopFlag() as stop, metrics_path.open("a") if main else contextlib.nullcontext() as mlog:
        while step < cfg.train.max_steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            torch.manual_seed(step_seed(cfg.train.seed, step, rank))
            loss, m = _train_step(engine, opt, train_rows, cfg, tok, step, share, micro, n_micro)
            family.after_step(model, m, step, accelerator.gather if world > 1 else (lambda v: v))
            ema.update(model, step)
            step += 1
            window_steps += 1
            bar.update(1)

            out_of_time = (
                cfg.train.max_minutes > 0 and time.perf_counter() - t0 + elapsed_before >= 60 * cfg.train.max_minutes
            )
            out_of_time, stop_asked = _agree(accelerator, out_of_time, stop.set)
            last = step >= cfg.train.max_steps or out_of_time or stop_asked
            if step % cfg.train.log_every == 0 or last:
                now = time.perf_counter()
                rate = window_steps * tokens_per_step / max(now - window_t, 1e-9)
                window_t, window_steps = now, 0
                scalars = _mean_over_processes(
                    accelerator, {"loss": loss, **{k: v for k, v in m.items() if v.ndim == 0}}
                )
                row: dict[str, Any] = {
                    "step": step,
                    "loss": round(scalars.pop("loss"), 5),
                    "lr": group["lr"],
                    "tokens_per_s": round(rate, 1),
                    **{k: round(v, 5) for k, v in scalars.items()},
                    "elapsed_s": round(elapsed_before + now - t0, 2),
                }
                if val_batches and (step % cfg.train.eval_every == 0 or last):
                    ema_model.load_state_dict(full_tensors(ema.state))
                    with accelerator.autocast():
                        val_loss = validation_loss(ema_model, val_batches, cfg, tok, device)
                    row["val_loss"] = round(val_loss, 5)
                    row["val_loss_kind"] = family.val_loss_kind
                if main:
                    mlog.write(json.dumps(row) + "\n")
                    mlog.flush()
                if reporting:
                    numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
                    accelerator.log(numbers, step=step)
                history.append(row)
                bar.set_postfix(
                    loss=f"{row['loss']:.3f}", tok_s=f"{rate:,.0f}", **({"val": f"{val_loss:.3f}"} if val_loss else {})
                )
            if step % cfg.train.checkpoint_every == 0 or last:
                checkpoint()
            if last:
                interrupted = stop_asked
                break
    bar.close()
    if reporting:
        accelerator.end_training()
    accelerator.free_memory()
    elapsed = elapsed_before + time.perf_counter() - t0
    if interrupted:
        log(f"interrupted at step {step}; checkpoint saved to {out} (continue with --resume)")
    return TrainResult(out, step, val_loss, interrupted, elapsed, rate, history, main)


def _train_step(
    engine: Engine,
    opt,
    rows: PackedRows,
    cfg: Config,
    tok: Tokenizer,
    step: int,
    share: slice,
    micro: int,
    n_micro: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step over this process's ``share`` of the global batch, in ``n_micro``
    micro-batches of ``micro`` rows; returns the mean loss and metrics of its micro-batches."""
    accelerator, family, device = engine.accelerator, get_family(cfg.family), engine.accelerator.device
    ids = rows.batch(step, cfg.train.batch_size, cfg.train.seed, share).to(device)  # (b, L)
    given = rows.batch_given(step, cfg.train.batch_size, cfg.train.seed, share)
    first_chunk = share.start // micro
    total, metrics = torch.zeros((), device=device), {}
    for k in range(n_micro):
        part = slice(k * micro, (k + 1) * micro)
        g = chunk_generator(device, cfg.train.seed, step, first_chunk + k)
        with engine.sync_gradients(k == n_micro - 1), accelerator.autocast():
            loss, m = family.loss(
                engine.forward, ids[part], cfg, g, tok, None if given is None else given[part].to(device)
            )
            accelerator.backward(loss / n_micro)
        total += loss.detach() / n_micro
        for name, v in m.items():
            if v.ndim == 0:
                metrics[name] = metrics.get(name, 0) + v / n_micro
            else:  # per-example values (time warping) are concatenated
                metrics[name] = torch.cat([metrics[name], v]) if name in metrics else v
    accelerator.clip_grad_norm_(engine.model.parameters(), cfg.train.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total, metrics
