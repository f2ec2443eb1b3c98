"""Training-step cost of SED's two-pass self-conditioning, relative to a plain step.

On one random batch of token ids (B = train.batch_size, L = data.seq_len) and one denoiser
(random frozen embedding table), this times with ``time.perf_counter`` one optimiser step of:

    plain            one forward + backward of the backbone (MSE + CE), no self-conditioning
    sed/both         sed_loss with both self-conditioning passes optimised (the SED paper)
    sed/half_nograd  sed_loss with a gradient-free first pass half the time (Analog Bits)
    sed/off          sed_loss with a single pass

each followed by backward and an AdamW step. The variants share one model and run in
interleaved rounds after a few warm-up rounds, so machine noise and the process's slow first
steps hit them alike. ``cost_vs_plain`` = seconds_per_step / the plain step's. half_nograd's
coin comes from a seeded generator, so about half of its timed steps pay for the extra pass.

Rerun (writes benchmarks/results/train-throughput-<config>.json and .md):
    python benchmarks/train_throughput.py                       # tiny config, 10 timed steps
    python benchmarks/train_throughput.py --config sed-s --batch-size 4 --steps 3 --warmup 1  # ~10 min on 2 cores
    python benchmarks/train_throughput.py --device cuda --config sed-s
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.common import publish, run_main, setup_device  # noqa: E402
from sedlm.config import Config, load_config, resolve_config_path  # noqa: E402
from sedlm.diffusion.objective import sed_loss  # noqa: E402
from sedlm.diffusion.schedules import get_schedule  # noqa: E402
from sedlm.model.denoiser import SEDDenoiser  # noqa: E402

VARIANTS = [("plain", None), ("sed", "both"), ("sed", "half_nograd"), ("sed", "off")]
COLUMNS = [
    "variant",
    "self_cond",
    "batch_size",
    "seq_len",
    "params",
    "seconds_per_step",
    "tokens_per_s",
    "cost_vs_plain",
]


def load(args: argparse.Namespace) -> Config:
    path = resolve_config_path(args.config)
    over = [*args.overrides, f"model.vocab_size={load_config(path, args.overrides).data.vocab_size}"]
    if args.batch_size:
        over.append(f"train.batch_size={args.batch_size}")
    if args.seq_len:
        over.append(f"data.seq_len={args.seq_len}")
    return load_config(path, over)


def make_step(
    variant: str,
    mode: str | None,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: Config,
    ids: torch.Tensor,
    gen: torch.Generator,
) -> Callable[[], None]:
    """One optimiser step of ``variant``; ``mode`` is set on a copy of the diffusion config."""
    dcfg = dataclasses.replace(cfg.diffusion, self_cond=mode or cfg.diffusion.self_cond)
    schedule = get_schedule(dcfg.schedule)

    def loss_fn() -> torch.Tensor:
        if variant == "sed":
            return sed_loss(model, ids, dcfg, schedule, gen)[0]
        target = model.embed(ids)  # (B, L, De)
        x_t = torch.randn(target.shape, generator=gen, device=ids.device)
        t = torch.rand(ids.shape[0], generator=gen, device=ids.device)
        x0_hat, logits = model(x_t, t)  # one pass, zero self-conditioning estimate
        return F.mse_loss(x0_hat, target) + F.cross_entropy(logits.flatten(0, 1), ids.flatten())

    def step() -> None:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_interleaved(
    steps: list[Callable[[], None]], n: int, warmup: int, warmup_s: float, device: torch.device
) -> list[float]:
    """Mean seconds per step of each callable over ``n`` rounds. Variants run in rounds (order rotated
    each round) so that a slow spell on a shared machine hits all of them alike; the untimed warm-up
    lasts ``warmup`` rounds and at least ``warmup_s`` seconds (a fresh process's first steps are slow)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    totals, r, t_start = [0.0] * len(steps), 0, time.perf_counter()
    bar = tqdm(total=n, desc="warm-up", leave=False, dynamic_ncols=True)
    while r < warmup or time.perf_counter() - t_start < warmup_s or bar.n < n:
        timed = r >= warmup and time.perf_counter() - t_start >= warmup_s
        bar.set_description("timing" if timed else "warm-up")
        for j in [(r + k) % len(steps) for k in range(len(steps))]:
            sync()
            t0 = time.perf_counter()
            steps[j]()
            sync()
            totals[j] += (time.perf_counter() - t0) if timed else 0.0
        r += 1
        bar.update(int(timed))
    bar.close()
    return [t / n for t in totals]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides are section.key=value pairs, as for `sedlm train`.",
    )
    ap.add_argument(
        "--config", default="tiny", help="bundled config name (tiny, sed-s, ...) or YAML path (default: tiny)"
    )
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant (default: 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds of all variants before timing (default: 3)")
    ap.add_argument("--warmup-seconds", type=float, default=10.0, help="minimum warm-up time (default: 10)")
    ap.add_argument("--batch-size", type=int, help="batch size B (default: the config's train.batch_size)")
    ap.add_argument("--seq-len", type=int, help="sequence length L (default: the config's data.seq_len)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default: cpu)")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights, batch and diffusion noise (default: 0)")
    ap.add_argument("--name", help="results name (default: train-throughput-<config>)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. model.n_layers=2")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    device = setup_device(ap, args.device, args.threads)
    name = args.name or f"train-throughput-{Path(args.config).stem}"

    cfg = load(args)
    B, L, V = cfg.train.batch_size, cfg.data.seq_len, cfg.model.vocab_size
    g = torch.Generator().manual_seed(args.seed)
    table = torch.randn(V, cfg.model.d_embed, generator=g)  # (V, De), normalised by the model
    ids = torch.randint(V, (B, L), generator=g).to(device)  # (B, L), the same batch for every variant
    torch.manual_seed(args.seed)
    # One model and optimiser shared by all variants: the cost of a step does not depend on the
    # weights' values, and four copies of a large model with AdamW state would not fit.
    model = SEDDenoiser.from_config(cfg, table).to(device).train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps = [
        make_step(v, m, model, opt, cfg, ids, torch.Generator(device=device).manual_seed(args.seed))
        for v, m in VARIANTS
    ]  # a generator each, so every variant sees the same t / noise / coin draws
    print(
        f"{args.config}: {params / 1e6:.2f}M parameters, batch {B} x {L}, {args.warmup} + {args.steps} rounds "
        f"of {len(VARIANTS)} steps on {device}",
        file=sys.stderr,
    )
    secs = time_interleaved(steps, args.steps, args.warmup, args.warmup_seconds, device)
    rows = [
        {
            "variant": v,
            "self_cond": m,
            "batch_size": B,
            "seq_len": L,
            "params": params,
            "seconds_per_step": round(sps, 5),
            "tokens_per_s": round(B * L / sps, 1),
            "cost_vs_plain": round(sps / secs[0], 3),
        }  # VARIANTS[0] is the plain step
        for (v, m), sps in zip(VARIANTS, secs)
    ]

    publish(name, "train_throughput.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
