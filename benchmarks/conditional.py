"""Conditional generation benchmarks: suffix infilling, middle infilling and seq2seq.

suffix   The paper's setting: the first half of each held-out row is given, the second half
         generated. SED at guidance 1, 1.5, 2.5 and 4 next to the AR baseline's continuation of
         the same prefixes and the real continuation (the ``data`` row).
middle   A random middle span of each held-out row (16 tokens) is generated, the rest given. SED at
         guidance 1 and 2.5, MDLM, a unigram baseline (tokens drawn from the training unigram
         distribution) and the real rows (``data``). Token accuracy of the span and judge NLL of the
         filled rows. ``sed-free-blank``: the span becomes a free-length blank of 24 positions (the
         model picks the length; ``fill_tokens`` is how many tokens it wrote, the truth being 16).
seq2seq  A task made of real text: a line of a play -> the line that follows it. A SED model is
         trained on the pairs (data.task=seq2seq: the source is given, the target generated) and an
         AR model of matched parameter count on the same rows (``source <eos> target <eos>``) for the
         same number of steps. BLEU (sacreBLEU) against the real next line at several guidance
         scales, AR's sampled continuation of ``source <eos>``, and the real next line (``data``).

Metrics (field conventions): ``judge_nll`` is the judge's NLL of the generated text given its
context (the prefix, or the source line) in nats per judge token, pooled over samples (token-weighted),
for suffix and seq2seq; of the whole filled row for middle. ``unigram_entropy`` is the mean per-sample
unigram entropy in bits over the MODEL's token ids of the generated part (padding and special tokens
removed). Every ``*_ci95`` is a 95% percentile bootstrap over samples (1,000 resamples; NLL as a
ratio of summed NLL over summed tokens). ``nfe`` counts network rows per sample (a guided step costs
two). ``mean_sample_tokens`` is the mean generated length in model tokens. Rows are held-out:
validation rows / pairs only; too small a validation split is an error.

suffix and middle use the models of `sedlm bench compare` (runs/compare/{sed,ar,mdlm}: matched
size, equal training tokens, same tokenizer). Rerun (n = 256, 200 sampling steps; times measured on
2 shared cores at one thread, ~1 s per SED step on 256 rows of 64 tokens, 2.4 s guided, ~40 s per
256 texts under the judge; --guidance 1,2.5 halves the SED part):
    python benchmarks/conditional.py suffix          # ~30 min
    python benchmarks/conditional.py suffix --sed-runs runs/seeds/sed,runs/blocks/sed_diffusion.block_size-4 \
        --ar-run runs/seeds/ar --guidance 1,2.5 --name block-suffix-shakespeare   # block vs whole-row vs AR
    python benchmarks/conditional.py middle          # ~18 min
    python benchmarks/conditional.py seq2seq         # ~45 min (trains its two models: 6 + ~3 min)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402

from benchmarks.common import publish, run_main  # noqa: E402
from benchmarks.conditional_scoring import (  # noqa: E402
    N_BOOT,
    ConditionalJudge,
    bleu_columns,
    entropy_columns,
    generated,
    heldout_rows,
    nll_columns,
    rounded_ci,
    row_layout,
    sample_counted,
    seq2seq_generate,
)
from sedlm.api import load_pretrained  # noqa: E402
from sedlm.data.corpora import load_documents  # noqa: E402
from sedlm.data.dataset import PreparedData, prepare_data  # noqa: E402
from sedlm.errors import SedlmError  # noqa: E402
from sedlm.eval.harness import content_ids  # noqa: E402
from sedlm.eval.judge import get_judge  # noqa: E402
from sedlm.eval.metrics import bootstrap_ci  # noqa: E402

GUIDANCE = (1.0, 1.5, 2.5, 4.0)
COLUMNS = [
    "method",
    "guidance",
    "nfe",
    "train_steps",
    "token_accuracy",
    "token_accuracy_ci95",
    "bleu",
    "bleu_ci95",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "mean_sample_tokens",
    "fill_tokens",
    "fill_tokens_ci95",
    "n",
]


# --- shared helpers -------------------------------------------------------------------------------


def suffix(args) -> list[dict]:
    """The suffix rows: each diffusion run in ``args.sed_runs`` (default ``RUNS/sed``; a block model
    spends ``--steps`` over its blocks and writes to the row's end) at every guidance scale, then AR."""
    from sedlm.sampling.blocks import per_block_steps

    runs = [Path(r) for r in args.sed_runs.split(",")] if args.sed_runs else [Path(args.runs) / "sed"]
    ar = load_pretrained(Path(args.ar_run) if args.ar_run else Path(args.runs) / "ar")
    tok = ar.tokenizer
    data = prepare_data(ar.config.data, tokenizer=tok)
    rows = heldout_rows(data, args.n)
    n, L = rows.shape
    half = L // 2
    given = torch.zeros(n, L, dtype=torch.bool)
    given[:, :half] = True
    judge = get_judge(args.judge)
    score_nll = ConditionalJudge(judge, tok.decode_batch(rows[:, :half]))

    def row(method: str, cont_ids: list[list[int]], **extra) -> dict:
        conts = [tok.decode(x) for x in cont_ids]
        return {
            "method": method,
            **extra,
            **score_nll(conts, args.seed),
            **entropy_columns(cont_ids, args.seed),
            "n": n,
        }

    halves = [half] * n
    out = [row("data", generated(rows, halves, tok, stop_at_eos=False))]
    for run in runs:
        sed = load_pretrained(run)
        if sed.tokenizer.vocab_size != tok.vocab_size:
            raise SedlmError(f"{run} has another tokenizer than the AR run; the rows must be the same tokens")
        block = sed.config.diffusion.block_size
        kw = {"stop_at_eos": False} if sed.family.option("stop_at_eos") is not None else {}
        steps = per_block_steps(args.steps, block, L)
        label = "sed" if not args.sed_runs else run.name
        # a block model reads the prefix from its finished blocks: guidance on given tokens does not apply
        for s in args.guidance if not 0 < block < L else [1.0]:
            ids, nfe = sample_counted(
                sed, n, steps=steps, guidance=s, seed=args.seed, layout=row_layout(rows, given), **kw
            )
            out.append(row(label, generated(ids, halves, tok, stop_at_eos=False), guidance=s, nfe=nfe))
    # AR continues each row's first half
    ids, nfe = sample_counted(ar, n, seed=args.seed, layout=row_layout(rows, given))
    out.append(row("ar", generated(ids, halves, tok, stop_at_eos=False), nfe=nfe))
    return out


def middle(args) -> list[dict]:
    sed, mdlm = load_pretrained(Path(args.runs) / "sed"), load_pretrained(Path(args.runs) / "mdlm")
    tok = sed.tokenizer
    data = prepare_data(sed.config.data, tokenizer=tok)
    rows = heldout_rows(data, args.n)
    n, L = rows.shape
    span = min(16, L // 2)
    g = torch.Generator().manual_seed(args.seed)
    start = torch.randint(L // 4, L - L // 4 - span + 1, (n,), generator=g)
    pos = torch.arange(L)[None]
    hole = (pos >= start[:, None]) & (pos < start[:, None] + span)
    judge = get_judge(args.judge)
    counts = torch.bincount(data.train.rows[:].flatten(), minlength=tok.vocab_size).float()

    def row(method: str, filled: torch.Tensor, nfe: float | None = None, **extra) -> dict:
        per_acc = (filled == rows).float().masked_fill(~hole, 0).sum(1) / hole.sum(1)  # (n,) equal spans
        res = judge.nll(tok.decode_batch(filled))
        middles = content_ids(tok, [f[h].tolist() for f, h in zip(filled, hole)])
        return {
            "method": method,
            **extra,
            **({"nfe": nfe} if nfe is not None else {}),
            "token_accuracy": round(per_acc.mean().item(), 4),
            "token_accuracy_ci95": rounded_ci(bootstrap_ci(per_acc.tolist(), n_boot=N_BOOT, seed=args.seed)),
            **nll_columns(res["per_text_nll_sum"], res["per_text_tokens"], args.seed),
            **entropy_columns(middles, args.seed),
            "n": n,
        }

    out = [row("data", rows)]
    layout = row_layout(rows, ~hole)
    for s in (1.0, 2.5):
        ids, nfe = sample_counted(sed, n, steps=args.steps, guidance=s, seed=args.seed, layout=layout)
        out.append(row("sed", ids, nfe, guidance=s))
    out.append(free_blank_row(sed, rows, start, span, judge, args))
    ids, nfe = sample_counted(mdlm, n, steps=args.steps, seed=args.seed, layout=layout)
    out.append(row("mdlm", ids, nfe))
    unigram = torch.multinomial(counts / counts.sum(), n * L, replacement=True, generator=g).view(n, L)
    out.append(row("unigram", torch.where(hole, unigram, rows)))
    return out


def free_blank_row(sed, rows: torch.Tensor, start: torch.Tensor, span: int, judge, args, extra: int = 8) -> dict:
    """A free-length blank (``[___]``): the true middle of ``span`` tokens is replaced by a window of
    ``span + extra`` generated positions with no length given (the row's tail shifts right, its last
    ``extra`` tokens dropped). The model writes text and pads the rest of the window; ``fill_tokens``
    is how much text it wrote (the truth is ``span``), scored with the judge NLL of the filled rows."""
    tok = sed.tokenizer
    n, L = rows.shape
    W = span + extra
    ids = torch.full((n, L), tok.pad_id, dtype=torch.long)
    given = torch.ones(n, L, dtype=torch.bool)
    for i, a in enumerate(start.tolist()):
        ids[i, :a] = rows[i, :a]
        ids[i, a + W :] = rows[i, a + span : L - extra]
        given[i, a : a + W] = False
    out, nfe = sample_counted(sed, n, steps=args.steps, seed=args.seed, layout=row_layout(ids, given))
    fills = content_ids(tok, [o[~g].tolist() for o, g in zip(out, given)])
    lengths = [float(len(f)) for f in fills]
    res = judge.nll(tok.decode_batch(out))
    return {
        "method": "sed-free-blank",
        "guidance": 1.0,
        "nfe": nfe,
        "fill_tokens": round(sum(lengths) / n, 2),
        "fill_tokens_ci95": rounded_ci(bootstrap_ci(lengths, n_boot=N_BOOT, seed=args.seed)),
        **nll_columns(res["per_text_nll_sum"], res["per_text_tokens"], args.seed),
        **entropy_columns(fills, args.seed),
        "n": n,
    }


def next_line_pairs(corpus: str, min_words: int = 4) -> list[dict]:
    """Consecutive lines of verse/prose within a speech: line i -> line i + 1."""
    pairs = []
    for doc in load_documents(f"corpus:{corpus}"):
        for block in doc.split("\n\n"):
            lines = [ln.strip() for ln in block.split("\n")]
            lines = [ln for ln in lines if len(ln.split()) >= min_words and not ln.isupper()]
            pairs += [{"src": a, "tgt": b} for a, b in zip(lines, lines[1:])]
    return pairs


def heldout_pairs(data: PreparedData, n: int, seq_len: int) -> list[tuple[str, str]]:
    """The first ``n`` validation pairs whose source fits the canvas (as training drops the others)."""
    tok = data.tokenizer
    fits = [
        p for p, ids in zip(data.val_pairs, tok.encode_batch([s for s, _ in data.val_pairs])) if len(ids) + 1 < seq_len
    ]
    if len(fits) < n:
        raise SedlmError(
            f"the validation split holds {len(fits)} pairs whose source fits data.seq_len={seq_len}, "
            f"but --n {n} are needed; lower --n or raise data.val_fraction"
        )
    return fits[:n]


def _train_seq2seq(run: Path, data_source: Path, overrides: list[str], method: str, match: Path | None = None):
    """Train a seq2seq run of ``method`` unless ``run`` already holds one. With ``match``, the run gets
    that run's step count (equal training tokens) and a width matched to its parameter count."""
    from sedlm.bench.systems import match_width
    from sedlm.config import load_config, resolve_config_path
    from sedlm.families.base import count_parameters
    from sedlm.train.trainer import train

    if (run / "model.safetensors").is_file():
        return
    cfg = load_config(resolve_config_path("tiny"), [f"data.source={data_source}", "data.task=seq2seq", *overrides])
    cfg.family = method
    if match is not None:
        ref = load_pretrained(match)
        data = prepare_data(cfg.data, tokenizer=ref.tokenizer)
        cfg.model.vocab_size = ref.tokenizer.vocab_size
        match_width(cfg, count_parameters(ref.model), data)
        cfg.train.max_steps, cfg.train.max_minutes = steps_of(match), 0.0
        cfg.train.checkpoint_every = cfg.train.max_steps
        train(cfg, run, data=data)
    else:
        train(cfg, run)


def steps_of(run: Path) -> int:
    """The last logged optimiser step of a training run."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return int(json.loads(lines[-1])["step"])


def seq2seq(args) -> list[dict]:
    root = Path(args.runs)
    sed_run, ar_run = root / "seq2seq-next-line", root / "seq2seq-next-line-ar"
    pairs_path = root / "next-line.jsonl"
    if not pairs_path.is_file():
        pairs_path.parent.mkdir(parents=True, exist_ok=True)
        pairs_path.write_text("\n".join(json.dumps(p) for p in next_line_pairs(args.corpus)))
    common = [f"train.max_steps={args.train_steps}", *args.overrides]
    _train_seq2seq(sed_run, pairs_path, common, "sed")
    _train_seq2seq(ar_run, pairs_path, common, "ar", match=sed_run)
    sed, ar = load_pretrained(sed_run), load_pretrained(ar_run)
    data = prepare_data(sed.config.data, tokenizer=sed.tokenizer)
    tok, L = sed.tokenizer, sed.config.data.seq_len
    pairs = heldout_pairs(data, args.n, L)
    srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
    judge = get_judge(args.judge)
    score_nll = ConditionalJudge(judge, [s + "\n" for s in srcs])

    def row(method: str, hyp_ids: list[list[int]], **extra) -> dict:
        hyps = [tok.decode(x).strip() for x in hyp_ids]
        return {
            "method": method,
            **extra,
            **bleu_columns(hyps, refs, args.seed),
            **score_nll(hyps, args.seed),
            **entropy_columns(hyp_ids, args.seed),
            "n": len(pairs),
        }

    # the real next line, cut to what fits the canvas after its source, as in training
    ref_ids = [tok.encode(t)[: L - len(tok.encode(s)) - 1] for s, t in pairs]
    out = [row("data", content_ids(tok, ref_ids))]
    for s in args.guidance:
        ids, nfe = seq2seq_generate(sed, srcs, seed=args.seed, steps=args.steps, guidance=s)
        out.append(row("sed", ids, guidance=s, nfe=nfe, train_steps=steps_of(sed_run)))
    ids, nfe = seq2seq_generate(ar, srcs, seed=args.seed)
    out.append(row("ar", ids, nfe=nfe, train_steps=steps_of(ar_run)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["suffix", "middle", "seq2seq"])
    p.add_argument(
        "--runs",
        default="runs/compare",
        help="suffix/middle: folder with the sed/ar/mdlm runs of `sedlm bench compare`; seq2seq: where its "
        "pairs file and its two runs (seq2seq-next-line, seq2seq-next-line-ar) are written",
    )
    p.add_argument(
        "--sed-runs",
        default="",
        help="suffix: comma-separated diffusion run folders to compare with AR, each labelled by its folder "
        "name (default: RUNS/sed, labelled sed); block models (diffusion.block_size) spend --steps over their blocks",
    )
    p.add_argument("--ar-run", default="", help="suffix: the AR run folder (default: RUNS/ar)")
    p.add_argument("--corpus", default="shakespeare", help="bundled corpus (names the results; seq2seq data)")
    p.add_argument("--n", type=int, default=256, help="held-out rows / pairs (validation split only)")
    p.add_argument("--steps", type=int, default=200, help="sampling steps for sed and mdlm")
    p.add_argument("--judge", default="smollm2", help="judge LM: smollm2 (bundled), a local folder or a hub name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--guidance",
        default=",".join(f"{g:g}" for g in GUIDANCE),
        help="suffix/seq2seq: comma-separated SED guidance scales (middle runs 1 and 2.5)",
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1 when the cores are shared)"
    )
    p.add_argument(
        "--train-steps",
        type=int,
        default=1500,
        help="seq2seq: SED's training budget in optimiser steps (AR gets its steps)",
    )
    p.add_argument("--name", default=None, help="results file name (default per task)")
    p.add_argument("overrides", nargs="*", help="seq2seq: extra section.key=value overrides for both models")
    args = p.parse_intermixed_args()
    args.guidance = [float(g) for g in args.guidance.split(",") if g]
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {"suffix": suffix, "middle": middle, "seq2seq": seq2seq}[args.task](args)
    name = (
        args.name
        or {
            "suffix": f"infill-suffix-{args.corpus}",
            "middle": f"infill-middle-{args.corpus}",
            "seq2seq": "seq2seq-next-line",
        }[args.task]
    )
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    publish(name, "conditional.py", rows, columns)
    return 0


if __name__ == "__main__":
    run_main(main)
