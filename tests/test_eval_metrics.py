"""Text metrics on hand-built inputs whose values can be computed by hand."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import sedlm.eval.metrics as metrics_mod
from sedlm.errors import SedlmError
from sedlm.eval.metrics import (
    MIN_MAUVE_TEXTS,
    bootstrap_ci,
    distinct_n,
    mauve_score,
    mean_token_entropy,
    real_word_share,
    self_bleu,
    sentence_features,
    text_metrics,
    token_entropy,
    unigram_entropy,
    vocabulary,
    word_tokens,
    word_unigram_entropy,
)

# Shakespeare-flavoured lines from a small grammar, and gibberish of random letter strings.
SUBJ = [
    "the king",
    "my lord",
    "the queen",
    "good sir",
    "the ghost",
    "our army",
    "the fool",
    "fair lady",
    "the prince",
    "my father",
]
VERB = ["doth weep", "shall return", "hath spoken", "doth sleep", "will fight", "did laugh", "must go", "cannot rest"]
TAIL = [
    "within the castle walls",
    "beneath the pale moon",
    "before the break of day",
    "upon the stormy sea",
    "for love of thee",
    "in the dead of night",
    "and speaks no more",
    "with a heavy heart",
]


def verse(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJ).capitalize()} {rng.choice(VERB)} {rng.choice(TAIL)}, "
        f"and {rng.choice(SUBJ)} {rng.choice(VERB)} {rng.choice(TAIL)}."
        for _ in range(n)
    ]


def gibberish(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "qxzjkvwyfpgh"
    return [
        " ".join("".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(12)) for _ in range(n)
    ]


# -- unigram entropy / real-word share (existing behaviour) -------------------------------------
def test_unigram_entropy_of_known_distributions():
    assert unigram_entropy(["a b c d"]) == pytest.approx(2.0)  # 4 equally frequent words
    assert unigram_entropy(["a b", "c d", "a b c d"]) == pytest.approx(2.0)  # pooled over texts
    assert unigram_entropy(["a a a a"]) == pytest.approx(0.0)
    # p = (1/2, 1/4, 1/4): H = 0.5*1 + 2*0.25*2 = 1.5 bits
    assert unigram_entropy(["x x y z"]) == pytest.approx(1.5)
    assert unigram_entropy([]) == 0.0
    assert unigram_entropy is word_unigram_entropy  # the old name is the pooled word-level entropy


# -- per-sample (model-token) entropy -----------------------------------------------------------
def test_token_entropy_of_one_sample():
    assert token_entropy([1, 1, 1, 1]) == 0.0
    assert token_entropy([1, 2, 3, 4]) == pytest.approx(2.0)
    assert token_entropy([7, 7, 8, 9]) == pytest.approx(1.5)  # p = (1/2, 1/4, 1/4)
    assert token_entropy([]) == 0.0
    assert token_entropy(["a", "b"]) == pytest.approx(1.0)  # any hashable token


def test_mean_per_sample_entropy_differs_from_pooled():
    # each sample repeats one token (0 bits each); pooled over samples the 4 tokens are uniform (2 bits)
    ids = [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4]]
    mean, per = mean_token_entropy(ids)
    assert per == [0.0, 0.0, 0.0, 0.0] and mean == 0.0
    pooled = token_entropy([t for x in ids for t in x])
    assert pooled == pytest.approx(2.0)
    mean, per = mean_token_entropy([[1, 2, 3, 4], [1, 1, 1, 1]])
    assert per == pytest.approx([2.0, 0.0]) and mean == pytest.approx(1.0)
    assert math.isnan(mean_token_entropy([])[0])


# -- bootstrap CIs ------------------------------------------------------------------------------
def test_bootstrap_ci_contains_mean_and_is_seeded():
    x = np.random.default_rng(1).exponential(2.0, size=300)
    lo, hi = bootstrap_ci(x, n_boot=500, seed=3)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, n_boot=500, seed=3)  # deterministic for a seed
    assert (lo, hi) != bootstrap_ci(x, n_boot=500, seed=4)
    lo90, hi90 = bootstrap_ci(x, n_boot=500, seed=3, level=0.9)
    assert lo <= lo90 < hi90 <= hi  # a lower level gives a narrower interval
    # about mean ± 1.96 sd / sqrt(n)
    half = 1.96 * x.std() / math.sqrt(len(x))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([5.0]) == (5.0, 5.0)


def test_bootstrap_ci_shrinks_as_one_over_sqrt_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.0, 1.0, size=100), rng.normal(0.0, 1.0, size=1600)
    w_small = np.subtract(*bootstrap_ci(small, n_boot=1000, seed=0)[::-1])
    w_large = np.subtract(*bootstrap_ci(large, n_boot=1000, seed=0)[::-1])
    assert 3.0 < w_small / w_large < 5.3  # sqrt(1600 / 100) = 4


def test_bootstrap_ratio_of_sums_brackets_sum_over_sum():
    # per-text (NLL sum, tokens): 50 short texts at ~10 nats/token, 50 long ones at ~1 nat/token
    rng = np.random.default_rng(0)
    tokens = np.r_[np.full(50, 2.0), np.full(50, 100.0)]
    per_token = np.r_[rng.normal(10.0, 0.5, 50), rng.normal(1.0, 0.05, 50)]
    sums = per_token * tokens
    ratio = sums.sum() / tokens.sum()  # ~1.18 nats/token
    mean_of_ratios = per_token.mean()  # ~5.5
    lo, hi = bootstrap_ci(sums, weights=tokens, n_boot=1000, seed=0)
    assert lo < ratio < hi
    assert not lo < mean_of_ratios < hi and hi < 2.0
    with pytest.raises(ValueError, match="weights"):
        bootstrap_ci([1.0, 2.0], weights=[1.0])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([1.0, float("nan")])


def test_real_word_share():
    vocab = vocabulary(["The king speaks."])
    assert real_word_share(["the king zzq qqz"], vocab) == pytest.approx(0.5)


# -- distinct-n ---------------------------------------------------------------------------------
def test_distinct_n_hand_computed():
    texts = ["the cat sat on the mat", "the cat ran"]
    # unigrams: 9 tokens; unique {the, cat, sat, on, mat, ran} = 6
    assert distinct_n(texts, 1) == pytest.approx(6 / 9)
    # bigrams: 5 + 2 = 7; unique: the-cat, cat-sat, sat-on, on-the, the-mat, cat-ran = 6
    assert distinct_n(texts, 2) == pytest.approx(6 / 7)
    # trigrams: 4 + 1 = 5, all distinct (n-grams never cross texts)
    assert distinct_n(texts, 3) == pytest.approx(1.0)
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    # case-insensitive, punctuation is a token: "hi , hi ." -> {hi, ",", "."} / 4
    assert distinct_n(["Hi, hi."], 1) == pytest.approx(3 / 4)


def test_distinct_n_edge_cases():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["one two"], 3) == 0.0  # no trigram
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)


# -- self-BLEU ----------------------------------------------------------------------------------
def test_self_bleu_identical_is_one_disjoint_near_zero():
    same = ["the quick brown fox jumps over the lazy dog"] * 4
    assert self_bleu(same) == pytest.approx(1.0, abs=1e-6)
    disjoint = ["alpha beta gamma delta epsilon", "one two three four five", "red green blue cyan magenta"]
    assert self_bleu(disjoint) < 0.01
    assert 0.0 <= self_bleu(verse(20, 0)) <= 1.0


def test_self_bleu_orders_repetitive_above_diverse():
    repetitive = ["the king doth weep within the castle walls"] * 5 + ["the king doth weep upon the stormy sea"] * 5
    assert self_bleu(repetitive) > self_bleu(verse(10, 1)) > self_bleu(gibberish(10, 2))


def test_self_bleu_needs_two_texts_and_can_subsample():
    assert math.isnan(self_bleu(["only one text here"]))
    assert math.isnan(self_bleu([]))
    texts = verse(30, 3)
    a, b = self_bleu(texts, sample=10, seed=0), self_bleu(texts, sample=10, seed=0)
    assert a == b and 0.0 < a < 1.0


# -- MAUVE --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mauve_sets():
    return verse(40, 10), verse(40, 11), gibberish(40, 12)


def test_minilm_features_are_unit_norm_and_semantic():
    f = sentence_features(
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    )
    assert f.shape == (3, 384)
    assert (abs((f**2).sum(1) - 1.0) < 1e-5).all()
    sim = f @ f.T
    assert sim[0, 1] > 0.6 > sim[0, 2]  # paraphrase closer than an unrelated sentence


def test_mauve_same_distribution_beats_different(mauve_sets):
    ref, same, other = mauve_sets
    s_same = mauve_score(ref, same)
    s_other = mauve_score(ref, other)
    assert 0.0 < s_other < s_same <= 1.0
    assert s_same > 0.8 and s_other < 0.2
    assert mauve_score(ref, same) == s_same  # seeded: deterministic
    assert mauve_score(ref, other, num_buckets=3) < 0.2


def test_mauve_rejects_tiny_sets_and_unknown_features(mauve_sets):
    ref, same, _ = mauve_sets
    with pytest.raises(SedlmError, match="at least"):
        mauve_score(ref[:1], same)
    with pytest.raises(SedlmError, match="minilm"):
        mauve_score(ref, same, features="bogus")


def test_text_metrics_keys(mauve_sets):
    ref, same, _ = mauve_sets
    vocab = vocabulary(ref)
    m = text_metrics(same, ref, vocab=vocab, min_mauve=len(same))
    assert set(m) == {
        "n_samples",
        "unigram_entropy",
        "unigram_entropy_ci95",
        "entropy_unit",
        "word_entropy",
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "self_bleu",
        "mauve",
        "mauve_n",
        "real_word_share",
    }
    assert m["n_samples"] == 40 and m["mauve_n"] == 40 and 0.0 < m["mauve"] <= 1.0
    assert m["real_word_share"] == pytest.approx(1.0)
    assert m["distinct_1"] == pytest.approx(distinct_n(same, 1))
    few = text_metrics(same[:4], ref[:4])  # too few texts for MAUVE: key left out
    assert "mauve" not in few and "judge_nll" not in few and "real_word_share" not in few


def test_mauve_absent_below_min_mauve(mauve_sets, monkeypatch):
    ref, same, _ = mauve_sets
    assert MIN_MAUVE_TEXTS == 256
    calls = []
    monkeypatch.setattr(metrics_mod, "mauve_score", lambda *a, **k: calls.append(a) or 0.5)
    m = text_metrics(same, ref)  # 40 texts per side < 256
    assert "mauve" not in m and "mauve_n" not in m and not calls
    # one side short of min_mauve (empty texts do not count) is enough to leave MAUVE out
    m = text_metrics(same[:39] + [" "], ref, min_mauve=40)
    assert "mauve" not in m and "mauve_n" not in m and not calls
    m = text_metrics(same, ref, min_mauve=40)
    assert m["mauve"] == 0.5 and m["mauve_n"] == 40 and len(calls) == 1


def test_text_metrics_entropy_is_mean_per_sample():
    texts = ["a a a a", "b b b b", "c c c c", "d d d d"]
    m = text_metrics(texts)  # regex words: each text is one repeated word
    assert m["entropy_unit"] == "word"
    assert m["unigram_entropy"] == 0.0 and m["unigram_entropy_ci95"] == [0.0, 0.0]
    assert m["word_entropy"] == pytest.approx(2.0)  # the pooled column
    ids = [[1, 2, 3, 4], [5, 6, 7, 8], [1, 1, 2, 2], [9, 9, 9, 9]]  # model tokens: 2, 2, 1, 0 bits
    m = text_metrics(texts, sample_ids=ids, n_boot=200)
    assert m["entropy_unit"] == "model_token"
    assert m["unigram_entropy"] == pytest.approx(1.25)
    lo, hi = m["unigram_entropy_ci95"]
    assert 0.0 <= lo < 1.25 < hi <= 2.0
    assert m["word_entropy"] == pytest.approx(2.0)
    v = verse(30, 5)
    m = text_metrics(v, n_boot=0)
    assert m["unigram_entropy"] == pytest.approx(np.mean([token_entropy(word_tokens(t)) for t in v]))
    assert "unigram_entropy_ci95" not in m
    with pytest.raises(SedlmError, match="sample_ids"):
        text_metrics(texts, sample_ids=ids[:3])


def test_text_metrics_bounds_self_bleu_cost(monkeypatch):
    seen = []
    monkeypatch.setattr(metrics_mod, "self_bleu", lambda texts, **k: seen.append((len(texts), k.get("sample"))) or 0.1)
    text_metrics(verse(255, 0), n_boot=0)
    text_metrics(verse(256, 0), n_boot=0)
    assert seen == [(255, None), (256, 128)]
