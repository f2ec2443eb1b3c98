"""Does the loss curve depend on the number of processes? One process vs several (torchrun, gloo on CPU).

Trains the same config with the same global batch and micro-batch size on 1 process (which
accumulates every micro-batch) and on ``--processes`` processes launched by ``torchrun``
(each takes its share), then compares the logged losses step by step. Both runs use one
thread per process, as torchrun sets it.

Rerun (writes benchmarks/results/process-count.{json,md}):
    python benchmarks/process_count.py                       # tiny config, 200 steps, 1 vs 2 processes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_main  # noqa: E402

COLUMNS = [
    "processes",
    "micro_batches_per_process",
    "batch_size",
    "steps",
    "final_loss",
    "final_val_loss",
    "max_abs_loss_diff",
    "max_rel_loss_diff",
    "tokens_per_s",
    "wall_s",
]


def run(processes: int, out: Path, args, overrides: list[str]) -> tuple[list[dict], float]:
    launcher = (
        [sys.executable]
        if processes == 1
        else [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc_per_node={processes}"]
    )
    cmd = [
        *launcher,
        "-m",
        "sedlm",
        "train",
        "--config",
        args.config,
        "--data",
        args.data,
        "--out",
        str(out),
        *overrides,
    ]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()], time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", help="config (default: tiny)")
    ap.add_argument("--data", default="corpus:shakespeare", help="data source (default: corpus:shakespeare)")
    ap.add_argument("--processes", type=int, default=2, help="processes of the distributed run (default: 2)")
    ap.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
    ap.add_argument("--batch-size", type=int, default=16, help="global batch in rows (default: 16)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. model.n_layers=2")
    args = ap.parse_args(argv)
    micro = args.batch_size // args.processes
    overrides = [
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.micro_batch_size={micro}",
        "train.log_every=1",
        "train.device=cpu",
        "train.max_minutes=0",
        *args.overrides,
    ]
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in (1, args.processes):
            log, wall = run(p, Path(tmp) / f"p{p}", args, overrides)
            curves[p] = [r["loss"] for r in log]
            vals = [r["val_loss"] for r in log if "val_loss" in r]
            diffs = [abs(a - b) for a, b in zip(curves[p], curves[1])]
            rows.append(
                {
                    "processes": p,
                    "micro_batches_per_process": args.batch_size // (p * micro),
                    "batch_size": args.batch_size,
                    "steps": len(log),
                    "final_loss": log[-1]["loss"],
                    "final_val_loss": vals[-1] if vals else None,
                    "max_abs_loss_diff": max(diffs),
                    "max_rel_loss_diff": max(d / abs(b) for d, b in zip(diffs, curves[1])),
                    "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in log[5:] or log), 1),
                    "wall_s": round(wall, 1),
                }
            )
    publish("process-count", "process_count.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
