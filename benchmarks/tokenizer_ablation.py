"""Tokenizer granularity and embedding space at the tiny budget: SED and AR on each tokenizer.

Embedding diffusion rounds a continuous estimate to one of V token rows; more distinct identities
(a larger vocabulary) make each row rarer but each text shorter. For every tokenizer below this
script trains the tiny SED config and an AR model of matched size for the same number of steps on the
default corpus, samples both, and scores them with one judge:

    bpe-2k, bpe-4k, bpe-8k, bpe-16k   byte-level BPE trained on the corpus (data.tokenizer=bpe)
    word-8k                           word-level with an unknown token (data.tokenizer=word)
    gpt2                              the GPT-2 BPE (50,257 tokens)
    minilm                            all-MiniLM-L6-v2's WordPiece tokenizer and its input embeddings
                                      (embed.kind=pretrained, PCA to d_embed) as SED's table
    smollm2                           SmolLM2-135M's byte-level BPE and its input embeddings, likewise
    minilm-ppmi, smollm2-ppmi         the same tokenizers with the default table (a PPMI-SVD table learned
                                      on the corpus): with the rows above, the embedding-space ablation
                                      at a fixed tokenizer (a pretrained table fixes its tokenizer); SED only

Sets of equal length across tokenizers: every sample and reference is cut to the same number of
characters' worth of tokens (``--chars``, converted per tokenizer with its mean characters per token
on validation text), so judge NLL compares like with like. Per-sample entropy is over each model's
own tokens and is therefore not comparable across tokenizers; ``word_entropy`` (pooled words) is.
``--frontier`` adds, per tokenizer and family, a row for every other value of the family's temperature
knob (SED: score temperature 0.6/0.8/1.0; AR: temperature 0.7/0.85/1.0 without top-p), so each
tokenizer gets a judge-NLL/entropy frontier and a plot ``<name>-<tokenizer>.png`` beside the results.

    python benchmarks/tokenizer_ablation.py --steps 1200                        # ~2 h on 2 cores
    python benchmarks/tokenizer_ablation.py --tokenizers bpe-2k,word-8k --steps 300 --n 64   # a quick look
    python benchmarks/tokenizer_ablation.py --tokenizers bpe-4k --steps 600 --reuse --frontier    # rescore + sweep
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import RESULTS_DIR, add_judged_run_options, publish, run_main  # noqa: E402

TOKENIZERS: dict[str, list[str]] = {
    "bpe-2k": ["data.tokenizer=bpe", "data.vocab_size=2048"],
    "bpe-4k": ["data.tokenizer=bpe", "data.vocab_size=4096"],
    "bpe-8k": ["data.tokenizer=bpe", "data.vocab_size=8192"],
    "bpe-16k": ["data.tokenizer=bpe", "data.vocab_size=16384"],
    "word-8k": ["data.tokenizer=word", "data.vocab_size=8192"],
    "gpt2": ["data.tokenizer=gpt2"],
    "minilm": ["embed.kind=pretrained", "embed.pretrained=minilm"],
    "smollm2": ["embed.kind=pretrained", "embed.pretrained=smollm2"],
    "minilm-ppmi": [],  # data.tokenizer=<minilm's tokenizer.json>, written by ``overrides``
    "smollm2-ppmi": [],
}


def overrides(tokenizer: str, runs: Path) -> list[str]:
    """Config overrides for ``tokenizer``; a ``<name>-ppmi`` row saves the pretrained model's tokenizer
    as a tokenizer.json and points data.tokenizer at it, so only the table differs from row ``<name>``."""
    if not tokenizer.endswith("-ppmi"):
        return TOKENIZERS[tokenizer]
    from sedlm.model.pretrained_table import pretrained_tokenizer

    path = runs / f"{tokenizer}.tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    pretrained_tokenizer(tokenizer.removesuffix("-ppmi")).save(path)
    return [f"data.tokenizer={path}", "embed.kind=ppmi"]


def finished(out: Path, cfg: Any) -> bool:
    """A run in ``out`` trained with this config to its last step (``--reuse`` rescores it)."""
    from sedlm.config import load_config
    from sedlm.errors import SedlmError

    try:
        saved = load_config(out / "config.json")
        last = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError, TypeError, SedlmError):
        return False
    from sedlm.data.tokenizer import TRAINED_TOKENIZERS

    def key(c: Any) -> tuple:  # data.vocab_size only sizes a tokenizer trained here; a fixed one ignores it,
        # and so does a pretrained table, which brings its own tokenizer
        trained = c.data.tokenizer in TRAINED_TOKENIZERS and c.embed.kind != "pretrained"
        size = c.data.vocab_size if trained else None
        return c.data.tokenizer, size, c.embed.kind, c.embed.pretrained, c.family

    same = key(saved) == key(cfg)
    return same and bool(last) and max(last) >= cfg.train.max_steps


COLUMNS = [
    "tokenizer",
    "method",
    "knob",
    "value",
    "vocab_size",
    "chars_per_token",
    "params",
    "train_steps",
    "eval_tokens",
    "n_short",
    "n_samples",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "word_entropy",
    "real_word_share",
    "val_loss",
    "val_loss_kind",
]


def run(
    tokenizer: str,
    steps: int,
    n: int,
    chars: int,
    sample_steps: int,
    judge: Any,
    runs: Path,
    extra: list[str],
    reuse: bool = False,
    frontier: bool = False,
) -> list[dict[str, Any]]:
    """Train SED and AR with ``tokenizer`` and return their rows, the data row and (``frontier``) a row per
    other value of each family's temperature knob."""
    from sedlm.api import load_pretrained
    from sedlm.bench.compare import default_knob, frontier_points
    from sedlm.bench.systems import match_width, param_count
    from sedlm.config import load_config, resolve_config_path
    from sedlm.data.dataset import prepare_data
    from sedlm.eval.harness import evaluate_model
    from sedlm.train.setup import tokenizer_for
    from sedlm.train.trainer import train

    over = [*overrides(tokenizer, runs), f"train.max_steps={steps}", "train.max_minutes=0", *extra]
    sed = load_config(resolve_config_path("tiny"), over)
    data = prepare_data(sed.data, tokenizer=tokenizer_for(sed))
    sed.model.vocab_size = data.tokenizer.vocab_size
    val_text = " ".join(data.val_docs[:200])
    cpt = len(val_text) / max(1, len(data.tokenizer.encode(val_text)))
    eval_tokens = max(4, min(int(chars / cpt), int(0.8 * sed.data.seq_len)))
    ar = sed.copy()
    ar.family, ar.embed.kind = "ar", "random"
    params = {"sed": param_count(sed, data)}
    params["ar"] = match_width(ar, params["sed"], data)
    rows, points, data_row = [], [], None
    # a <name>-ppmi row differs from row <name> in SED's table alone; AR (no table) would repeat that row's
    for method, cfg in (("sed", sed),) if tokenizer.endswith("-ppmi") else (("sed", sed), ("ar", ar)):
        out = runs / f"{tokenizer}-{method}"
        if not (reuse and finished(out, cfg)):
            shutil.rmtree(out, ignore_errors=True)
            train(cfg, out, data=data, log=lambda s: None)
        model = load_pretrained(out)
        model.config.sample = cfg.sample  # a rescored run samples with this command's settings, not its saved ones
        (row, drow), _ = evaluate_model(
            model, data, judge=judge, n=n, steps=sample_steps, seed=0, eval_tokens=eval_tokens, label=method
        )
        data_row = data_row or drow
        run_cols = {
            "tokenizer": tokenizer,
            "vocab_size": data.tokenizer.vocab_size,
            "chars_per_token": round(cpt, 2),
            "params": params[method],
            "train_steps": steps,
        }
        knob, value = default_knob(model)
        rows.append({**row, **run_cols, "knob": knob, "value": value})
        if frontier:  # the default's point is the row above; AR's sweep holds top_p=1, so all three of its are new
            points += [
                {**point, **run_cols, "knob": k, "value": v}
                for k, v, point in frontier_points(
                    model, row, data, judge, n=n, steps=sample_steps, eval_tokens=eval_tokens, label=method
                )
                if point is not row
            ]
    return [
        *rows,
        {
            **data_row,
            "tokenizer": tokenizer,
            "method": "data",
            "vocab_size": data.tokenizer.vocab_size,
            "chars_per_token": round(cpt, 2),
        },
        *points,
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizers", default=",".join(TOKENIZERS), help=f"comma-separated, of {', '.join(TOKENIZERS)}")
    ap.add_argument("--steps", type=int, default=1200, help="optimiser steps per model (default: 1200)")
    ap.add_argument("--chars", type=int, default=200, help="characters' worth of tokens per sample (default: 200)")
    ap.add_argument("--sample-steps", type=int, default=200, help="SED sampling steps (default: 200)")
    add_judged_run_options(ap, "runs/tokenizers", "tokenizers-shakespeare")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="rescore a run already trained in --runs-dir with the same tokenizer, table and steps "
        "(sample.* overrides apply)",
    )
    ap.add_argument(
        "--frontier",
        action="store_true",
        help="add a row per other value of each family's temperature knob and a frontier plot per tokenizer",
    )
    ap.add_argument("overrides", nargs="*", help="config overrides for every run (section.key=value)")
    args = ap.parse_args()
    from sedlm.bench.plots import plot_frontier
    from sedlm.errors import SedlmError
    from sedlm.eval.judge import get_judge

    chosen = [t.strip() for t in args.tokenizers.split(",") if t.strip()]
    if unknown := [t for t in chosen if t not in TOKENIZERS]:
        raise SedlmError(f"unknown tokenizer(s) {', '.join(unknown)}; valid: {', '.join(TOKENIZERS)}")
    if args.steps < 1 or args.n < 1:
        raise SedlmError("--steps and --n must be at least 1")
    judge, rows, start = get_judge(args.judge), [], time.perf_counter()
    for t in chosen:
        new = run(
            t,
            args.steps,
            args.n,
            args.chars,
            args.sample_steps,
            judge,
            Path(args.runs_dir),
            args.overrides,
            args.reuse,
            args.frontier,
        )
        rows += new
        if args.frontier:
            plot_frontier(
                [r for r in new if r["method"] != "data"],
                next(r for r in new if r["method"] == "data"),
                RESULTS_DIR / f"{args.name}-{t}.png",
                f"{t}: judge NLL against entropy (95% bootstrap CIs)",
            )
        publish(args.name, "tokenizer_ablation.py", rows, COLUMNS)  # after each tokenizer: a stopped run keeps its rows
    print(f"{(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    run_main(main)
