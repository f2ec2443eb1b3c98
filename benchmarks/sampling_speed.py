"""Sampling speed: seconds per denoising step of SED samplers, per config and batch size.

For each config a denoiser with random weights over a random embedding table (vocabulary
data.vocab_size, L = data.seq_len) is built, and for each batch size B and sampler a call of
``sedlm.sampling.generate.sample_ids(model, n=B, seq_len=L, steps=K, sampler=...)`` is timed
with ``time.perf_counter`` after an untimed one-step warm-up call (the median of --repeats
calls is kept). Rows give seconds_per_step = total / K (one network call per step, no
guidance), seconds_per_sample = total / B and tokens_per_s = B * L / total, all at K steps.
Weights are random: speed does not depend on them.

Steps: ``--steps 20`` applies to every config; ``NAME=K`` sets one config's K. The default
``20 sed-s=5`` keeps SED-S (~140M parameters, L = 256) to a few minutes on a 2-core CPU.

Rerun (writes benchmarks/results/sampling-speed.json and .md):
    python benchmarks/sampling_speed.py
    python benchmarks/sampling_speed.py --configs tiny --steps 50 --batch-sizes 1 8 32
    python benchmarks/sampling_speed.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.common import publish, run_main, setup_device, timed_call  # noqa: E402
from sedlm.config import load_config, resolve_config_path  # noqa: E402
from sedlm.model.denoiser import SEDDenoiser  # noqa: E402
from sedlm.sampling.generate import sample_ids  # noqa: E402

COLUMNS = [
    "config",
    "params",
    "sampler",
    "batch_size",
    "seq_len",
    "nfe",
    "seconds_per_step",
    "seconds_per_sample",
    "tokens_per_s",
]


def steps_per_config(items: list[str], configs: list[str]) -> dict[str, int]:
    """``["20", "sed-s=5"]`` -> {"tiny": 20, "sed-s": 5}; a bare number applies to every config."""
    default, per = None, {}
    for item in items:
        name, _, k = item.rpartition("=")
        if not k.isdigit() or int(k) < 1:
            raise ValueError(f"--steps takes K or NAME=K with K >= 1, got '{item}'")
        if name:
            per[name] = int(k)
        else:
            default = int(k)
    missing = [c for c in configs if c not in per and default is None]
    if missing:
        raise ValueError(f"no step count for {', '.join(missing)}; add a bare K to --steps")
    return {c: per.get(c, default) for c in configs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["tiny", "sed-s"],
        help="bundled config names or YAML paths (default: tiny sed-s)",
    )
    ap.add_argument("--samplers", nargs="+", default=["ddpm", "ddim"], help="samplers to time (default: ddpm ddim)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="batch sizes B (default: 1 8)")
    ap.add_argument(
        "--steps",
        nargs="+",
        default=["20", "sed-s=5"],
        metavar="K|NAME=K",
        help="denoising steps K per timed call (default: 20 sed-s=5)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per row; the median is kept (default: 1)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default: cpu)")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights, table and sampling noise (default: 0)")
    ap.add_argument("--name", default="sampling-speed", help="results name (default: sampling-speed)")
    args = ap.parse_args(argv)
    try:
        steps = steps_per_config(args.steps, args.configs)
    except ValueError as e:
        ap.error(str(e))
    if min(args.batch_sizes) < 1 or args.repeats < 1:
        ap.error("--batch-sizes and --repeats must be positive")
    device = setup_device(ap, args.device, args.threads)

    rows: list[dict] = []
    for name in args.configs:
        path = resolve_config_path(name)
        base = load_config(path)
        cfg = load_config(path, [f"model.vocab_size={base.data.vocab_size}"])
        V, L, K = cfg.model.vocab_size, cfg.data.seq_len, steps[name]
        table = torch.randn(V, cfg.model.d_embed, generator=torch.Generator().manual_seed(args.seed))  # (V, De)
        torch.manual_seed(args.seed)
        model = SEDDenoiser.from_config(cfg, table).to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params / 1e6:.1f}M parameters, L = {L}, K = {K}", file=sys.stderr)
        for B in args.batch_sizes:

            def run(sampler: str, k: int, bar: tqdm | None = None) -> None:
                sample_ids(
                    model,
                    n=B,
                    seq_len=L,
                    steps=k,
                    sampler=sampler,
                    schedule=cfg.diffusion.schedule,
                    seed=args.seed,
                    callback=(lambda _: bar.update()) if bar is not None else None,
                )

            warm = timed_call(lambda: run(args.samplers[0], 1), device)  # first call pays for allocations
            print(
                f"  B = {B}: warm-up call (1 step) {warm:.2f} s; "
                f"about {warm * K * len(args.samplers) * args.repeats:.0f} s to go",
                file=sys.stderr,
            )
            for sampler in args.samplers:
                with tqdm(
                    total=K * args.repeats, desc=f"{name} {sampler} B={B}", leave=False, dynamic_ncols=True
                ) as bar:
                    total = statistics.median(
                        timed_call(lambda: run(sampler, K, bar), device) for _ in range(args.repeats)
                    )
                rows.append(
                    {
                        "config": name,
                        "params": params,
                        "sampler": sampler,
                        "batch_size": B,
                        "seq_len": L,
                        "nfe": K,
                        "seconds_per_step": round(total / K, 5),
                        "seconds_per_sample": round(total / B, 5),
                        "tokens_per_s": round(B * L / total, 1),
                    }
                )
        model = None  # free this config's weights before the next one is built

    publish(args.name, "sampling_speed.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
