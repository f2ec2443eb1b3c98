"""`sedlm bench compare`: model families and recipes side by side, trained at matched parameter count
(within 10%, frozen embedding table included) on equal training tokens (same tokenizer, rows, batch
size and number of steps), sampled, and scored by one judge, next to the real-text ``data`` row.

The step count is sized to the time budget: each family's step is timed first, and training gets
about 55% of the budget; the rest goes to the embedding stage, sampling, judging and the
throughput measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sedlm.api import load_pretrained
from sedlm.bench.plots import plot, plot_frontier
from sedlm.bench.seeds import SEED_COLUMNS, check_seeds, seed_summary
from sedlm.bench.systems import prepare_systems, seconds_per_step, train_system
from sedlm.data.corpora import source_and_tag
from sedlm.errors import SedlmError
from sedlm.eval.harness import evaluate_model, generation_seconds, scored
from sedlm.eval.results import markdown_table, write_results
from sedlm.families import FAMILIES

THROUGHPUT_LEN = 128  # tokens per row of the sampling-speed measurement
METHODS = tuple(FAMILIES)  # every registered family; sizes are matched to the first (the flagship)
COLUMNS = [
    "method",
    "seed",
    "family",
    "params",
    "train_steps",
    "train_tokens",
    "train_tokens_per_s",
    "val_loss",
    "val_loss_kind",
    "nfe",
    "n_samples",
    "n_short",
    "mean_sample_tokens",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "word_entropy",
    "mauve",
    "mauve_n",
    "distinct_2",
    "self_bleu",
    "real_word_share",
    "sample_tokens_per_s_b1",
    "sample_tokens_per_s_b32",
]
FRONTIER_COLUMNS = [
    "method",
    "knob",
    "value",
    "n_samples",
    "n_short",
    "mean_sample_tokens",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "word_entropy",
]


def sampling_tokens_per_s(model: Any, batch: int, steps: int) -> float:
    """Tokens per second generating ``batch`` sequences of THROUGHPUT_LEN tokens."""
    return batch * THROUGHPUT_LEN / generation_seconds(model, batch, THROUGHPUT_LEN, steps=steps)


def default_knob(model: Any) -> tuple[str, Any]:
    """(knob, value): the model's temperature knob and the value it samples with by default."""
    knob = model.frontier_knob[0]
    return knob, model.family.resolve_options(model.config.sample, {}).get(knob)


def frontier_points(
    model: Any,
    row: dict[str, Any],
    data: Any,
    judge: Any,
    *,
    n: int,
    steps: int | None = None,
    eval_tokens: int | None = None,
    label: str,
) -> list[tuple[str, float, dict[str, Any]]]:
    """(knob, value, row) for each value of the model's temperature knob (``model.frontier_knob``): the
    value it samples with by default is ``row`` itself (same seed, same samples); the others are sampled anew."""
    knob, values = model.frontier_knob
    defaults = model.family.resolve_options(model.config.sample, {})
    points = []
    for value in values:
        fixed = {**model.frontier_fixed, knob: value}
        if all(defaults.get(k) == v for k, v in fixed.items()):
            points.append((knob, value, row))
            continue
        (point,), _ = evaluate_model(
            model,
            data,
            judge=judge,
            n=n,
            steps=steps,
            seed=0,
            eval_tokens=eval_tokens,
            min_mauve=10**9,
            label=label,
            with_data_row=False,
            keep_short=True,
            **fixed,
        )
        points.append((knob, value, point))
    return points


def _kept_rows(
    results_dir: str | Path, name: str, corpus: str, rerun: tuple[str, ...], every: tuple[str, ...]
) -> tuple[list[dict], list[dict]]:
    """With a subset of the systems rerun, the other systems' rows of the last results and frontier
    files (same checkpoints, seeds and harness, so re-evaluating them would reproduce them)."""
    import json

    if set(rerun) == set(every):
        return [], []
    out = []
    for file in (f"{name}-{corpus}", f"frontier-{corpus}" if name == "compare" else f"{name}-frontier-{corpus}"):
        path = Path(results_dir) / f"{file}.json"
        rows = json.loads(path.read_text())["rows"] if path.is_file() else []
        missing = set(every) - set(rerun) - {r["method"] for r in rows}
        if missing:
            raise SedlmError(
                f"--methods reruns only some systems, but {path} holds no rows for "
                f"{', '.join(sorted(missing))}; run the full comparison first"
            )
        out.append([r for r in rows if r["method"] in every and r["method"] not in rerun])
    return out[0], out[1]


def compare(
    corpus: str = "shakespeare",
    budget_minutes: float = 30.0,
    *,
    judge_name: str = "smollm2",
    n: int = 256,
    steps: int = 200,
    runs_dir: str | Path = "runs/compare",
    results_dir: str | Path = "benchmarks/results",
    overrides: list[str] | None = None,
    train_steps: int | None = None,
    methods: tuple[str, ...] = METHODS,
    rerun: tuple[str, ...] | None = None,
    eval_tokens: int | None = None,
    seeds: tuple[int, ...] = (0,),
    name: str = "compare",
    command: str = "sedlm bench compare",
    reuse: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train, sample and score the ``methods`` (families, recipes or variants of them; see
    ``system_config``), sized to the first one's parameter count, ``train_steps`` each (else as many
    as ``budget_minutes`` allows); write <name>-<corpus>.{json,md,png} and the temperature-sweep frontier
    (frontier-<corpus> for the default name, else <name>-frontier-<corpus>); return the rows.
    With ``rerun`` (a subset of ``methods``), only those are trained again and the others' rows are kept
    from the last results files. With several training ``seeds`` every system is trained and scored once per
    seed (one row each; the frontier and the sampling speed from the first seed) and <name>-seeds-<corpus>
    gives each system's mean, seed spread and sample-CI width (``seed_summary``). With ``reuse``, finished runs
    of the same system, seed and step count are scored again rather than retrained (``train_system``)."""
    from sedlm.eval.judge import get_judge

    if train_steps is not None and train_steps < 1:
        raise SedlmError(f"--train-steps must be at least 1 (got {train_steps})")
    check_seeds(seeds)
    start = time.perf_counter()
    runs_dir = Path(runs_dir)
    rerun = tuple(rerun or methods)
    if unknown := set(rerun) - set(methods):
        raise SedlmError(f"--rerun names systems not in --methods: {', '.join(sorted(unknown))}")
    source, corpus = source_and_tag(corpus)  # results files carry the short name
    log(f"bench {name} on {source}: {', '.join(methods)}")
    base, data, cfgs, params = prepare_systems(source, methods, overrides)
    per_step = {m: seconds_per_step(cfgs[m], data) for m in rerun} if not train_steps else {}
    embed_s = 60 * base.embed.max_minutes if base.embed.max_minutes else 60.0
    train_s = max(0.0, 0.55 * 60 * budget_minutes - embed_s - (time.perf_counter() - start))
    # A fixed step count makes the run independent of the machine's load; the budget sizes it otherwise.
    n_steps = train_steps or max(20, int(train_s / sum(per_step.values())))
    kept, kept_frontier = _kept_rows(results_dir, name, corpus, rerun, methods)
    log(
        f"matched sizes {params}; {n_steps} steps each"
        + (" (measured s/step: " + ", ".join(f"{m} {s:.3f}" for m, s in per_step.items()) + ")" if per_step else "")
    )

    judge = get_judge(judge_name)
    rows, data_row, frontier = [], None, []

    def publish(
        rows: list[dict], frontier: list[dict], kept: list[dict], kept_frontier: list[dict], data_row: dict[str, Any]
    ) -> tuple[Path, Path]:
        """Write the table and the frontier with the systems finished so far (and the kept ones)."""
        order = lambda r: methods.index(r["method"])  # noqa: E731
        table = [*sorted(rows + kept, key=order), data_row]
        points = sorted(frontier + kept_frontier, key=order)
        points.append(
            {"knob": "-", "value": None, **{c: data_row.get(c) for c in FRONTIER_COLUMNS if c not in ("knob", "value")}}
        )
        file = f"{name}-{corpus}"
        frontier_file = f"frontier-{corpus}" if name == "compare" else f"{name}-frontier-{corpus}"
        write_results(file, command, table, COLUMNS, results_dir)
        plot(table, Path(results_dir) / f"{file}.png", THROUGHPUT_LEN)
        write_results(frontier_file, command, points, FRONTIER_COLUMNS, results_dir)
        plot_frontier(points[:-1], data_row, Path(results_dir) / f"{frontier_file}.png")
        log(markdown_table(table, COLUMNS))
        return Path(results_dir) / file, Path(results_dir) / frontier_file

    for system, seed in ((m, s) for m in rerun for s in seeds):
        cfg = cfgs[system].copy()
        cfg.train.seed = seed
        log(f"training {system} ({cfg.family}, {params[system]:,} parameters, training seed {seed})")
        out, elapsed = train_system(cfg, system, n_steps, runs_dir, data, log, reuse=reuse)
        model = load_pretrained(out)
        (row, drow), _ = evaluate_model(
            model, data, judge=judge, n=n, steps=steps, seed=0, label=system, eval_tokens=eval_tokens, keep_short=True
        )
        row["seed"] = seed
        data_row = data_row or drow
        first_seed = seed == seeds[0]
        points = (
            frontier_points(model, row, data, judge, n=n, steps=steps, label=system, eval_tokens=eval_tokens)
            if first_seed
            else []  # the frontier sweeps sampling knobs of one trained model: the first seed's
        )
        for knob, value, point in points:
            frontier.append(
                {
                    "knob": knob,
                    "value": value,
                    **{c: point.get(c) for c in FRONTIER_COLUMNS if c not in ("knob", "value")},
                }
            )
            log(f"{system} {knob}={value:g}: {scored(point)}")
        tokens = n_steps * cfg.train.batch_size * cfg.data.seq_len
        train_tok_s = tokens / max(elapsed, 1e-9)
        row.update(
            family=cfg.family,
            params=params[system],
            train_steps=n_steps,
            train_tokens=tokens,
            train_tokens_per_s=round(train_tok_s, 1),
        )
        if first_seed:  # a property of the architecture and sampler, not of the training seed
            row.update(
                sample_tokens_per_s_b1=round(sampling_tokens_per_s(model, 1, steps), 1),
                sample_tokens_per_s_b32=round(sampling_tokens_per_s(model, 32, steps), 1),
            )
        rows.append(row)
        publish(rows, frontier, kept, kept_frontier, data_row)  # after every system: a stopped run keeps its rows
        log(f"{system}: {scored(row)}")
    file, frontier_file = publish(rows, frontier, kept, kept_frontier, data_row)
    if len(seeds) > 1:
        summary = seed_summary(sorted(rows, key=lambda r: methods.index(r["method"])))
        write_results(f"{name}-seeds-{corpus}", command, summary, SEED_COLUMNS, results_dir)
        log(markdown_table(summary, SEED_COLUMNS))
    log(f"wrote {file} and {frontier_file} (.json, .md, .png) in {(time.perf_counter() - start) / 60:.1f} min")
    return sorted(rows + kept, key=lambda r: methods.index(r["method"])) + [data_row]
