"""Synthetic seq2seq: does the source reach the model? Conditioning isolated from language modelling.

Sources are random sequences of 4-8 words drawn uniformly from a list of made-up words, so nothing
about a target can be guessed without reading its source:

copy       target = the source (50 two-syllable words)
wordmap    target = each source word mapped through a fixed random bijection onto 50 other
           made-up words (a one-to-one word "translation"; position i of the target depends on
           position i of the source only)
wordmap25  the same over a vocabulary of another size and shape: 25 three-syllable words mapped
           onto 25 others (none of them a word of the 50-word lists), so that the seq2seq defaults
           are not judged on one vocabulary

The pairs are written to a .jsonl; a tiny SED (data.task=seq2seq, trained on its given-source
masks) and a tiny AR model (the same pairs as `source <eos> target <eos>` rows, matched parameter
count) train for the same number of optimiser steps on the same rows and tokenizer (a BPE whose
vocabulary holds every word as one token). Each then writes the target of held-out sources (the
validation split, never training pairs), and the script reports, per task and method:

exact_match      share of targets reproduced word for word (same words, same length)
token_accuracy   position-wise word accuracy: correct words at positions 0..len(target)-1 over
                 all target words (missing words count wrong; extra words fail exact_match only)
length_match     share of outputs with the target's word count

each with a 95% percentile bootstrap interval over the held-out pairs (token accuracy as a ratio
of sums, so long targets weigh more). SED samples with ddpm, 200 steps; AR decodes greedily (the
tasks have one right answer).

Configuration: what a user gets from `sedlm train --config tiny --task seq2seq --data pairs.jsonl`,
nothing tuned here: configs/tiny.yaml under the seq2seq task's shipped defaults (sedlm.config
TASK_DEFAULTS): a frozen random embedding table, the noise schedule shifted by -3 in log-SNR, and
rows fitted to the pairs (every pair fits in 32 tokens, so tiny's 16 rows of 64 tokens become 32 rows
of 32: the same tokens per step). The budget is the quickstart's: 600 optimiser steps
(sedlm.quickstart.DEFAULT_STEPS).

Trials that chose those defaults (600 steps, tiny, 8,000 pairs, 128 held-out pairs, token accuracy;
a 25-word wordmap unless noted, "50 words" is a 50-word wordmap of other words than the script's):
tiny.yaml as shipped before (PPMI table, 64-token rows, batch 16) 0.25; + shift -3 alone 0.05; random
table alone 0.26; 32-token rows alone 0.39; all three (random, 32-token rows of batch 16, shift -3)
0.69 at seed 0 (0.97 with warmup 50, the script's old setting) and 0.61 at seed 1 (warmup 50), and
without CFG dropout too 0.58 on 50 words: at 16 rows a step the model learns to read the source late
and not reliably. With 32 rows of 32 tokens (as many tokens a step as tiny's 16 rows of
64), the shipped defaults: 0.993 and 0.999 (seeds 0, 2), 1.000 at seed 1 (warmup 50) and 1.000 on 50
words. Each default stays needed: a PPMI table instead of the random one gave 1.000 here but 0.03 on 50
words (the table packs a word and the words it co-occurs with together); no shift gave 0.46 and 0.33
(50 words); 64-token rows (random table, shift -3, no CFG dropout) gave 0.15-0.97 over three seeds and
0.19 on 50 words. At 16 rows of 32 tokens, other shifts (-2: 0.51, -4: 0.26, -5: 0.20 on 50 words or
seed 1), CDCD time warping (0.42-0.47), lr 1e-3 (0.30) or 3e-3 (0.09-0.12) and directly regressed x0
estimates (0.31) did worse. Training without CFG dropout (diffusion.p_uncond=0) reached 0.98-1.00 at
16 rows on 25 words (three seeds) but 0.58 on 50 words, and leaves no unconditional model for guidance,
so it is not a default.

Rerun (one thread: tiny models gain little from a second one and lose much when the two cores are
shared). At the default 600 steps each SED model trains ~2 min and writes its 256 targets in ~50 s,
each AR trains ~1 min; ~11 min in all:
    python benchmarks/seq2seq_synthetic.py
    python benchmarks/seq2seq_synthetic.py --tasks wordmap25 --methods sed --n 64      # a quick look (~3 min)

Results (600 steps, 256 held-out pairs, token accuracy [95% CI]): SED 0.997 [0.995, 1.000] on copy,
1.000 [1.000, 1.000] on wordmap, 0.999 [0.997, 1.000] on wordmap25; AR at the same steps 0.031, 0.168
and 0.198 (it needs more steps: the earlier 2,000-step run reached 0.60 on copy, 0.955 on wordmap).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_main  # noqa: E402

# task -> (words in its vocabulary, syllables per word): three-syllable words are never two-syllable ones
TASKS = {"copy": (50, 2), "wordmap": (50, 2), "wordmap25": (25, 3)}
METHODS = ("sed", "ar")
MIN_WORDS, MAX_WORDS = 4, 8
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
COLUMNS = [
    "task",
    "method",
    "train_steps",
    "train_s",
    "params",
    "sampler",
    "nfe",
    "exact_match",
    "exact_match_ci95",
    "token_accuracy",
    "token_accuracy_ci95",
    "length_match",
    "n",
]


def made_up_words(n: int, rng: random.Random, exclude: set[str] = frozenset(), syllables: int = 2) -> list[str]:
    """``n`` distinct consonant-vowel words of ``syllables`` syllables (e.g. 'kalo'), none in ``exclude``."""
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        w = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def make_pairs(task: str, n_pairs: int, seed: int = 0) -> list[dict[str, str]]:
    """``n_pairs`` random {"src", "tgt"} pairs of ``task`` (module docstring); deterministic in ``seed``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    n_words, syllables = TASKS[task]
    rng = random.Random(seed)
    src_words = made_up_words(n_words, rng, syllables=syllables)
    mapping = dict(zip(src_words, made_up_words(n_words, rng, set(src_words), syllables)))
    pairs = []
    for _ in range(n_pairs):
        words = [rng.choice(src_words) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]
        tgt = words if task == "copy" else [mapping[w] for w in words]
        pairs.append({"src": " ".join(words), "tgt": " ".join(tgt)})
    return pairs


def score(hyps: list[str], refs: list[str], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Word-level exact match, position-wise token accuracy and length match, with bootstrap CIs."""
    from sedlm.eval.metrics import bootstrap_ci

    exact, correct, lengths, same_len = [], [], [], []
    for h, r in zip(hyps, refs):
        hw, rw = h.split(), r.split()
        exact.append(float(hw == rw))
        correct.append(float(sum(a == b for a, b in zip(hw, rw))))
        lengths.append(float(len(rw)))
        same_len.append(float(len(hw) == len(rw)))
    ci = lambda lo_hi: [round(x, 4) for x in lo_hi]  # noqa: E731
    return {
        "exact_match": round(sum(exact) / len(exact), 4),
        "exact_match_ci95": ci(bootstrap_ci(exact, n_boot=n_boot, seed=seed)),
        "token_accuracy": round(sum(correct) / sum(lengths), 4),
        "token_accuracy_ci95": ci(bootstrap_ci(correct, weights=lengths, n_boot=n_boot, seed=seed)),
        "length_match": round(sum(same_len) / len(same_len), 4),
        "n": len(hyps),
    }


def config(method: str, pairs_path: Path, steps: int, extra: list[str]):
    from sedlm.config import load_config, resolve_config_path

    cfg = load_config(
        resolve_config_path("tiny"),
        [
            f"data.source={pairs_path}",
            "data.task=seq2seq",
            f"train.max_steps={steps}",
            "train.log_every=50",
            f"train.eval_every={max(1, steps // 4)}",
            f"train.checkpoint_every={steps}",
            "train.max_minutes=0",
            *extra,
        ],
    )
    cfg.family = method
    return cfg


def run_task(task: str, args) -> list[dict[str, Any]]:
    from benchmarks.conditional import heldout_pairs, steps_of
    from benchmarks.conditional_scoring import seq2seq_targets
    from sedlm.api import load_pretrained
    from sedlm.bench.systems import match_width
    from sedlm.data.dataset import prepare_data
    from sedlm.families.base import count_parameters
    from sedlm.train.checkpoint import is_checkpoint
    from sedlm.train.trainer import train

    root = Path(args.runs) / task
    root.mkdir(parents=True, exist_ok=True)
    pairs_path = root / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(p) + "\n" for p in make_pairs(task, args.pairs, args.seed)))
    cfgs = {m: config(m, pairs_path, args.steps, args.overrides) for m in args.methods}
    data = prepare_data(cfgs[args.methods[0]].data)
    for cfg in cfgs.values():
        cfg.model.vocab_size = data.tokenizer.vocab_size
    held = heldout_pairs(data, args.n, cfgs[args.methods[0]].data.seq_len)  # validation pairs only
    if "sed" in cfgs and "ar" in cfgs:  # AR at SED's parameter count (frozen table included), as bench compare
        match_width(cfgs["ar"], params_of(cfgs["sed"], data.tokenizer), data)
    rows = []
    for method, cfg in cfgs.items():
        out = root / method
        train_s = None
        if not (args.reuse and is_checkpoint(out)):
            if out.exists():
                shutil.rmtree(out)
            print(f"[{task}] training {method} for {args.steps} steps", flush=True)
            result = train(cfg, out, data=data, progress=False, log=lambda m: print(f"  {m}", flush=True))
            train_s = round(result.elapsed_s, 1)
            print(
                f"  {method}: {result.step} steps in {result.elapsed_s:.0f} s, val loss {result.val_loss}", flush=True
            )
        model = load_pretrained(out)
        gen = {
            "sed": {"sampler": args.sampler, "steps": args.sample_steps},
            "ar": {"temperature": 0.0},
            "mdlm": {"steps": args.sample_steps},
        }[method]
        t0 = time.perf_counter()
        hyps, nfe = seq2seq_targets(model, [s for s, _ in held], seed=args.seed, **gen)
        gen_s = time.perf_counter() - t0
        row = {
            "task": task,
            "method": method,
            "train_steps": steps_of(out),
            "train_s": train_s,
            "params": count_parameters(model.model),
            "sampler": gen.get("sampler", "greedy" if "temperature" in gen else method),
            "nfe": nfe,
            **score(hyps, [t for _, t in held], seed=args.seed),
            "generate_s": round(gen_s, 1),
        }
        print(f"  {method}: exact {row['exact_match']:.3f}, token accuracy {row['token_accuracy']:.3f}", flush=True)
        for (s, t), h in list(zip(held, hyps))[:3]:
            print(f"    src {s!r}\n    tgt {t!r}\n    out {h!r}", flush=True)
        rows.append(row)
    return rows


def params_of(cfg, tok) -> int:
    """Parameters + buffers of ``cfg``'s model, counted on the meta device (nothing allocated)."""
    import torch

    from sedlm.families import get_family
    from sedlm.families.base import count_parameters

    method = get_family(cfg.family)
    with torch.device("meta"):
        table = torch.empty(tok.vocab_size, cfg.model.d_embed) if method.uses_embedding_table else None
        return count_parameters(method.build(cfg, tok, table))


def main() -> int:
    from sedlm.quickstart import DEFAULT_STEPS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    p.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated model families to train (sed, ar, mdlm)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"optimiser steps per model, the same for every method (default: the quickstart's {DEFAULT_STEPS})",
    )
    p.add_argument("--n", type=int, default=256, help="held-out sources to generate targets for")
    p.add_argument("--pairs", type=int, default=20000, help="pairs written per task (5%% go to validation)")
    p.add_argument("--sampler", default="ddpm", help="SED sampler")
    p.add_argument("--sample-steps", type=int, default=200, help="SED sampling steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/seq2seq-synthetic", help="where pairs and runs are written")
    p.add_argument("--reuse", action="store_true", help="evaluate existing runs instead of retraining them")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--name", default="seq2seq-synthetic", help="results file name")
    p.add_argument("overrides", nargs="*", help="extra section.key=value config overrides for every model")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.methods = [m for m in args.methods.split(",") if m]
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        p.error(f"unknown task(s) {', '.join(bad)}; valid tasks: {', '.join(TASKS)}")
    rows = [r for t in tasks for r in run_task(t, args)]
    columns = [c for c in [*COLUMNS, "generate_s"] if any(c in r for r in rows)]
    publish(args.name, "seq2seq_synthetic.py", rows, columns)
    return 0


if __name__ == "__main__":
    run_main(main)
