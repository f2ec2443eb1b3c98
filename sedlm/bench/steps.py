"""`sedlm bench steps --ckpt DIR`: quality against network evaluations for every sampler, and the
latency of the cheapest good setting against the autoregressive baseline.

For each sampler and each NFE budget the step count is chosen so that the network evaluations per
sample actually made (counted by a forward hook over rows, so a guided call counts twice) do not
exceed the budget; the row reports the measured NFE. The reference is ancestral sampling (``ddpm``)
at the largest budget; a row meets the target when its judge NLL is within 5% of the reference's
and its unigram entropy within 2%.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sedlm.api import load_pretrained
from sedlm.errors import SedlmError
from sedlm.eval.harness import default_eval_tokens, equal_length, generation_seconds, sample_content
from sedlm.eval.metrics import text_metrics
from sedlm.eval.results import markdown_table, save_figure, write_results
from sedlm.sampling.samplers import SAMPLERS, get_sampler

NFES = (4, 8, 16, 32, 64, 128, 256, 1000)
SPEED_LEN = 128
COLUMNS = [
    "sampler",
    "time_grid",
    "steps",
    "nfe",
    "n_samples",
    "n_short",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "nll_vs_reference",
    "entropy_vs_reference",
    "meets_target",
    "seconds_per_sample",
]
SPEED_COLUMNS = ["method", "sampler", "nfe", "batch_size", "seq_len", "seconds_per_sample", "latency_s", "tokens_per_s"]


def steps_for(sampler: str, nfe: int, guidance: float = 1.0) -> int:
    """Grid intervals K whose network evaluations per sample stay within ``nfe`` (at least one step)."""
    calls = nfe // (2 if guidance != 1.0 else 1)
    per_step = get_sampler(sampler).calls_per_step
    return max(1, (calls + per_step - 1) // per_step)


def _speed_row(model: Any, method: str, label: str, nfe: float, batch: int, /, **kw: Any) -> dict[str, Any]:
    """Latency and throughput of ``batch`` samples of SPEED_LEN tokens; ``kw`` go to generate_ids."""
    sec = generation_seconds(model, batch, SPEED_LEN, **kw)
    return {
        "method": method,
        "sampler": label,
        "nfe": nfe,
        "batch_size": batch,
        "seq_len": SPEED_LEN,
        "seconds_per_sample": round(sec / batch, 4),
        "latency_s": round(sec, 4),
        "tokens_per_s": round(batch * SPEED_LEN / sec, 1),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Judge NLL and unigram entropy against NFE (log scale), one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for s in dict.fromkeys(r["sampler"] for r in rows):
        pts = sorted((r["nfe"], r["judge_nll"], r["unigram_entropy"]) for r in rows if r["sampler"] == s)
        a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
        a2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=s)
    for ax, label in ((a1, "judge NLL (nats/token, lower is better)"), (a2, "unigram entropy (bits)")):
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per sample (NFE)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    a1.legend()
    fig.suptitle("SED quality against sampling steps")
    fig.tight_layout()
    save_figure(fig, path)


def _round(v: Any) -> Any:
    return [round(x, 4) for x in v] if isinstance(v, (list, tuple)) else round(v, 4)


def steps_bench(
    ckpt: str | Path,
    *,
    ar_ckpt: str | Path | None = None,
    samplers: list[str] | None = None,
    nfes: tuple[int, ...] = NFES,
    n: int = 256,
    guidance: float = 1.0,
    judge_name: str = "smollm2",
    name: str | None = None,
    results_dir: str | Path = "benchmarks/results",
    eval_tokens: int | None = None,
    command: str = "sedlm bench steps",
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write steps-<name>.{json,md,png} (sampler x NFE rows) and steps-<name>-speed.{json,md}; return both row lists.
    Samples are scored at ``eval_tokens`` model tokens (default ``default_eval_tokens``); shorter ones are counted."""
    from sedlm.eval.judge import get_judge

    model = load_pretrained(ckpt)
    if not model.family.samplers:
        raise SedlmError(
            f"'{ckpt}' holds a '{model.family_name}' model, whose family runs no registered sampler; "
            "bench steps measures the samplers of continuous families"
        )
    samplers = samplers or list(model.family.samplers)
    for s in samplers:
        if s not in model.family.samplers:
            raise SedlmError(
                f"unknown sampler '{s}' for family {model.family_name}; "
                f"valid samplers: {', '.join(model.family.samplers)}"
            )
    name = name or Path(ckpt).name
    judge = get_judge(judge_name)
    K = eval_tokens or default_eval_tokens(model.config.data.seq_len)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for s in samplers:
        for budget in nfes:
            k, grid = steps_for(s, budget, guidance), SAMPLERS[s].grid
            full, nfe, sec = sample_content(model, n, steps=k, sampler=s, time_grid=grid, guidance=guidance, seed=0)
            ids, n_short = equal_length(full, K)
            if len(ids) < 2:
                raise SedlmError(f"{s} at {k} steps: only {len(ids)} of {n} samples reach {K} tokens; raise --n")
            m = text_metrics([model.tokenizer.decode(r) for r in ids], judge=judge, sample_ids=ids)
            row = {
                "sampler": s,
                "time_grid": grid,
                "steps": k,
                "nfe": round(nfe, 1),
                "n_samples": len(ids),
                "eval_tokens": K,
                "n_short": n_short,
                **{c: _round(m[c]) for c in ("judge_nll", "judge_nll_ci95", "unigram_entropy", "unigram_entropy_ci95")},
                "seconds_per_sample": round(sec, 4),
            }
            rows.append(row)
            log(
                f"{s:9s} NFE {row['nfe']:>6g}: judge NLL {row['judge_nll']:.3f}, "
                f"entropy {row['unigram_entropy']:.2f} bits, "
                f"{sec:.3f} s/sample"
            )
    ref = max(
        (r for r in rows if r["sampler"] == "ddpm"), key=lambda r: r["nfe"], default=max(rows, key=lambda r: r["nfe"])
    )
    for r in rows:
        r["nll_vs_reference"] = round(r["judge_nll"] / ref["judge_nll"] - 1, 4)
        r["entropy_vs_reference"] = round(r["unigram_entropy"] / ref["unigram_entropy"] - 1, 4)
        r["meets_target"] = r["nll_vs_reference"] <= 0.05 and abs(r["entropy_vs_reference"]) <= 0.02
    good = [r for r in rows if r["meets_target"] and r is not ref]
    best = min(good, key=lambda r: (r["nfe"], r["judge_nll"])) if good else ref
    log(
        f"reference: {ref['sampler']} at NFE {ref['nfe']:g}; cheapest setting meeting the target: "
        f"{best['sampler']} at NFE {best['nfe']:g}" + ("" if good else " (none met it; the reference itself is timed)")
    )

    speed: list[dict[str, Any]] = []
    kw = {"steps": best["steps"], "sampler": best["sampler"], "time_grid": best["time_grid"], "guidance": guidance}
    ar = load_pretrained(ar_ckpt) if ar_ckpt else None
    for batch in (1, 32):
        speed.append(_speed_row(model, model.family_name, best["sampler"], best["nfe"], batch, **kw))
        if ar is not None:
            calls = (
                ar.config.sample.steps if ar.family.step_callbacks else SPEED_LEN
            )  # one call per token without steps
            speed.append(_speed_row(ar, ar.family_name, f"{ar.family.description}, its default sampling", calls, batch))
    results_dir = Path(results_dir)
    write_results(f"steps-{name}", command, rows, COLUMNS, results_dir)
    plot(rows, results_dir / f"steps-{name}.png")
    write_results(f"steps-{name}-speed", command, speed, SPEED_COLUMNS, results_dir)
    log(markdown_table(rows, COLUMNS))
    log(markdown_table(speed, SPEED_COLUMNS))
    log(
        f"wrote {results_dir}/steps-{name}.{{json,md,png}} and steps-{name}-speed.{{json,md}} "
        f"in {(time.perf_counter() - start) / 60:.1f} min"
    )
    return rows, speed
