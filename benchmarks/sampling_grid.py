"""Sampling options of one trained system at several training seeds: is a sampling knob's effect larger than
the spread between training seeds, and does it beat a temperature at equal entropy?

Each ``--point`` (a set of sampling options, e.g. ``sc_weight=3`` or ``sampler=ddpm,noise_temp=0.9``) is scored
on every run in ``--runs`` (one folder per training seed, as ``sedlm bench compare --seeds`` writes them) with
the harness of the comparisons (256 samples from sampling seed 0, cut to 80% of a row, judged by SmolLM2).
Writes ``<name>.json`` (one row per run and point, with the data row), ``<name>-seeds.json`` (per point: mean,
seed spread and sample-CI width) and ``<name>.png`` (judge NLL against entropy, seed means with seed-sd bars).

Rerun, e.g. ELF's self-conditioning guidance weight at three seeds (256 samples of 200 steps per run and point):
    OMP_NUM_THREADS=1 python benchmarks/sampling_grid.py --runs runs/seeds/elf,runs/seeds/elf-seed1,\
runs/seeds/elf-seed2 --point sc_weight=3 --point sc_weight=1 --name elf-guidance
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import RESULTS_DIR, publish, run_folders, run_main, setup_device  # noqa: E402

COLUMNS = [
    "method",
    "point",
    "seed",
    "n_samples",
    "n_short",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "distinct_2",
]


def parse_point(text: str) -> dict[str, Any]:
    """``a=1,b=ddpm`` -> {"a": 1.0, "b": "ddpm"}; numbers become floats, anything else stays a string."""
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"a point is NAME=VALUE[,NAME=VALUE...] (got '{text}')")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    if not out:
        raise argparse.ArgumentTypeError("a point needs at least one NAME=VALUE")
    return out


def label(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def plot(summary: list[dict[str, Any]], data_row: dict[str, Any], path: Path, title: str) -> None:
    """Seed means of judge NLL against entropy, one point per option set, with seed-sd error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sedlm.eval.results import save_figure

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for row in summary:
        if row.get("judge_nll_mean") is None:
            continue
        ax.errorbar(
            row["unigram_entropy_mean"],
            row["judge_nll_mean"],
            xerr=row.get("unigram_entropy_seed_sd") or 0,
            yerr=row.get("judge_nll_seed_sd") or 0,
            fmt="o",
            capsize=3,
        )
        ax.annotate(row["point"], (row["unigram_entropy_mean"], row["judge_nll_mean"]), fontsize=8)
    if data_row.get("judge_nll") is not None:
        ax.plot(data_row["unigram_entropy"], data_row["judge_nll"], "k*", markersize=10, label="data")
        ax.legend()
    ax.set(xlabel="per-sample unigram entropy (bits)", ylabel="judge NLL (nats/token)", title=title)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> int:
    from sedlm.api import load_pretrained
    from sedlm.bench.seeds import SEED_COLUMNS, seed_summary
    from sedlm.data.dataset import prepare_data
    from sedlm.errors import SedlmError
    from sedlm.eval.harness import evaluate_model, scored
    from sedlm.eval.judge import get_judge

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated run folders of one system, one per training seed")
    ap.add_argument(
        "--point",
        type=parse_point,
        action="append",
        required=True,
        help="sampling options to score, NAME=VALUE[,NAME=VALUE...]; repeat for each point",
    )
    ap.add_argument("--steps", type=int, default=200, help="sampling steps (default: 200, as the comparisons)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--n", type=int, default=256, help="samples per row (default: 256)")
    ap.add_argument("--judge", default="smollm2", help="judge LM (default: smollm2)")
    ap.add_argument("--name", default="sampling-grid", help="results name (default: sampling-grid)")
    args = ap.parse_args()
    setup_device(ap, "cpu", args.threads)
    runs = run_folders(args.runs)

    if reserved := {k for p in args.point for k in p} & {"steps", "n", "seed"}:
        raise SedlmError(f"--point cannot set {', '.join(sorted(reserved))}; use the options of the same name")
    configs = [json.loads((r / "config.json").read_text()) for r in runs]  # the system, before any weights load
    systems = {c.get("recipe") or c["family"] for c in configs}
    if len(systems) > 1:
        raise SedlmError(f"--runs mixes systems ({', '.join(sorted(systems))}); give the seeds of one system")
    (system,) = systems
    judge = get_judge(args.judge)
    rows: list[dict[str, Any]] = []
    data_row: dict[str, Any] | None = None
    for run in runs:
        model = load_pretrained(run)
        data = prepare_data(model.config.data, tokenizer=model.tokenizer)
        for point in args.point:
            (row, drow), _ = evaluate_model(
                model,
                data,
                judge=judge,
                n=args.n,
                steps=args.steps,
                seed=0,
                label=system,
                keep_short=True,
                min_mauve=10**9,
                **point,
            )
            row.update(point=label(point), seed=model.config.train.seed)
            rows.append(row)
            data_row = data_row or {**drow, "point": "-"}
            print(f"{run} {label(point)}: {scored(row)}", flush=True)
    assert data_row is not None
    publish(args.name, "sampling_grid.py", [*rows, data_row], COLUMNS)
    by_point = [{**r, "method": r["point"]} for r in rows]
    summary = [{**s, "point": s["method"], "method": system} for s in seed_summary(by_point)]
    publish(f"{args.name}-seeds", "sampling_grid.py", summary, ["method", "point", *SEED_COLUMNS[1:]])
    plot(summary, data_row, RESULTS_DIR / f"{args.name}.png", f"{system}: sampling options, {len(runs)} seeds")
    return 0


if __name__ == "__main__":
    run_main(main)
