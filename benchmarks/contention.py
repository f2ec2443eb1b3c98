"""Training throughput alone and beside competing CPU-bound processes, by thread count.

For each number of competitors C (default 0, 1, 2: processes spinning one core each, started before the
run and stopped after it) and each thread setting (``--threads 1``, ``--threads <all cores>`` and
``--threads auto``, the CLI's default), runs ``sedlm train`` on the tiny config in a subprocess with no
OMP_NUM_THREADS or SEDLM_THREADS in its environment, and reads its own tokens_per_s from metrics.jsonl
(the mean over logged windows after the first, so start-up and the first slow steps do not count).
Rows: competitors, threads (as asked) and threads_used (what the run chose, from its log),
tokens_per_s, and vs_idle_best = tokens_per_s / the best idle row's (the share of idle throughput kept).
Target (issue): beside one competing CPU-bound process, training keeps >= 40% of its idle throughput.

Rerun (writes benchmarks/results/contention.json and .md; ~6 minutes on 2 cores, on an otherwise idle machine):
    python benchmarks/contention.py
    python benchmarks/contention.py --competitors 0 1 --threads 1 auto --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_main  # noqa: E402
from sedlm.errors import SedlmError  # noqa: E402
from sedlm.threads import usable_cores  # noqa: E402

COLUMNS = ["competitors", "threads", "threads_used", "steps", "tokens_per_s", "vs_idle_best", "train_s"]
TRAIN = [
    "--config",
    "tiny",
    "data.max_chars=300000",
    "embed.kind=random",
    "train.log_every=10",
    "train.eval_every=100000",
    "train.checkpoint_every=100000",
]


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def train_row(threads: str, competitors: int, steps: int, workdir: Path) -> dict:
    out = workdir / f"run-{competitors}-{threads}"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SEDLM_THREADS")}
    cmd = [
        sys.executable,
        "-m",
        "sedlm",
        "train",
        *TRAIN,
        f"train.max_steps={steps}",
        "--out",
        str(out),
        "--threads",
        threads,
    ]
    busy = spinners(competitors)
    try:
        time.sleep(1.0)  # let the competitors show in the run-queue the auto setting reads
        start = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    finally:
        for p in busy:
            p.kill()
            p.wait()
    if res.returncode != 0:
        raise SedlmError(f"training failed ({res.returncode}): {res.stderr.strip()[-1500:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in rows[1:]] or [rows[-1]["tokens_per_s"]]
    used = re.search(r"(\d+) CPU thread\(s\)", res.stdout + res.stderr)
    return {
        "competitors": competitors,
        "threads": threads,
        "threads_used": int(used.group(1)) if used else None,
        "steps": steps,
        "tokens_per_s": round(sum(rates) / len(rates), 1),
        "train_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--competitors", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside the run")
    ap.add_argument(
        "--threads",
        nargs="+",
        default=["1", str(usable_cores()), "auto"],
        help="--threads settings to compare (default: 1, all cores, auto)",
    )
    ap.add_argument("--steps", type=int, default=60, help="training steps per run (default: 60)")
    args = ap.parse_args(argv)
    if args.steps < 20 or min(args.competitors) < 0:
        ap.error("--steps must be at least 20 and --competitors not negative")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.competitors:
            for t in args.threads:
                rows.append(train_row(t, c, args.steps, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    best = (
        max(r["tokens_per_s"] for r in rows if r["competitors"] == 0)
        if any(r["competitors"] == 0 for r in rows)
        else None
    )
    for r in rows:
        r["vs_idle_best"] = round(r["tokens_per_s"] / best, 3) if best else None
    publish("contention", "contention.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
