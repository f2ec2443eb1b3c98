"""Generation latency of SED against the AR baseline of the same size: seconds per sample and tokens/s.

For each family (sed, ar) one network of the config's size (sed-s by default: 12 layers, d_model 896,
L = 256, vocabulary 32,768) is built with random weights (latency does not depend on them) and wrapped
as a ``PretrainedLM``, so generation runs through each family's own ``generate`` exactly as
``sedlm sample`` does: AR decodes token by token with its KV cache (nucleus sampling in float64), SED runs
its sampler over the whole row (unconditional, so one network call per step). Rows are written to their
full length. On CUDA the networks run under bf16 autocast (``sample.precision=auto``, what ``sedlm sample``
does there; pass ``sample.precision=fp32`` to time fp32); with ``--compile on`` the network is wrapped in
``torch.compile(dynamic=True)`` first (the same wrapper for every family; compilation happens in the
warm-up call, which is not timed).

SED settings (``--sed``, SAMPLER:STEPS): the SED paper's reference, 1000 ancestral (ddpm) steps; DDIM at
64 steps; and DDIM at 4, 2 and 1 steps, which is what a progressive-distillation student of this network
costs per sample (``sedlm distill`` students are the same network run on a shorter grid; their quality is
measured on CPU-scale models in ``distill-shakespeare``, not here).

Each point: one untimed warm-up call, then the median of ``--repeats`` timed calls (device synchronised).
``sed_over_ar_latency`` = the row's seconds per batch / AR's at the same batch size and compile setting.

Rerun (writes benchmarks/results/gpu-generation-<config>.{json,md}):
    python benchmarks/gpu_generation.py --device cuda
    python benchmarks/gpu_generation.py --device cpu --config tiny --compile off --sed ddim:4 --batch-sizes 1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402

from benchmarks.common import (
    StubTokenizer,
    gpu_size_parser,
    median_time,
    publish,
    random_network,
    run_main,
    setup_device,
)  # noqa: E402
from sedlm.config import Config, load_config, resolve_config_path  # noqa: E402
from sedlm.devices import generation_autocast  # noqa: E402
from sedlm.pretrained import PretrainedLM  # noqa: E402

COLUMNS = [
    "method",
    "sampler",
    "steps",
    "nfe",
    "compile",
    "precision",
    "batch_size",
    "seq_len",
    "params",
    "seconds_per_batch",
    "seconds_per_sample",
    "ms_per_token",
    "tokens_per_s",
    "sed_over_ar_latency",
]


def parse_sed(items: list[str]) -> list[tuple[str, int]]:
    """``["ddpm:1000", "ddim:4"]`` -> [("ddpm", 1000), ("ddim", 4)]."""
    out = []
    for item in items:
        name, _, k = item.partition(":")
        if not name or not k.isdigit() or int(k) < 1:
            raise ValueError(f"--sed takes SAMPLER:STEPS with STEPS >= 1, got '{item}'")
        out.append((name, int(k)))
    return out


def build_lm(cfg: Config, method: str, device: torch.device, compile: bool) -> PretrainedLM:
    """A randomly initialised network of ``method`` as a PretrainedLM (optionally compiled)."""
    model = random_network(cfg, method).to(device).eval()
    cfg.family = method
    lm = PretrainedLM(cfg, model, StubTokenizer())
    if compile:
        lm.model = torch.compile(model, dynamic=True)
    return lm


def main(argv: list[str] | None = None) -> int:
    ap = gpu_size_parser(__doc__)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32], help="rows per call (default: 1 32)")
    ap.add_argument(
        "--sed",
        nargs="+",
        default=["ddpm:1000", "ddim:64", "ddim:4", "ddim:2", "ddim:1"],
        help="SED points as SAMPLER:STEPS (default: ddpm:1000 ddim:64 ddim:4 ddim:2 ddim:1)",
    )
    ap.add_argument("--compile", choices=["both", "on", "off"], default="both", help="torch.compile settings to run")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per point; the median is kept (default: 3)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or min(args.batch_sizes) < 1:
        ap.error("--repeats and --batch-sizes must be >= 1")
    try:
        sed_points = parse_sed(args.sed)
    except ValueError as e:
        ap.error(str(e))
    device = setup_device(ap, args.device, args.threads)
    overrides = [f"model.vocab_size={args.vocab_size}", f"data.vocab_size={args.vocab_size}", *args.overrides]
    cfg_path = resolve_config_path(args.config)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows: list[dict] = []
    for compile in {"both": [False, True], "on": [True], "off": [False]}[args.compile]:
        points = [("ar", None, None), *(("sed", s, k) for s, k in sed_points)]
        lms: dict[str, PretrainedLM] = {}
        ar_seconds: dict[int, float] = {}
        for method, sampler, steps in points:
            if method not in lms:
                lms[method] = build_lm(load_config(cfg_path, overrides), method, device, compile)
            lm, L = lms[method], lms[method].config.data.seq_len
            autocast = generation_autocast(device, lm.config.sample.precision)  # what generate_ids runs in
            opts = {} if sampler is None else {"sampler": sampler, "steps": steps}
            for B in args.batch_sizes:

                def call(lm=lm, B=B, L=L, opts=opts) -> None:
                    lm.generate_ids(n=B, seq_len=L, seed=0, **opts)

                sec = median_time(call, device, args.repeats)
                if method == "ar":
                    ar_seconds[B] = sec
                row = {
                    "method": method if sampler is None else f"{method} {sampler} {steps}",
                    "sampler": sampler or "ancestral (top-p 0.95, KV cache)",
                    "steps": steps or L,
                    "nfe": steps or L,
                    "compile": compile,
                    "precision": "bf16" if isinstance(autocast, torch.autocast) else "fp32",
                    "batch_size": B,
                    "seq_len": L,
                    "params": sum(p.numel() for p in lm.model.parameters()),
                    "seconds_per_batch": round(sec, 5),
                    "seconds_per_sample": round(sec / B, 5),
                    "ms_per_token": round(1000 * sec / (B * L), 4),
                    "tokens_per_s": round(B * L / sec, 1),
                    "sed_over_ar_latency": round(sec / ar_seconds[B], 3) if B in ar_seconds else None,
                }
                rows.append(row)
                print(
                    f"{row['method']} compile={compile} B={B}: {sec:.4f} s per batch, {row['tokens_per_s']:,.0f} "
                    f"tokens/s, x{row['sed_over_ar_latency']} AR",
                    file=sys.stderr,
                    flush=True,
                )
        del lms
        if device.type == "cuda":
            torch.cuda.empty_cache()
    publish(args.name or f"gpu-generation-{Path(args.config).stem}", "gpu_generation.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
