"""The likelihood of held-out text for trained runs at several training seeds: each system's exact NLL or bound
per seed, and its mean and seed spread beside the per-run standard error.

Every run scores the same validation rows of its corpus (256 rows of the row length, no random padding, all
tokens counted; ``sedlm.eval.likelihood``), so runs compare like for like. A run's system is its folder name
without the ``-seedN`` suffix that ``sedlm bench compare --seeds`` gives seeds after the first.
Writes ``<name>.json`` (one row per run) and ``<name>-seeds.json`` (per system: mean, seed sd and range, mean SE).

Rerun (256 rows per run), e.g. LangFlow's bound against MDLM's at three seeds:
    OMP_NUM_THREADS=1 python benchmarks/likelihood_seeds.py --runs runs/seeds/mdlm,runs/seeds/mdlm-seed1,\
runs/seeds/mdlm-seed2,runs/seeds/langflow,runs/seeds/langflow-seed1,runs/seeds/langflow-seed2,runs/seeds/elf,\
runs/seeds/elf-seed1,runs/seeds/elf-seed2 --name likelihood-2026
With ``--estimator ode`` embedding-diffusion runs are scored by LangFlow's probability-flow ODE estimate
instead (``sedlm eval --nll --estimator ode``; 128 Euler steps of a forward and a backward pass each).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_folders, run_main, setup_device  # noqa: E402

COLUMNS = ["method", "seed", "family", "nll_kind", "nll", "nll_se", "rows", "tokens_per_row", "trained_pad_fraction"]
SEED_COLUMNS = ["method", "seeds", "nll_kind", "nll_mean", "nll_seed_sd", "nll_seed_range", "nll_se_mean"]


def system_of(run: Path) -> str:
    """The system a run folder holds: its name without the ``-seedN`` of later seeds."""
    return re.sub(r"-seed\d+$", "", run.name)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system, over its seeds: mean NLL, seed sd and range, and the mean per-run standard error."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == method]
        nll = [r["nll"] for r in runs]
        out.append(
            {
                "method": method,
                "seeds": len(runs),
                "nll_kind": "/".join(sorted({r["nll_kind"] for r in runs})),
                "nll_mean": round(statistics.fmean(nll), 4),
                "nll_seed_sd": round(statistics.stdev(nll), 4) if len(nll) > 1 else None,
                "nll_seed_range": [round(min(nll), 4), round(max(nll), 4)],
                "nll_se_mean": round(statistics.fmean(r["nll_se"] for r in runs), 4),
            }
        )
    return out


def main() -> int:
    from sedlm.api import load_pretrained
    from sedlm.eval.likelihood import likelihood

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated run folders (seeds of one or more systems)")
    ap.add_argument("--rows", type=int, default=256, help="validation rows scored per run (default: 256)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--name", default="likelihood-seeds", help="results name (default: likelihood-seeds)")
    ap.add_argument(
        "--estimator",
        choices=("bound", "ode"),
        default="bound",
        help="each family's own figure, or LangFlow's probability-flow ODE estimate for embedding diffusion "
        "(default: bound)",
    )
    ap.add_argument("--ode-steps", type=int, default=128, help="Euler steps of the ODE estimate (default: 128)")
    args = ap.parse_args()
    setup_device(ap, "cpu", args.threads)
    runs = run_folders(args.runs)
    rows = []
    for run in runs:
        model = load_pretrained(run)
        res = likelihood(model, rows=args.rows, seed=0, estimator=args.estimator, ode_steps=args.ode_steps)
        row = {"method": system_of(run), "seed": model.config.train.seed, "family": model.config.family, **res}
        rows.append({k: row.get(k) for k in COLUMNS})
        print(f"{run}: {res['nll']:.4f} +- {res['nll_se']:.4f} nats/token ({res['nll_kind']})", flush=True)
    publish(args.name, "likelihood_seeds.py", rows, COLUMNS)
    publish(f"{args.name}-seeds", "likelihood_seeds.py", summarise(rows), SEED_COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
