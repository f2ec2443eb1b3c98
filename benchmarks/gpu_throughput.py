"""Training throughput and model FLOPs utilisation (MFU) of SED and the AR baseline of the same size.

For each method (sed, ar) and each compile setting, one model of the config's size trains on
random token batches (B = --batch-size rows of L = data.seq_len tokens: throughput does not depend
on the text) with the training loop's own pieces: the family's loss, AdamW, bf16 autocast on CUDA
(fp32 on CPU), gradient clipping. After the warm-up (which includes compilation), ``--steps`` steps
are timed with the device synchronised.

FLOPs accounting: one training step is run under ``torch.utils.flop_counter.FlopCounterMode``,
which counts the matmul and attention FLOPs of the forward and backward passes actually executed.
With ``diffusion.self_cond=both`` (the SED paper, and the sed-s config) gradients flow through both
self-conditioning passes, so both count as useful work: SED's FLOPs per token are about twice the
AR model's. (A gradient-free first pass, ``half_nograd``, would be counted too; use ``both`` for MFU.)
MFU = FLOPs per token x tokens per second / the device's peak dense bf16 FLOP/s (H100/H200 SXM:
989 TFLOP/s; pass --peak-tflops for other devices). On a CPU no peak is known and MFU is left empty.

Rerun (writes benchmarks/results/gpu-throughput-<config>.{json,md}):
    python benchmarks/gpu_throughput.py --device cuda                         # sed-s, L = 256, bf16
    python benchmarks/gpu_throughput.py --device cpu --config tiny --compile off --steps 2 --warmup 1
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.common import StubTokenizer, gpu_size_parser, publish, random_network, run_main, setup_device  # noqa: E402
from sedlm.config import Config, load_config, resolve_config_path  # noqa: E402
from sedlm.families import get_family  # noqa: E402
from sedlm.train.distributed import Forward  # noqa: E402
from sedlm.train.rng import chunk_generator  # noqa: E402
from sedlm.train.trainer import make_optimizer  # noqa: E402

COLUMNS = [
    "method",
    "compile",
    "precision",
    "batch_size",
    "seq_len",
    "params",
    "tokens_per_s",
    "seconds_per_step",
    "gflops_per_token",
    "tflops_per_s",
    "mfu",
    "ar_over_sed_tokens_per_s",
]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build(cfg: Config, method: str, device: torch.device, compile: bool):
    model = random_network(cfg, method).to(device).train()
    opt = make_optimizer(model, cfg)
    return model, (torch.compile(model) if compile else model), opt


def make_step(cfg: Config, method: str, model, forward, opt, ids: torch.Tensor, device: torch.device):
    loss_fn = get_family(method).loss
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )

    through = Forward(forward, model)  # calls through the (compiled) module, attributes from the plain one

    def step(i: int) -> None:
        with autocast:
            loss, _ = loss_fn(through, ids, cfg, chunk_generator(device, 0, i, 0), StubTokenizer(), None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def measure(cfg: Config, method: str, compile: bool, args, device: torch.device) -> dict:
    B, L = args.batch_size, cfg.data.seq_len
    ids = torch.randint(3, cfg.model.vocab_size, (B, L), generator=torch.Generator().manual_seed(0)).to(device)
    model, forward, opt = build(cfg, method, device, compile)
    step = make_step(cfg, method, model, forward, opt, ids, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with FlopCounterMode(display=False) as counter:  # on the plain module: the same arithmetic, uncompiled
        make_step(cfg, method, model, model, opt, ids, device)(0)
    flops_per_token = counter.get_total_flops() / (B * L)
    for i in tqdm(range(args.warmup), desc=f"{method} warm-up", leave=False):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in tqdm(range(args.steps), desc=f"{method} timing", leave=False):
        step(args.warmup + i)
    sync()
    sps = (time.perf_counter() - t0) / args.steps
    tps = B * L / sps
    peak = peak_tflops(device, args.peak_tflops)
    row = {
        "method": method,
        "compile": compile,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "batch_size": B,
        "seq_len": L,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "tokens_per_s": round(tps, 1),
        "seconds_per_step": round(sps, 5),
        "gflops_per_token": round(flops_per_token / 1e9, 4),
        "tflops_per_s": round(flops_per_token * tps / 1e12, 3),
        "mfu": round(flops_per_token * tps / (peak * 1e12), 4) if peak else None,
    }
    del model, forward, opt, step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    ap = gpu_size_parser(__doc__)
    ap.add_argument("--batch-size", type=int, default=64, help="rows per step (a micro-batch; default: 64)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting (default: 20)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first, compilation included (default: 5)")
    ap.add_argument("--compile", choices=["both", "on", "off"], default="both", help="torch.compile settings to run")
    ap.add_argument("--methods", default="sed,ar", help="comma-separated families (default: sed,ar)")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s (default: known devices)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        ap.error("--steps and --batch-size must be >= 1 and --warmup >= 0")
    device = setup_device(ap, args.device, args.threads)
    cfg = load_config(resolve_config_path(args.config), [f"model.vocab_size={args.vocab_size}", *args.overrides])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    settings = {"both": [False, True], "on": [True], "off": [False]}[args.compile]
    rows = []
    for compile in settings:
        by_method = {m: measure(cfg, m, compile, args, device) for m in args.methods.split(",")}
        if "sed" in by_method and "ar" in by_method:
            ratio = round(by_method["ar"]["tokens_per_s"] / by_method["sed"]["tokens_per_s"], 3)
            for r in by_method.values():
                r["ar_over_sed_tokens_per_s"] = ratio
        rows.extend(by_method.values())
        for r in by_method.values():
            print(
                f"{r['method']} compile={compile}: {r['tokens_per_s']:,.0f} tokens/s, MFU {r['mfu']}", file=sys.stderr
            )
    publish(args.name or f"gpu-throughput-{Path(args.config).stem}", "gpu_throughput.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
