"""`sedlm bench compare`: SED against the AR and MDLM baselines, trained at matched parameter count
(within 10%, frozen embedding table included) on equal training tokens (same tokenizer, rows, batch
size and number of steps), sampled, and scored by one judge, next to the real-text ``data`` row.

The step count is sized to the time budget: each family's step is timed first, and training gets
about 55% of the budget; the rest goes to the embedding stage, sampling, judging and the
throughput measurements.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sedlm.api import load_pretrained
from sedlm.cli import resolve_config_path
from sedlm.config import Config, load_config
from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.errors import SedlmError
from sedlm.eval.harness import evaluate_model, generation_seconds
from sedlm.eval.results import markdown_table, save_figure, write_results
from sedlm.methods import count_parameters, get_method
from sedlm.train.trainer import train

METHODS = ("sed", "ar", "mdlm")
THROUGHPUT_LEN = 128
COLUMNS = ["method", "params", "train_steps", "train_tokens", "train_tokens_per_s", "val_loss", "nfe",
           "judge_nll", "unigram_entropy", "mauve", "distinct_2", "self_bleu", "real_word_share",
           "sample_tokens_per_s_b1", "sample_tokens_per_s_b32"]


def _params(cfg: Config, data: PreparedData) -> int:
    method = get_method(cfg.method)
    with torch.device("meta"):
        table = torch.empty(cfg.model.vocab_size, cfg.model.d_embed) if method.uses_embedding_table else None
        return count_parameters(method.build(cfg, data.tokenizer, table))


def match_width(cfg: Config, target: int, data: PreparedData) -> int:
    """Set cfg.model.d_model (a multiple of 2 * n_heads) so the parameter count is closest to ``target``."""
    step = 2 * cfg.model.n_heads
    best = None
    for d in range(step, 4 * max(cfg.model.d_model, 64) + step, step):
        cfg.model.d_model = d
        n = _params(cfg, data)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (d, n)
    cfg.model.d_model, n = best
    if abs(n - target) / target > 0.10:
        raise SedlmError(f"could not match {cfg.method} to {target:,} parameters within 10% (closest {n:,})")
    return n


def _time_steps(cfg: Config, data: PreparedData, n: int = 3) -> float:
    """Seconds per optimiser step of this family (random table for SED; timing only)."""
    method = get_method(cfg.method)
    table = torch.randn(cfg.model.vocab_size, cfg.model.d_embed) if method.uses_embedding_table else None
    model = method.build(cfg, data.tokenizer, table)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(n + 1):
        start = time.perf_counter()
        loss, _ = method.loss(model, data.train.batch(step, cfg.train.batch_size, 0), cfg, g, data.tokenizer)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / n  # the first step pays one-off costs


def sampling_tokens_per_s(model: Any, batch: int, steps: int) -> float:
    """Tokens per second generating ``batch`` sequences of THROUGHPUT_LEN tokens."""
    return batch * THROUGHPUT_LEN / generation_seconds(model, batch, THROUGHPUT_LEN, steps=steps)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Judge NLL against sampling throughput at batch 32; the data row is a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r["method"] == "data":
            ax.axhline(r["judge_nll"], color="grey", ls="--",
                       label=f"real text (NLL {r['judge_nll']:.2f}, H={r['unigram_entropy']:.2f} bits)")
        else:
            ax.scatter(r["sample_tokens_per_s_b32"], r["judge_nll"], s=60)
            ax.annotate(f"{r['method']} (H={r['unigram_entropy']:.2f} bits)", (r["sample_tokens_per_s_b32"], r["judge_nll"]),
                        textcoords="offset points", xytext=(6, 4))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)  # room for the labels
    ax.set_xlabel(f"sampling tokens/s (batch 32, length {THROUGHPUT_LEN})")
    ax.set_ylabel("judge NLL (nats/token, lower is better)")
    ax.set_title("quality vs sampling speed")
    ax.legend(loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def compare(
    corpus: str = "shakespeare",
    budget_minutes: float = 30.0,
    *,
    judge_name: str = "smollm2",
    n: int = 64,
    steps: int = 200,
    runs_dir: str | Path = "runs/compare",
    results_dir: str | Path = "benchmarks/results",
    overrides: list[str] | None = None,
    command: str = "sedlm bench compare",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train, sample and score sed, ar and mdlm; write compare-<corpus>.{json,md,png}; return the rows."""
    from sedlm.eval.judge import get_judge

    start = time.perf_counter()
    runs_dir = Path(runs_dir)
    base = load_config(resolve_config_path("tiny"), [f"data.source=corpus:{corpus}", *(overrides or [])])
    log(f"bench compare on corpus:{corpus}, budget {budget_minutes:g} min")
    data = prepare_data(base.data)
    base.model.vocab_size = data.tokenizer.vocab_size

    cfgs: dict[str, Config] = {}
    for name in METHODS:
        cfg = base.copy()
        cfg.method = name
        cfgs[name] = cfg
    target = _params(cfgs["sed"], data)
    params = {"sed": target, **{m: match_width(cfgs[m], target, data) for m in ("ar", "mdlm")}}

    per_step = {m: _time_steps(cfgs[m], data) for m in METHODS}
    embed_s = 60 * base.embed.max_minutes if base.embed.max_minutes else 60.0
    train_s = max(0.0, 0.55 * 60 * budget_minutes - embed_s - (time.perf_counter() - start))
    n_steps = max(20, int(train_s / sum(per_step.values())))
    log(f"matched sizes {params}; {n_steps} steps each (measured s/step: "
        + ", ".join(f"{m} {s:.3f}" for m, s in per_step.items()) + ")")

    judge = get_judge(judge_name)
    rows, data_row = [], None
    for name in METHODS:
        cfg = cfgs[name]
        cfg.train.max_steps = n_steps
        cfg.train.max_minutes = 0.0
        cfg.train.eval_every = max(1, n_steps // 4)
        cfg.train.checkpoint_every = n_steps
        cfg.train.warmup_steps = min(cfg.train.warmup_steps, n_steps // 10 + 1)
        out = runs_dir / name
        if out.exists():
            shutil.rmtree(out)
        log(f"training {name} ({params[name]:,} parameters)")
        result = train(cfg, out, data=data, log=log)
        model = load_pretrained(out)
        (row, drow), _ = evaluate_model(model, data, judge=judge, n=n, steps=steps, seed=0)
        data_row = data_row or drow
        tokens = n_steps * cfg.train.batch_size * cfg.data.seq_len
        train_tok_s = tokens / max(result.elapsed_s, 1e-9)
        row.update(params=params[name], train_steps=n_steps, train_tokens=tokens, train_tokens_per_s=round(train_tok_s, 1),
                   sample_tokens_per_s_b1=round(sampling_tokens_per_s(model, 1, steps), 1),
                   sample_tokens_per_s_b32=round(sampling_tokens_per_s(model, 32, steps), 1))
        rows.append(row)
        log(f"{name}: judge NLL {row.get('judge_nll')}, entropy {row['unigram_entropy']:.2f} bits")
    rows.append(data_row)

    name = f"compare-{corpus}"
    json_path, md_path = write_results(name, command, rows, COLUMNS, results_dir)
    plot(rows, Path(results_dir) / f"{name}.png")
    log(markdown_table(rows, COLUMNS))
    log(f"wrote {json_path}, {md_path} and {name}.png in {(time.perf_counter() - start) / 60:.1f} min")
    return rows
