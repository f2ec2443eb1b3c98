"""The quickstart's targets, measured: real words, judge NLL against AR trained the same way, entropy against data.

Runs ``sedlm quickstart`` as a user would (the tiny config, a fixed number of steps; ``--data`` trains it on
other text instead, e.g. a book in a plain-text file), trains an autoregressive model of matched size
the same way (same data, tokenizer, steps, batch and learning rate), draws ``--n`` samples from each with
its shipped sampling settings, and scores both and real held-out text with one judge, every set cut to
the same number of model tokens. The targets:

    real words        >= 90% of the samples' words occur in the training text
    judge NLL         SED within 10% of the AR model's
    entropy           SED's mean per-sample unigram entropy (model tokens) within 5% of real text's

    python benchmarks/quickstart_targets.py                                   # the default corpus, ~25 min
    python benchmarks/quickstart_targets.py --data my_book.txt --name quickstart-book data.val_fraction=0.2
    python benchmarks/quickstart_targets.py --write-book runs/book.txt --name quickstart-book data.val_fraction=0.2

No novel ships in the installed packages, so ``--write-book PATH`` stands in for a user's book: it writes
the five longest works of the bundled Shakespeare corpus (about 146,000 words, a novel's length) to one
plain-text file and trains on that file, as ``sedlm train --data PATH`` would. A book needs a larger
validation share than the default (``data.val_fraction=0.2``): the harness takes 2 x ``--n`` rows of
held-out text, as references and as the data row.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import add_judged_run_options, publish, run_main  # noqa: E402

COLUMNS = [
    "method",
    "knob",
    "value",
    "data",
    "params",
    "train_steps",
    "train_minutes",
    "quickstart_minutes",
    "eval_tokens",
    "n_short",
    "n_samples",
    "judge_nll",
    "judge_nll_ci95",
    "nll_vs_ar",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "entropy_vs_data",
    "real_word_share",
    "val_loss",
    "val_loss_kind",
    "targets_met",
]
TARGETS = {"real_word_share": 0.90, "nll_vs_ar": 1.10, "entropy_vs_data": 0.05}


def targets_met(row: dict[str, Any]) -> str:
    """Which of the three targets a SED row meets, e.g. ``real words no, NLL yes, entropy no``."""
    ok = {
        "real words": row["real_word_share"] >= TARGETS["real_word_share"],
        "NLL": row["nll_vs_ar"] <= TARGETS["nll_vs_ar"],
        "entropy": abs(row["entropy_vs_data"]) <= TARGETS["entropy_vs_data"],
    }
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in ok.items())


def train_minutes(run: Path) -> float:
    """Training wall time of a run, from the last ``elapsed_s`` in its metrics log."""
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return round(max(json.loads(line).get("elapsed_s", 0.0) for line in lines if line.strip()) / 60, 2)


def measure(
    steps: int,
    n: int,
    eval_tokens: int,
    judge: Any,
    runs: Path,
    overrides: list[str],
    frontier: bool = False,
    reuse: bool = False,
) -> list[dict[str, Any]]:
    """Run the quickstart into ``runs/sed``, train AR the same way into ``runs/ar`` (``reuse``: score the
    runs already there), and return the sed, ar and data rows with the ratios the targets are stated in;
    ``frontier`` adds a row per other value of each family's temperature knob (SED: score temperature)."""
    from sedlm.api import load_pretrained
    from sedlm.bench.compare import default_knob, frontier_points
    from sedlm.bench.systems import match_width, param_count
    from sedlm.config import apply_overrides
    from sedlm.data.dataset import prepare_data
    from sedlm.eval.harness import evaluate_model
    from sedlm.quickstart import quickstart
    from sedlm.train.checkpoint import is_checkpoint
    from sedlm.train.trainer import train

    reuse = reuse and is_checkpoint(runs / "sed") and is_checkpoint(runs / "ar")
    summary = None if reuse else quickstart(runs / "sed", steps=steps, force=True, overrides=overrides)
    sed = load_pretrained(runs / "sed")
    data = prepare_data(sed.config.data, tokenizer=sed.tokenizer)
    ar_cfg = sed.config.copy()
    ar_cfg.family, ar_cfg.embed.kind, ar_cfg.embed.path = "ar", "random", ""
    params = {"sed": param_count(sed.config.copy(), data)}
    params["ar"] = match_width(ar_cfg, params["sed"], data)
    if not reuse:
        shutil.rmtree(runs / "ar", ignore_errors=True)
        train(ar_cfg, runs / "ar", data=data, log=lambda s: None)

    rows: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for method, model in (("sed", sed), ("ar", load_pretrained(runs / "ar"))):
        # a reused run samples with this command's sample.* settings, not the ones saved with it
        apply_overrides(model.config, [o for o in overrides if o.startswith("sample.")])
        run = {
            "data": sed.config.data.source,
            "params": params[method],
            "train_steps": model.config.train.max_steps,
            "train_minutes": train_minutes(runs / method),
        }
        knob, value = default_knob(model)
        (row, data_row), _ = evaluate_model(
            model, data, judge=judge, n=n, seed=0, eval_tokens=eval_tokens, label=method
        )
        rows.append({**row, **run, "knob": knob, "value": value})
        if frontier:  # every point but the default's, which is the row above (AR's frontier holds top_p=1, so
            # its point at the default temperature differs from the row, which samples with the config's top-p)
            points += [
                {**point, **run, "knob": knob, "value": value}
                for knob, value, point in frontier_points(
                    model, row, data, judge, n=n, eval_tokens=eval_tokens, label=method
                )
                if point is not row
            ]
    real = {**data_row, "method": "data", "data": sed.config.data.source}
    ar_nll = rows[1]["judge_nll"]
    for row in (*rows, *points):
        row["nll_vs_ar"] = round(row["judge_nll"] / ar_nll, 4)
        row["entropy_vs_data"] = round(row["unigram_entropy"] / real["unigram_entropy"] - 1, 4)
        if row["method"] == "sed":
            row["targets_met"] = targets_met(row)
    rows[0]["quickstart_minutes"] = round(summary["seconds"] / 60, 2) if summary else None
    return [*rows, real, *points]


def write_book(path: Path, works: int = 5) -> str:
    """Write the ``works`` longest bundled Shakespeare works to ``path`` (blank lines between paragraphs,
    as a user's .txt file holds them; temp file, then rename) and return the path as a data source."""
    import os

    from sedlm.data.corpora import shakespeare_documents

    docs = sorted(shakespeare_documents(), key=lambda d: len(d.split()), reverse=True)[:works]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        default="",
        help="train on this source instead of the quickstart's corpus (a text file, a folder, corpus:NAME or hf:NAME)",
    )
    ap.add_argument(
        "--write-book",
        metavar="PATH",
        default="",
        help="write the five longest bundled Shakespeare works to PATH and train on that file",
    )
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the quickstart's)")
    ap.add_argument("--eval-tokens", type=int, default=51, help="model tokens per sample and reference (default: 51)")
    add_judged_run_options(ap, "runs/quickstart-targets", "quickstart-targets")
    ap.add_argument(
        "--frontier",
        action="store_true",
        help="also score each model at the other values of its temperature knob (SED: score temperature)",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="score the runs already in --runs-dir instead of training (sample.* overrides still apply)",
    )
    ap.add_argument("overrides", nargs="*", help="config overrides for both runs (section.key=value)")
    args = ap.parse_args()
    from sedlm.errors import SedlmError
    from sedlm.eval.judge import get_judge
    from sedlm.quickstart import DEFAULT_STEPS

    if args.n < 1 or args.eval_tokens < 1:
        raise SedlmError("--n and --eval-tokens must be at least 1")
    if args.write_book and args.data:
        raise SedlmError("--write-book writes the file to train on; drop --data")
    source = write_book(Path(args.write_book)) if args.write_book else args.data
    over = [*([f"data.source={source}"] if source else []), *args.overrides]
    rows = measure(
        args.steps or DEFAULT_STEPS,
        args.n,
        args.eval_tokens,
        get_judge(args.judge),
        Path(args.runs_dir),
        over,
        frontier=args.frontier,
        reuse=args.reuse,
    )
    publish(args.name, "quickstart_targets.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
