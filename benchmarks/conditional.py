"""Conditional generation benchmarks: suffix infilling, middle infilling and seq2seq.

suffix   The paper's setting: the first half of each held-out row is given, the second half
         generated. SED at guidance 1, 1.5, 2.5 and 4 next to the AR baseline's continuation of
         the same prefixes and the real continuation. Judge NLL of the continuation given its prefix
         (nats/token, SmolLM2) and unigram entropy of the continuations.
middle   A random middle span of each held-out row (16 tokens) is generated, the rest given. Token
         accuracy and judge NLL of the filled rows for SED, MDLM and a unigram baseline (tokens drawn
         from the training unigram distribution).
seq2seq  A task made of real text: a line of a play -> the line that follows it. A SED model is
         trained on it (sedlm train --task seq2seq); BLEU (sacreBLEU) against the real next line
         and judge NLL of the output given the source, at several guidance scales.

suffix and middle use the models of `sedlm bench compare` (runs/compare/{sed,ar,mdlm}: matched
size, equal training tokens, same tokenizer). Rerun:
    python benchmarks/conditional.py suffix          # ~5 min on 2 cores
    python benchmarks/conditional.py middle          # ~3 min
    python benchmarks/conditional.py seq2seq         # ~10 min (trains its model)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402

from benchmarks.common import publish, run_main  # noqa: E402
from sedlm.api import load_pretrained  # noqa: E402
from sedlm.baselines.ar import ar_generate  # noqa: E402
from sedlm.data.corpora import load_documents  # noqa: E402
from sedlm.data.dataset import prepare_data  # noqa: E402
from sedlm.eval.judge import get_judge  # noqa: E402
from sedlm.eval.metrics import unigram_entropy  # noqa: E402
from sedlm.sampling.templates import Layout, layout_source  # noqa: E402

GUIDANCE = (1.0, 1.5, 2.5, 4.0)
COLUMNS = ["method", "guidance", "nfe", "token_accuracy", "bleu", "judge_nll", "unigram_entropy", "n"]


def heldout_rows(model, n: int) -> tuple[torch.Tensor, object]:
    data = prepare_data(model.config.data, tokenizer=model.tokenizer)
    rows = (data.val if data.val is not None and len(data.val) >= n else data.train).rows[:n]
    return rows, data


def batch_layout(ids: torch.Tensor, given: torch.Tensor) -> Layout:
    return Layout(ids, given, torch.zeros(ids.shape[1], dtype=torch.bool))


def suffix(args) -> list[dict]:
    sed, ar = load_pretrained(Path(args.runs) / "sed"), load_pretrained(Path(args.runs) / "ar")
    rows, _ = heldout_rows(sed, args.n)
    n, L = rows.shape
    half = L // 2
    given = torch.zeros(n, L, dtype=torch.bool)
    given[:, :half] = True
    tok, judge = sed.tokenizer, get_judge(args.judge)
    prefixes = tok.decode_batch(rows[:, :half])

    def row(method: str, conts: list[str], **extra) -> dict:
        return {"method": method, **extra, "judge_nll": round(judge.conditional_nll(prefixes, conts), 4),
                "unigram_entropy": round(unigram_entropy(conts), 4), "n": n}

    out = [row("data", tok.decode_batch(rows[:, half:]))]
    for s in GUIDANCE:
        ids = sed.generate_ids(n, steps=args.steps, guidance=s, seed=0, layout=batch_layout(rows, given))
        out.append(row("sed", tok.decode_batch(ids[:, half:]), guidance=s, nfe=args.steps))
    start = torch.cat([torch.full((n, 1), tok.eos_id), rows[:, :half]], dim=1)
    ids = ar_generate(ar.model, start, L - half, temperature=ar.config.sample.temperature, top_p=ar.config.sample.top_p,
                      generator=torch.Generator().manual_seed(0))
    out.append(row("ar", tok.decode_batch(ids[:, 1 + half:]), nfe=L - half))
    return out


def middle(args) -> list[dict]:
    sed, mdlm = load_pretrained(Path(args.runs) / "sed"), load_pretrained(Path(args.runs) / "mdlm")
    rows, data = heldout_rows(sed, args.n)
    n, L = rows.shape
    span = min(16, L // 2)
    g = torch.Generator().manual_seed(0)
    start = torch.randint(L // 4, L - L // 4 - span + 1, (n,), generator=g)
    pos = torch.arange(L)[None]
    hole = (pos >= start[:, None]) & (pos < start[:, None] + span)
    tok, judge = sed.tokenizer, get_judge(args.judge)
    counts = torch.bincount(data.train.rows.flatten(), minlength=tok.vocab_size).float()

    def row(method: str, filled: torch.Tensor, **extra) -> dict:
        acc = (filled[hole] == rows[hole]).float().mean().item()
        texts = tok.decode_batch(filled)
        middles = [tok.decode(f[h].tolist()) for f, h in zip(filled, hole)]
        return {"method": method, **extra, "token_accuracy": round(acc, 4),
                "judge_nll": round(judge.nll(texts)["nll_per_token"], 4),
                "unigram_entropy": round(unigram_entropy(middles), 4), "n": n}

    out = [row("data", rows)]
    layout = batch_layout(rows, ~hole)
    for s in (1.0, 2.5):
        out.append(row("sed", sed.generate_ids(n, steps=args.steps, guidance=s, seed=0, layout=layout), guidance=s))
    out.append(row("mdlm", mdlm.generate_ids(n, steps=args.steps, seed=0, layout=layout)))
    unigram = torch.multinomial(counts / counts.sum(), n * L, replacement=True, generator=g).view(n, L)
    out.append(row("unigram", torch.where(hole, unigram, rows)))
    return out


def next_line_pairs(corpus: str, min_words: int = 4) -> list[dict]:
    """Consecutive lines of verse/prose within a speech: line i -> line i + 1."""
    pairs = []
    for doc in load_documents(f"corpus:{corpus}"):
        for block in doc.split("\n\n"):
            lines = [ln.strip() for ln in block.split("\n")]
            lines = [ln for ln in lines if len(ln.split()) >= min_words and not ln.isupper()]
            pairs += [{"src": a, "tgt": b} for a, b in zip(lines, lines[1:])]
    return pairs


def seq2seq(args) -> list[dict]:
    import sacrebleu

    from sedlm.cli import resolve_config_path
    from sedlm.config import load_config
    from sedlm.train.trainer import train

    run = Path(args.runs) / "seq2seq-next-line"
    pairs_path = run.parent / "next-line.jsonl"
    if not (run / "model.safetensors").is_file():
        pairs_path.parent.mkdir(parents=True, exist_ok=True)
        pairs_path.write_text("\n".join(json.dumps(p) for p in next_line_pairs(args.corpus)))
        cfg = load_config(resolve_config_path("tiny"), [f"data.source={pairs_path}", "data.task=seq2seq",
                                                        f"train.max_minutes={args.train_minutes}", "train.max_steps=3000"])
        train(cfg, run)
    model = load_pretrained(run)
    data = prepare_data(model.config.data, tokenizer=model.tokenizer)
    pairs = data.val_pairs[: args.n]
    judge = get_judge(args.judge)
    L = model.config.data.seq_len
    lays = [layout_source(src, model.tokenizer, L) for src, _ in pairs]
    layout = batch_layout(torch.stack([x.ids for x in lays]), torch.stack([x.given for x in lays]))
    starts = [int(x.given.sum()) for x in lays]
    out = []
    for s in GUIDANCE:
        ids = model.generate_ids(len(pairs), steps=args.steps, guidance=s, seed=0, layout=layout)
        hyps = [model.tokenizer.decode(r[k:].tolist()).strip() for r, k in zip(ids, starts)]
        out.append({"method": "sed", "guidance": s, "nfe": args.steps,
                    "bleu": round(sacrebleu.corpus_bleu(hyps, [[t for _, t in pairs]]).score, 2),
                    "judge_nll": round(judge.conditional_nll([p + "\n" for p, _ in pairs], hyps), 4),
                    "unigram_entropy": round(unigram_entropy(hyps), 4), "n": len(pairs)})
    refs = [t for _, t in pairs]
    out.append({"method": "data", "bleu": 100.0, "judge_nll": round(judge.conditional_nll([p + "\n" for p, _ in pairs], refs), 4),
                "unigram_entropy": round(unigram_entropy(refs), 4), "n": len(pairs)})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["suffix", "middle", "seq2seq"])
    p.add_argument("--runs", default="runs/compare", help="folder with the sed/ar/mdlm runs of `sedlm bench compare`")
    p.add_argument("--corpus", default="shakespeare", help="bundled corpus (names the results; seq2seq data)")
    p.add_argument("--n", type=int, default=64, help="held-out rows / pairs")
    p.add_argument("--steps", type=int, default=200, help="sampling steps for sed and mdlm")
    p.add_argument("--judge", default="smollm2")
    p.add_argument("--train-minutes", type=float, default=6.0, help="seq2seq: training budget")
    args = p.parse_args()
    rows = {"suffix": suffix, "middle": middle, "seq2seq": seq2seq}[args.task](args)
    name = {"suffix": f"infill-suffix-{args.corpus}", "middle": f"infill-middle-{args.corpus}",
            "seq2seq": "seq2seq-next-line"}[args.task]
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    publish(name, "conditional.py", rows, columns)
    return 0


if __name__ == "__main__":
    run_main(main)
