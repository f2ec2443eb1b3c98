"""Scoring and sampling helpers of the conditional-generation benchmarks (``conditional.py``): held-out rows,
judge NLL of generated text given its context, entropy and BLEU columns with bootstrap CIs, counted sampling,
and seq2seq generation."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import torch  # noqa: E402

from sedlm.data.dataset import PreparedData  # noqa: E402
from sedlm.errors import SedlmError  # noqa: E402
from sedlm.eval.harness import CallCounter, content_ids  # noqa: E402
from sedlm.eval.metrics import bootstrap_ci, mean_token_entropy  # noqa: E402
from sedlm.sampling.templates import Layout, layout_source  # noqa: E402

N_BOOT = 1000


def rounded_ci(lo_hi: tuple[float, float]) -> list[float]:
    return [round(x, 4) for x in lo_hi]


def heldout_rows(data: PreparedData, n: int) -> torch.Tensor:
    """The first ``n`` validation rows (N, L) as packed (no random padding). Never training rows."""
    have = 0 if data.val is None else len(data.val)
    if have < n:
        raise SedlmError(
            f"the validation split holds {have} rows of data.seq_len tokens but --n {n} are needed; "
            "lower --n or train with a larger data.val_fraction"
        )
    return torch.as_tensor(data.val.rows[:n])


def entropy_columns(ids: Sequence[Sequence[int]], seed: int = 0) -> dict[str, Any]:
    """Mean per-sample unigram entropy (bits) over model token ids, its bootstrap CI and the mean length."""
    mean_h, per = mean_token_entropy(ids)
    return {
        "unigram_entropy": round(mean_h, 4),
        "unigram_entropy_ci95": rounded_ci(bootstrap_ci(per, n_boot=N_BOOT, seed=seed)),
        "mean_sample_tokens": round(sum(map(len, ids)) / max(1, len(ids)), 2),
    }


def nll_columns(sums: Sequence[float], tokens: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Token-weighted judge NLL (sum of NLL over sum of tokens) and its bootstrap CI over texts."""
    kept = [(s, c) for s, c in zip(sums, tokens) if c > 0]
    total = sum(c for _, c in kept)
    nll = sum(s for s, _ in kept) / total if total else float("nan")
    lo_hi = bootstrap_ci([s for s, _ in kept], weights=[c for _, c in kept], n_boot=N_BOOT, seed=seed)
    return {"judge_nll": round(nll, 4), "judge_nll_ci95": rounded_ci(lo_hi)}


class ConditionalJudge:
    """Judge NLL of continuations given fixed contexts, per text, so that it can be bootstrapped:
    NLL(context + continuation) - NLL(context) over tokens(context + continuation) - tokens(context),
    the same difference of totals as ``Judge.conditional_nll``, kept per pair. The contexts are scored once."""

    def __init__(self, judge, contexts: list[str]):
        self.judge = judge
        self.contexts = contexts
        res = judge.nll(contexts)
        self.ctx_sums, self.ctx_tokens = res["per_text_nll_sum"], res["per_text_tokens"]

    def __call__(self, continuations: list[str], seed: int = 0) -> dict[str, Any]:
        res = self.judge.nll([c + x for c, x in zip(self.contexts, continuations)])
        sums = [j - c for j, c in zip(res["per_text_nll_sum"], self.ctx_sums)]
        tokens = [j - c for j, c in zip(res["per_text_tokens"], self.ctx_tokens)]
        return nll_columns(sums, tokens, seed)


def bleu_columns(hyps: list[str], refs: list[str], seed: int = 0) -> dict[str, Any]:
    """Corpus BLEU (sacreBLEU defaults) and a 95% percentile bootstrap CI over sentences."""
    import numpy as np
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    score = bleu.corpus_score(hyps, [refs]).score
    stats = []
    for h, r in zip(hyps, refs):  # per-sentence sufficient statistics, summed per resample
        s = bleu.corpus_score([h], [[r]])
        stats.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
    stats = np.asarray(stats, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(N_BOOT):
        t = stats[rng.integers(0, len(stats), len(stats))].sum(0)
        boot.append(
            BLEU.compute_bleu(
                t[:4].tolist(),
                t[4:8].tolist(),
                int(t[8]),
                int(t[9]),
                smooth_method=bleu.smooth_method,
                smooth_value=bleu.smooth_value,
                effective_order=bleu.effective_order,
            ).score
        )
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"bleu": round(score, 2), "bleu_ci95": [round(float(lo), 2), round(float(hi), 2)]}


def generated(ids: torch.Tensor, starts: Sequence[int], tok, stop_at_eos: bool) -> list[list[int]]:
    """Each row's generated part ``ids[i, starts[i]:]``, cut before its first end-of-document token when
    ``stop_at_eos`` (a seq2seq target ends there), padding and special tokens removed."""
    out = []
    for row, k in zip(ids.tolist(), starts):
        part = row[k:]
        if stop_at_eos and tok.eos_id in part:
            part = part[: part.index(tok.eos_id)]
        out.append(part)
    return content_ids(tok, out)


def sample_counted(model, n: int, **kw) -> tuple[torch.Tensor, float]:
    """``model.generate_ids(n, **kw)`` and its network rows per sample (NFE; a guided call counts twice)."""
    counter = CallCounter(model.model)
    try:
        ids = model.generate_ids(n, **kw)
    finally:
        counter.close()
    return ids, round(counter.rows / max(n, 1), 1)


def seq2seq_generate(model, sources: list[str], *, seed: int = 0, **gen: Any) -> tuple[list[list[int]], float]:
    """Target token ids (content only, up to the target's <eos>) for each source, and NFE per sample.

    Every source is laid out as in training (``layout_source``: ``source <eos>`` given, the rest
    generated), one canvas per row, and every family generates through its own ``generate_ids``
    (diffusion families fill the canvas; the AR baseline continues ``source <eos>``). ``gen`` goes to
    the family's sampler (SED/MDLM options; AR ``temperature``/``top_p``)."""
    tok, L = model.tokenizer, model.config.data.seq_len
    lays = [layout_source(s, tok, L) for s in sources]
    starts = [int(x.given.sum()) for x in lays]
    layout = Layout(
        torch.stack([x.ids for x in lays]), torch.stack([x.given for x in lays]), torch.zeros(L, dtype=torch.bool)
    )
    ids, nfe = sample_counted(model, len(sources), seed=seed, layout=layout, **gen)
    return generated(ids, starts, tok, stop_at_eos=True), nfe


def seq2seq_targets(model, sources: list[str], *, seed: int = 0, **gen: Any) -> tuple[list[str], float]:
    """Decoded targets of ``seq2seq_generate`` and NFE per sample."""
    ids, nfe = seq2seq_generate(model, sources, seed=seed, **gen)
    return [model.tokenizer.decode(x).strip() for x in ids], nfe


def row_layout(ids: torch.Tensor, given: torch.Tensor) -> Layout:
    return Layout(ids, given, torch.zeros(ids.shape[1], dtype=torch.bool))


# --- benchmarks -----------------------------------------------------------------------------------
