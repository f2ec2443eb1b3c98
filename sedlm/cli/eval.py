"""`sedlm eval` and `sedlm bench ...`: their options and thin wrappers over the evaluation library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sedlm.cli.flags import Number, add_option_flags, count, options_from_args, output, positive, seed
from sedlm.errors import SedlmError


def _add_judge_options(p: argparse.ArgumentParser, n_help: str) -> None:
    """Options every judged benchmark shares."""
    p.add_argument("--judge", default="smollm2", help="judge LM (default: smollm2)")
    p.add_argument("--n", type=count(), default=256, help=f"{n_help} (default: 256)")
    output(p, "--results-dir", default="benchmarks/results", help="where results files are written")


def cmd_eval(args: argparse.Namespace) -> int:
    from sedlm.api import load_pretrained
    from sedlm.eval.harness import evaluate_model
    from sedlm.eval.judge import get_judge
    from sedlm.eval.results import markdown_table
    from sedlm.io import write_atomic

    if args.nll:
        return _eval_nll(args)
    if args.data:
        raise SedlmError(
            "--data chooses the text --nll scores; sample quality is judged against the checkpoint's own data"
        )
    if args.n < 1:  # before the judge is loaded
        raise SedlmError(f"--n must be at least 1 (got {args.n})")
    model = load_pretrained(args.ckpt, device=args.device)
    judge = get_judge(args.judge)
    rows, samples = evaluate_model(
        model, judge=judge, n=args.n, steps=args.steps, seed=args.seed, **options_from_args(args)
    )
    out = Path(args.out) if args.out else Path(args.ckpt) / "eval.json"
    result = {
        "ckpt": str(args.ckpt),
        "judge": args.judge,
        "val_loss": rows[0]["val_loss"],
        "val_loss_kind": rows[0]["val_loss_kind"],
        "rows": rows,
        "samples": samples,
    }
    write_atomic(out, json.dumps(result, indent=2))
    from sedlm.train.card import refresh_card

    refresh_card(args.ckpt, {"model": rows[0], "data": next((r for r in rows if r["method"] == "data"), {})})
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown_table(rows))
        print(f"wrote {out} and the figures into {Path(args.ckpt) / 'README.md'}")
    return 0


def _names(text: str | None) -> tuple[str, ...]:
    """A comma-separated option as its non-empty, stripped items (none for an unset option)."""
    return tuple(m.strip() for m in (text or "").split(",") if m.strip())


def _eval_nll(args: argparse.Namespace) -> int:
    """``sedlm eval --nll``: likelihood per token (exact or bound) with its standard error."""
    from sedlm.api import load_pretrained
    from sedlm.eval.likelihood import likelihood
    from sedlm.io import write_atomic

    model = load_pretrained(args.ckpt, device=args.device)
    res = {
        "ckpt": str(args.ckpt),
        "family": model.config.family,
        **likelihood(
            model, args.data, rows=args.rows, seed=args.seed, estimator=args.estimator, ode_steps=args.ode_steps
        ),
    }
    out = Path(args.out) if args.out else Path(args.ckpt) / "nll.json"
    write_atomic(out, json.dumps(res, indent=2))
    if args.json:
        print(json.dumps(res))
    else:
        ppl = f"{res['perplexity']:.2f}" if res["perplexity"] is not None else "too large to show"
        print(
            f"{res['nll']:.4f} +- {res['nll_se']:.4f} nats/token ({res['nll_kind']}; perplexity {ppl}) "
            f"on {res['rows']} rows of {res['tokens_per_row']} tokens of {res['source']}; wrote {out}"
        )
    return 0


def _bench_command(name: str) -> str:
    import shlex

    return (
        shlex.join(["sedlm", "bench", *sys.argv[sys.argv.index("bench") + 1 :]])
        if "bench" in sys.argv
        else f"sedlm bench {name}"
    )


def cmd_likelihood(args: argparse.Namespace) -> int:
    from sedlm.bench.compare import METHODS
    from sedlm.bench.likelihood import bench_likelihood

    bench_likelihood(
        args.corpus,
        methods=_names(args.methods) or METHODS,
        train_steps=args.train_steps,
        zero_shot=_names(args.zero_shot),
        rows=args.rows,
        runs_dir=args.runs_dir,
        results_dir=args.results_dir,
        reuse=not args.retrain,
        overrides=args.overrides,
        command=_bench_command("likelihood"),
        name=args.name,
    )
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _names(text))
    except ValueError:
        raise SedlmError(f"--seeds takes comma-separated training seeds, e.g. 0,1,2 (got '{text}')") from None


def cmd_bench(args: argparse.Namespace) -> int:
    from sedlm.bench.compare import METHODS, compare

    compare(
        args.corpus,
        args.budget_minutes,
        judge_name=args.judge,
        n=args.n,
        steps=args.steps,
        runs_dir=args.runs_dir,
        results_dir=args.results_dir,
        overrides=args.overrides,
        train_steps=args.train_steps,
        methods=_names(args.methods) or METHODS,
        rerun=_names(args.rerun) or None,
        seeds=_seeds(args.seeds),
        name=args.name,
        command=_bench_command("compare"),
        reuse=args.reuse,
    )
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    from sedlm.bench.steps import NFES, steps_bench

    samplers = [x.strip() for x in args.samplers.split(",")] if args.samplers else None
    try:
        nfes = tuple(int(x) for x in args.nfe.split(",")) if args.nfe else NFES
    except ValueError:
        raise SedlmError(f"--nfe takes comma-separated whole numbers, e.g. 8,32,128 (got '{args.nfe}')") from None
    if any(k < 1 for k in nfes):
        raise SedlmError(f"--nfe budgets must be at least 1 (got {args.nfe})")
    steps_bench(
        args.ckpt,
        ar_ckpt=args.ar_ckpt,
        samplers=samplers,
        nfes=nfes,
        n=args.n,
        guidance=args.guidance,
        judge_name=args.judge,
        name=args.name,
        results_dir=args.results_dir,
        command=_bench_command("steps"),
    )
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from sedlm.bench.ablate import VARIANTS, ablate, describe

    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:32s} {v.group:10s} {describe(v)}" + (f"  (samples {v.reuse}'s model)" if v.reuse else ""))
        return 0
    ablate(
        args.corpus,
        args.minutes,
        train_steps=args.train_steps,
        variants=args.variants,
        judge_name=args.judge,
        n=args.n,
        steps=args.steps,
        runs_dir=args.runs_dir,
        results_dir=args.results_dir,
        overrides=args.overrides,
        command=_bench_command("ablate"),
        force=args.force,
        rescore=_names(args.rescore),
        seeds=_seeds(args.seeds),
    )
    return 0


def add_eval_and_bench_parsers(sub: Any) -> None:
    """The `eval` and `bench` subcommands."""
    v = sub.add_parser(
        "eval",
        help="score a checkpoint's samples with a judge LM next to real text",
        description="Sample N texts and report judge NLL, unigram entropy, distinct-n, self-BLEU, MAUVE "
        "and validation loss, next to the same metrics on held-out text (the data row). With "
        "--nll: the likelihood of held-out text per token instead (exact for ar, a variational "
        "bound for sed and mdlm), with its standard error.",
    )
    v.add_argument("--ckpt", required=True, help="checkpoint folder of any model family")
    v.add_argument("--judge", default="smollm2", help="judge LM: smollm2 (bundled), a local folder or a hub name")
    v.add_argument("--n", type=count(), default=256, help="number of samples (default: 256)")
    v.add_argument("--steps", type=count(), help="sampling steps for diffusion models (default: sample.steps)")
    add_option_flags(v)
    v.add_argument("--seed", type=seed(), default=0, help="random seed (default: 0)")
    v.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    v.add_argument(
        "--nll",
        action="store_true",
        help="instead of sampling: -log p per token of held-out text, exact (ar) "
        "or an upper bound (diffusion), with its standard error",
    )
    v.add_argument(
        "--data",
        help="--nll: text to score (path, corpus:NAME, hf:NAME) instead of the checkpoint's "
        "validation split (zero-shot)",
    )
    v.add_argument(
        "--rows", type=count(), default=256, help="--nll: rows of data.seq_len tokens to score (default: 256)"
    )
    v.add_argument(
        "--estimator",
        choices=("bound", "ode"),
        default="bound",
        help="--nll: the family's own figure (bound: exact for ar, a variational bound for diffusion) or, for "
        "embedding diffusion, LangFlow's estimate through the probability-flow ODE (ode) (default: bound)",
    )
    v.add_argument(
        "--ode-steps", type=count(), default=128, help="--nll --estimator ode: Euler steps of the ODE (default: 128)"
    )
    output(v, "--out", "file", help="JSON file to write (default: <ckpt>/eval.json, or <ckpt>/nll.json with --nll)")
    v.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object (val_loss, val_loss_kind, rows, samples)",
    )
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser(
        "bench",
        help="benchmarks that train and compare models",
        description="Benchmarks that train and compare model families.",
    )
    bsub = b.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    bc = bsub.add_parser(
        "compare",
        help="model families and recipes at matched size and equal training tokens",
        description="Train the chosen systems (families, recipes, or variants NAME:section.key=value) at "
        "matched parameter count on equal training tokens, sample and judge them, and write "
        "benchmarks/results/<name>-<corpus>.{json,md,png} with a temperature-sweep frontier. "
        "See `sedlm recipes` for the names.",
    )
    bc.add_argument(
        "--corpus",
        default="shakespeare",
        help="bundled corpus, or your own text (a .txt/.jsonl file, a folder, hf:NAME), which names the "
        "results files by its stem (default: shakespeare)",
    )
    bc.add_argument("--budget-minutes", type=positive(), default=30.0, help="total time budget (default: 30)")
    bc.add_argument(
        "--methods",
        help="comma-separated systems in the table: families, recipes, or variants like "
        "cdcd:diffusion.time_warp=false; sizes match the first (default: every family)",
    )
    bc.add_argument(
        "--rerun",
        help="comma-separated subset of --methods to (re)train and score; the others' rows are "
        "kept from the last results files (default: all)",
    )
    bc.add_argument("--name", default="compare", help="results name: <name>-<corpus>.{json,md,png} (default: compare)")
    bc.add_argument(
        "--seeds",
        default="0",
        help="comma-separated training seeds; several give one row per seed and <name>-seeds-<corpus> with each "
        "system's mean and seed spread (default: 0)",
    )
    bc.add_argument(
        "--train-steps",
        type=count(),
        help="optimiser steps per family (default: sized from the budget by timing each family's step)",
    )
    bc.add_argument(
        "--reuse",
        action="store_true",
        help="score finished runs in --runs-dir of the same system, seed and step count instead of retraining them",
    )
    _add_judge_options(bc, "samples per method")
    bc.add_argument("--steps", type=count(), default=200, help="sampling steps for sed and mdlm (default: 200)")
    output(bc, "--runs-dir", default="runs/compare", help="where the runs are written")
    bc.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides applied to every system")
    bc.set_defaults(func=cmd_bench)

    bl = bsub.add_parser(
        "likelihood",
        help="validation and zero-shot likelihood of families and recipes at equal budget",
        description="Train the chosen systems as `bench compare` does (matched size, equal steps; a "
        "finished run of the same step count in --runs-dir is reused) and score held-out "
        "text: -log p per token, exact (ar) or an upper bound (sed, mdlm), with standard "
        "errors, on the corpus's validation rows and on other corpora (zero-shot). Writes "
        "benchmarks/results/<name>-<corpus>.{json,md}.",
    )
    bl.add_argument(
        "--corpus",
        default="shakespeare",
        help="bundled corpus to train on, or your own text (a .txt/.jsonl file, a folder, hf:NAME), which "
        "names the results files by its stem (default: shakespeare)",
    )
    bl.add_argument("--methods", help="comma-separated systems, as for compare (default: every family)")
    bl.add_argument("--train-steps", type=count(), default=600, help="optimiser steps per system (default: 600)")
    bl.add_argument(
        "--zero-shot",
        default="corpus:news,corpus:wikipedia",
        help="comma-separated text sources scored zero-shot (default: corpus:news,corpus:wikipedia)",
    )
    bl.add_argument("--rows", type=count(), default=256, help="rows of data.seq_len tokens per source (default: 256)")
    output(bl, "--runs-dir", default="runs/systems", help="where the runs are (default: runs/systems)")
    bl.add_argument("--retrain", action="store_true", help="train every system again even if a finished run exists")
    output(bl, "--results-dir", default="benchmarks/results", help="where results files are written")
    bl.add_argument("--name", default="likelihood", help="results name: <name>-<corpus> (default: likelihood)")
    bl.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides applied to every system")
    bl.set_defaults(func=cmd_likelihood)

    bs = bsub.add_parser(
        "steps",
        help="judge NLL and entropy against NFE for every sampler; speed against AR",
        description="For each sampler and NFE budget, sample N texts from an SED checkpoint and score "
        "judge NLL, unigram entropy and time per sample; then time the cheapest setting that "
        "meets the target (NLL within 5%% and entropy within 2%% of 1000-step ancestral) "
        "against an AR checkpoint at batch 1 and 32, length 128. Writes "
        "benchmarks/results/steps-<name>.{json,md,png} and steps-<name>-speed.{json,md}.",
    )
    bs.add_argument("--ckpt", required=True, help="SED checkpoint folder")
    bs.add_argument("--ar-ckpt", help="autoregressive checkpoint to time against (same size)")
    bs.add_argument("--samplers", help="comma-separated samplers (default: ddpm,ddim,euler,heun,dpmpp_2m)")
    bs.add_argument("--nfe", help="comma-separated NFE budgets (default: 4,8,16,32,64,128,256,1000)")
    _add_judge_options(bs, "samples per row")
    bs.add_argument(
        "--guidance",
        type=Number(float, 0.0),
        default=1.0,
        help="guidance scale; != 1 doubles the NFE per step (default: 1)",
    )
    bs.add_argument("--name", help="results name (default: the checkpoint folder's name)")
    bs.set_defaults(func=cmd_steps)

    ba = bsub.add_parser(
        "ablate",
        help="SED design choices, one at a time, at an equal budget of optimiser steps",
        description="Train variants of the tiny SED config (embedding space, d_embed, noise schedule, "
        "self-conditioning, loss, sampling knobs) for the same number of optimiser steps each (once per "
        "training seed), score them with the judge next to the AR baseline and real text, and write "
        "benchmarks/results/ablation-<corpus>.{json,md} (and ablation-<corpus>-seeds.{json,md}, each "
        "variant's mean and seed spread, with several seeds). Finished variants are reused on reruns.",
    )
    ba.add_argument("--corpus", default="shakespeare", help="bundled corpus (default: shakespeare)")
    ba.add_argument(
        "--train-steps",
        type=count(),
        help="optimiser steps per run, the same for every variant and the AR baseline (default: 600)",
    )
    ba.add_argument(
        "--minutes",
        type=positive(),
        help="instead of --train-steps: CPU minutes per run (the step count then depends on the machine's load)",
    )
    ba.add_argument("--variants", help="comma-separated variant names (default: all; see --list)")
    ba.add_argument(
        "--seeds",
        default="0",
        help="comma-separated training seeds; several train every variant and the AR baseline once per seed and "
        "write ablation-<corpus>-seeds with each one's mean and seed spread (default: 0)",
    )
    ba.add_argument("--list", action="store_true", help="list the variants and exit")
    _add_judge_options(ba, "samples per variant")
    ba.add_argument("--steps", type=count(), default=200, help="sampling steps (default: 200)")
    output(ba, "--runs-dir", default="runs/ablate", help="where the runs are written")
    ba.add_argument("--force", action="store_true", help="retrain variants even when a matching finished run exists")
    ba.add_argument(
        "--rescore",
        help="comma-separated variants to score again on their saved trained model, without "
        "retraining (after a sampling or harness change)",
    )
    ba.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides applied to every variant")
    ba.set_defaults(func=cmd_ablate)
