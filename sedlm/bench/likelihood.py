"""`sedlm bench likelihood`: the likelihood of held-out text of every system of the comparison, trained
as ``sedlm bench compare`` trains them (``sedlm.eval.likelihood`` measures it)."""

from __future__ import annotations

from typing import Any

from sedlm.api import load_pretrained
from sedlm.bench.systems import prepare_systems, train_system
from sedlm.data.corpora import load_documents, source_and_tag
from sedlm.errors import SedlmError
from sedlm.eval.likelihood import likelihood
from sedlm.eval.results import markdown_table, write_results

LIKELIHOOD_COLUMNS = [
    "method",
    "family",
    "params",
    "train_steps",
    "source",
    "nll_kind",
    "nll",
    "nll_se",
    "perplexity",
    "rows",
    "tokens_per_row",
    "trained_pad_fraction",
]


def bench_likelihood(
    corpus: str = "shakespeare",
    *,
    methods: tuple[str, ...],
    train_steps: int = 600,
    zero_shot: tuple[str, ...] = ("corpus:news", "corpus:wikipedia"),
    rows: int = 256,
    runs_dir: str = "runs/systems",
    results_dir: str = "benchmarks/results",
    reuse: bool = True,
    overrides: list[str] | None = None,
    command: str = "sedlm bench likelihood",
    name: str = "likelihood",
    log: Any = print,
) -> list[dict[str, Any]]:
    """Train each system as ``sedlm bench compare`` does (matched size, equal steps; ``reuse`` keeps a
    finished run of the same step count in ``runs_dir``), then score the same validation rows and each
    ``zero_shot`` source with its family's likelihood (exact or bound); write <name>-<corpus>.{json,md}.
    Families without a likelihood get a row that says so."""
    if train_steps < 1:
        raise SedlmError(f"--train-steps must be at least 1 (got {train_steps})")
    trained_on, corpus = source_and_tag(corpus)  # results files carry the short name
    _, data, cfgs, params = prepare_systems(trained_on, methods, overrides)
    documents = {source: load_documents(source) for source in zero_shot}  # read once for every system
    out_rows: list[dict[str, Any]] = []
    for system in methods:
        log(f"{system}: {params[system]:,} parameters, {train_steps} steps")
        folder, _ = train_system(cfgs[system], system, train_steps, runs_dir, data, log, reuse=reuse)
        model = load_pretrained(folder)
        for source in (None, *zero_shot):
            row = {
                "method": system,
                "family": model.config.family,
                "params": params[system],
                "train_steps": train_steps,
                "source": source or f"{trained_on} (validation)",
            }
            try:
                res = likelihood(model, source, rows=rows, seed=0, data=data, documents=documents.get(source))
            except SedlmError as e:  # a family or variant without a likelihood: the row says why
                row["nll_kind"] = f"none: {e}"
            else:
                row.update({k: res[k] for k in LIKELIHOOD_COLUMNS if k in res})
                log(
                    f"{system} on {row['source']}: {res['nll']:.4f} +- {res['nll_se']:.4f} nats/token "
                    f"({res['nll_kind']})"
                )
            out_rows.append(row)
        write_results(f"{name}-{corpus}", command, out_rows, LIKELIHOOD_COLUMNS, results_dir)  # after every system
    log(markdown_table(out_rows, LIKELIHOOD_COLUMNS))
    return out_rows
