"""Few-step students against their teacher and the AR baseline: quality per network call, and speed.

1. Distils the teacher checkpoint (``sedlm distill``): progressive distillation from a 64-step grid down to
   1 step (every round's student kept: 32, 16, 8, 4, 2, 1 steps) and consistency distillation to 4 steps
   on the 64-step grid. Student training cost is reported as optimiser steps and minutes, and as a
   fraction of the teacher's own training time.
2. Scores, on one judge and the same harness as ``sedlm eval`` (N unconditional samples cut to equal
   length, judge NLL and per-sample unigram entropy with bootstrap 95% CIs): the teacher with ancestral
   sampling at 1000 steps (the reference) and DDIM at 4, 8 and 64 steps; every student at its own
   step count; the AR baseline; and real held-out text (the data row).
3. Times, on this machine in this run: seconds per 128-token sample at batch 1 and tokens/s at batch 32,
   for the 4-step student, the teacher at 1000 ancestral steps and the AR baseline with its KV cache.

Rerun (writes benchmarks/results/distill-<name>.{json,md,png}; ~40 min on 2 cores):
    python benchmarks/distill.py --teacher runs/compare/sed --ar runs/compare/ar
    python benchmarks/distill.py --students runs/distill --speed skip      # score now, keep the students ...
    python benchmarks/distill.py --students runs/distill --speed only      # ... and time them on an idle machine
    python benchmarks/distill.py --teacher runs/compare/sed --ar runs/compare/ar --n 64 --steps-per-round 50 # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import RESULTS_DIR, command_line, publish, run_main  # noqa: E402
from sedlm.eval.results import markdown_table, write_results  # noqa: E402

COLUMNS = [
    "method",
    "sampler",
    "nfe",
    "n_samples",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "n_short",
    "mean_sample_tokens",
    "student_optimizer_steps",
    "distill_minutes",
    "cost_vs_teacher",
    "seconds_per_sample_b1",
    "tokens_per_s_b32",
]
SPEED_LEN = 128


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--teacher", default="runs/compare/sed", help="SED teacher checkpoint (default: runs/compare/sed)")
    ap.add_argument("--ar", default="runs/compare/ar", help="AR checkpoint of the same size (default: runs/compare/ar)")
    ap.add_argument("--judge", default="smollm2", help="judge LM (default: smollm2)")
    ap.add_argument("--n", type=int, default=256, help="samples per row (default: 256)")
    ap.add_argument("--steps-per-round", type=int, default=300, help="distillation steps per round (default: 300)")
    ap.add_argument(
        "--teacher-steps",
        type=int,
        default=64,
        help="the first progressive grid and the consistency grid, per block for a block teacher (default: 64)",
    )
    ap.add_argument(
        "--teacher-ddim",
        default="4,8,64",
        help="comma-separated DDIM step counts the teacher is scored at (per block for a block teacher)",
    )
    ap.add_argument(
        "--light",
        action="store_true",
        help="progressive students only, and no 1000-step ancestral teacher row (a smaller run)",
    )
    ap.add_argument("--students", help="folder to keep the students in (default: a temporary one)")
    ap.add_argument("--name", default="shakespeare", help="results name: distill-<name> (default: shakespeare)")
    ap.add_argument(
        "--speed",
        choices=("run", "skip", "only"),
        default="run",
        help="time the samplers after scoring (run), not at all (skip), or only time them, filling the "
        "speed columns of the last results file with the students kept in --students (only); "
        "timings want an otherwise idle machine (default: run)",
    )
    args = ap.parse_args(argv)
    for path in (args.teacher, args.ar):
        if not Path(path, "config.json").is_file():
            ap.error(f"'{path}' is not a checkpoint folder (train one with `sedlm bench compare` or `sedlm train`)")
    if args.n < 2 or args.steps_per_round < 1:
        ap.error("--n must be at least 2 and --steps-per-round at least 1")

    from sedlm.api import load_pretrained
    from sedlm.data.dataset import prepare_data
    from sedlm.distill import DistillConfig, distill
    from sedlm.eval.harness import evaluate_model
    from sedlm.eval.judge import get_judge

    if args.speed == "only":
        if not args.students:
            ap.error("--speed only times the students kept by an earlier run: pass its --students folder")
        path = RESULTS_DIR / f"distill-{args.name}.json"
        if not path.is_file():
            ap.error(f"{path} does not exist; run the benchmark first")
        earlier = json.loads(path.read_text())
        rows = earlier["rows"]
        time_rows(rows, Path(args.students), args.teacher, args.ar, with_teacher=not args.light)
        command = f"{earlier['command'].split('; then ')[0]}; then {command_line('distill.py')}"
        write_results(f"distill-{args.name}", command, rows, COLUMNS, RESULTS_DIR)
        print(markdown_table(rows, COLUMNS))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        students = Path(args.students or tmp)
        prog, cons = students / "progressive", students / "consistency"
        if not (prog / "distill.json").is_file():
            distill(
                args.teacher,
                prog,
                DistillConfig(
                    "progressive", nfe=1, teacher_steps=args.teacher_steps, steps_per_round=args.steps_per_round
                ),
                save_rounds=True,
            )
        if not args.light and not (cons / "distill.json").is_file():
            distill(
                args.teacher,
                cons,
                DistillConfig(
                    "consistency", nfe=4, teacher_steps=args.teacher_steps, steps_per_round=2 * args.steps_per_round
                ),
            )
        prog_rec = json.loads((prog / "distill.json").read_text())
        cons_rec = None if args.light else json.loads((cons / "distill.json").read_text())

        teacher = load_pretrained(args.teacher)
        data = prepare_data(teacher.config.data, tokenizer=teacher.tokenizer)
        judge = get_judge(args.judge)
        rows, data_row = [], None

        def score(model, label: str, extra: dict | None = None, **opts) -> dict:
            nonlocal data_row
            (row, drow), _ = evaluate_model(
                model, data, judge=judge, n=args.n, seed=0, label=label, min_mauve=10**9, keep_short=True, **opts
            )
            data_row = data_row or drow
            row = {"method": label, **{k: row.get(k) for k in COLUMNS if k in row}, **(extra or {})}
            rows.append(row)
            print(json.dumps(row), flush=True)
            return row

        bs, L = teacher.config.diffusion.block_size, teacher.config.data.seq_len
        blocks = L // bs if 0 < bs < L else 1  # a block teacher's steps below are per block (the harness divides)
        if not args.light:
            score(teacher, "teacher", sampler="ddpm", steps=1000)
        for k in (int(v) for v in args.teacher_ddim.split(",") if v):
            score(teacher, "teacher", sampler="ddim", steps=k * blocks)
        done = 0
        for r in prog_rec["rounds"]:
            done += r["optimizer_steps"]
            folder = prog if r["student_steps"] == 1 else prog / f"round-{r['student_steps']}"
            score(
                load_pretrained(folder),
                "progressive student",
                {
                    "student_optimizer_steps": done,
                    "distill_minutes": round(prog_rec["minutes"] * done / prog_rec["student_optimizer_steps"], 2),
                    "cost_vs_teacher": _cost(prog_rec, done),
                },
            )
        if cons_rec is not None:
            score(
                load_pretrained(cons),
                "consistency student",
                {
                    "student_optimizer_steps": cons_rec["student_optimizer_steps"],
                    "distill_minutes": cons_rec["minutes"],
                    "cost_vs_teacher": cons_rec.get("cost_vs_teacher"),
                },
            )
        score(load_pretrained(args.ar), "ar")
        rows.append({"method": "data", **{k: data_row.get(k) for k in COLUMNS if k in data_row}})
        if args.speed == "run":
            time_rows(rows, students, args.teacher, args.ar, with_teacher=not args.light)
    publish(f"distill-{args.name}", "distill.py", rows, COLUMNS)
    plot(rows, RESULTS_DIR / f"distill-{args.name}.png")
    return 0


def time_rows(rows: list[dict], students: Path, teacher: str, ar: str, with_teacher: bool = True) -> None:
    """Seconds per 128-token sample at batch 1 and tokens/s at batch 32 on this machine, now: the 1-, 2- and
    4-step progressive students (per block for a block teacher), the teacher at 1000 ancestral steps (spent
    over the blocks for a block teacher), the AR baseline with its KV cache."""
    from sedlm.api import load_pretrained
    from sedlm.eval.harness import generation_seconds
    from sedlm.sampling.blocks import per_block_steps

    cfg = load_pretrained(teacher).config
    speed = {
        ("progressive student", 1): (students / "progressive", {}),
        ("progressive student", 2): (students / "progressive" / "round-2", {}),
        ("progressive student", 4): (students / "progressive" / "round-4", {}),
        ("teacher", 1000): (
            teacher,
            {"sampler": "ddpm", "steps": per_block_steps(1000, cfg.diffusion.block_size, cfg.data.seq_len)},
        ),
        ("ar", None): (ar, {}),
    }
    if not with_teacher:
        del speed[("teacher", 1000)]
    speed = {k: v for k, v in speed.items() if Path(v[0], "config.json").is_file()}  # rounds a short grid lacks
    bs = cfg.diffusion.block_size
    blocks = cfg.data.seq_len // bs if 0 < bs < cfg.data.seq_len else 1  # a row's nfe counts every block's calls
    for (label, nfe), (path, opts) in speed.items():
        model = load_pretrained(path)
        b1 = generation_seconds(model, 1, SPEED_LEN, **opts)
        b32 = generation_seconds(model, 32, SPEED_LEN, **opts)
        for row in rows:
            per_block = per_block_steps(nfe, bs, cfg.data.seq_len) if label == "teacher" else nfe  # students: per block
            per_row = {per_block * blocks} if nfe else set()
            if row["method"] == label and (nfe is None or row["nfe"] in per_row):
                row.update(seconds_per_sample_b1=round(b1, 4), tokens_per_s_b32=round(32 * SPEED_LEN / b32, 1))
        print(
            f"{label}: {b1:.3f} s per {SPEED_LEN}-token sample at batch 1, {32 * SPEED_LEN / b32:,.0f} tokens/s at 32"
        )


def _cost(record: dict, steps_done: int) -> float | None:
    """Share of the teacher's training time spent on the first ``steps_done`` student steps."""
    if not record.get("teacher_minutes"):
        return None
    return round(record["minutes"] * steps_done / record["student_optimizer_steps"] / record["teacher_minutes"], 3)


def plot(rows: list[dict], path: Path) -> None:
    """Judge NLL and entropy against network calls per sample (log scale), with CIs; AR and data as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sedlm.eval.results import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("judge_nll", "unigram_entropy")):
        for label, marker in (("teacher", "o"), ("progressive student", "s"), ("consistency student", "^")):
            scored = (r for r in rows if r["method"] == label and r.get(key) is not None)  # not all samples short
            pts = sorted(scored, key=lambda r: r["nfe"])
            if not pts:
                continue
            xs, ys = [r["nfe"] for r in pts], [r[key] for r in pts]
            err = [
                [y - r[f"{key}_ci95"][0] for y, r in zip(ys, pts)],
                [r[f"{key}_ci95"][1] - y for y, r in zip(ys, pts)],
            ]
            ax.errorbar(xs, ys, yerr=err, marker=marker, capsize=2, label=label, ls="-" if label != "teacher" else ":")
        for label, style in (("ar", "--"), ("data", "-.")):
            ref = next((r for r in rows if r["method"] == label), None)
            if ref:
                ax.axhline(ref[key], color="grey", ls=style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("network calls per sample")
        ax.set_ylabel(
            {"judge_nll": "judge NLL (nats/token)", "unigram_entropy": "unigram entropy per sample (bits)"}[key]
        )
        ax.legend(fontsize=8)
    fig.suptitle("few-step students vs teacher (95% bootstrap CIs)")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    run_main(main)
