"""Smoke tests of the conditional-generation benchmark scripts at micro size (seconds, untrained or
two-step models): they run end to end, score only held-out text, and produce the result columns."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from conftest import TINY

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: the `benchmarks` package

from benchmarks import conditional  # noqa: E402
from benchmarks import conditional_scoring as scoring  # noqa: E402
from benchmarks import seq2seq_synthetic as synth

MICRO = [o for o in TINY if not o.startswith(("data.seq_len", "data.vocab_size", "data.val_fraction"))]


def test_synthetic_pairs_are_deterministic_and_follow_the_task():
    copy, wordmap = synth.make_pairs("copy", 50, seed=3), synth.make_pairs("wordmap", 50, seed=3)
    assert copy == synth.make_pairs("copy", 50, seed=3)
    assert all(p["src"] == p["tgt"] for p in copy)
    assert all(synth.MIN_WORDS <= len(p["src"].split()) <= synth.MAX_WORDS for p in copy)
    mapping = {}
    for p in wordmap:
        for a, b in zip(p["src"].split(), p["tgt"].split(), strict=True):
            assert mapping.setdefault(a, b) == b  # a fixed map ...
    assert len(set(mapping.values())) == len(mapping)  # ... one to one
    assert not set(mapping) & set(mapping.values())  # onto another word list
    other = synth.make_pairs("wordmap25", 400, seed=3)
    words = {w for p in other for w in p["src"].split()}
    assert len(words) == 25 and not words & {w for p in wordmap for w in (p["src"] + " " + p["tgt"]).split()}
    with pytest.raises(ValueError):
        synth.make_pairs("reverse", 1)


def test_synthetic_score():
    s = synth.score(["a b c", "a x", "a b c d"], ["a b c", "a b", "a b c"], n_boot=50)
    assert s["exact_match"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["token_accuracy"] == pytest.approx((3 + 1 + 3) / 8)  # position-wise, over target words
    assert s["length_match"] == pytest.approx(2 / 3, abs=1e-4)
    lo, hi = s["token_accuracy_ci95"]
    assert lo <= s["token_accuracy"] <= hi and s["n"] == 3


def test_synthetic_runs_end_to_end(tmp_path):
    args = Namespace(
        runs=str(tmp_path),
        pairs=400,
        seed=0,
        steps=2,
        n=4,
        methods=["sed", "ar"],
        reuse=False,
        sampler="ddim",
        sample_steps=2,
        overrides=[*MICRO, "train.max_steps=2", "train.eval_batches=1"],
    )
    rows = synth.run_task("copy", args)
    assert [r["method"] for r in rows] == ["sed", "ar"]
    for r in rows:
        assert r["train_steps"] == 2 and r["n"] == 4 and 0.0 <= r["token_accuracy"] <= 1.0
        assert len(r["exact_match_ci95"]) == 2 and len(r["token_accuracy_ci95"]) == 2
    assert (tmp_path / "copy" / "pairs.jsonl").is_file()


def _checkpoint(out: Path, method: str, source: Path, *over: str) -> None:
    """An untrained TINY checkpoint of ``method`` whose data is ``source`` (one tokenizer for all)."""
    from sedlm.data.dataset import prepare_data
    from sedlm.families import get_family, load_config
    from sedlm.model.embedding import random_table
    from sedlm.train.checkpoint import save_checkpoint

    cfg = load_config(None, [*TINY, f"data.source={source}", *over])
    cfg.family = method
    tok = prepare_data(cfg.data).tokenizer
    cfg.model.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    model = get_family(method).build(
        cfg, tok, random_table(tok.vocab_size, cfg.model.d_embed, torch.Generator().manual_seed(0))
    )
    save_checkpoint(out, cfg, model.state_dict(), tok)


@pytest.fixture(scope="module")
def compare_runs(tmp_path_factory, corpus_file):
    root = tmp_path_factory.mktemp("compare")
    for m in ("sed", "ar", "mdlm"):
        _checkpoint(root / m, m, corpus_file)
    _checkpoint(root / "sed-b4", "sed", corpus_file, "diffusion.block_size=4")
    return root


def test_suffix_and_middle_rows(compare_runs, tiny_judge_dir):
    args = Namespace(
        runs=str(compare_runs),
        n=4,
        steps=2,
        judge=str(tiny_judge_dir),
        seed=0,
        guidance=list(conditional.GUIDANCE),
        sed_runs="",
        ar_run="",
    )
    suffix = conditional.suffix(args)
    assert [r["method"] for r in suffix] == ["data", "sed", "sed", "sed", "sed", "ar"]
    both = f"{compare_runs / 'sed'},{compare_runs / 'sed-b4'}"
    rows = conditional.suffix(Namespace(**{**vars(args), "sed_runs": both, "guidance": [1.0]}))
    assert [r["method"] for r in rows] == ["data", "sed", "sed-b4", "ar"]  # a block model continues the prefixes too
    assert rows[2]["n"] == 4 and rows[2]["judge_nll"] > 0
    middle = conditional.middle(args)
    assert [r["method"] for r in middle] == ["data", "sed", "sed", "sed-free-blank", "mdlm", "unigram"]
    assert 0 <= middle[3]["fill_tokens"] <= 24  # text written into the 24-position free blank
    assert middle[0]["token_accuracy"] == 1.0
    for r in suffix + middle:
        assert r["n"] == 4
        for key in ("judge_nll", "unigram_entropy"):
            lo, hi = r[f"{key}_ci95"]
            assert lo <= r[key] + 1e-3 and r[key] <= hi + 1e-3, (r["method"], key)
    assert suffix[1]["nfe"] == 2 and suffix[2]["nfe"] == 4  # a guided step runs two rows


def test_heldout_rows_never_fall_back_to_training_rows(compare_runs):
    from sedlm.api import load_pretrained
    from sedlm.data.dataset import prepare_data
    from sedlm.errors import SedlmError

    model = load_pretrained(compare_runs / "sed")
    data = prepare_data(model.config.data, tokenizer=model.tokenizer)
    assert torch.equal(scoring.heldout_rows(data, 2), data.val.rows[:2])
    with pytest.raises(SedlmError, match="validation split"):
        scoring.heldout_rows(data, len(data.val) + 1)


def test_bleu_and_nll_columns():
    b = scoring.bleu_columns(["the king speaks now", "a fool"], ["the king speaks now", "a fool waits"])
    assert 0 < b["bleu"] <= 100 and b["bleu_ci95"][0] <= b["bleu_ci95"][1]
    nll = scoring.nll_columns([4.0, 6.0, 0.0], [2, 2, 0])
    assert nll["judge_nll"] == pytest.approx(2.5) and 2.0 <= nll["judge_nll_ci95"][0] <= nll["judge_nll_ci95"][1] <= 3.0


def test_tokenizer_ablation_rows_on_a_micro_budget(tmp_path, tiny_judge_dir, corpus_file):
    import importlib

    from sedlm.eval.judge import get_judge

    tokenizers = importlib.import_module("benchmarks.tokenizer_ablation")
    over = [*MICRO, f"data.source={corpus_file}", "train.eval_batches=1", "data.val_fraction=0.1"]
    judge = get_judge(str(tiny_judge_dir))
    rows = tokenizers.run("word-8k", 2, 4, 60, 2, judge, tmp_path, [*over, "data.vocab_size=300"])
    assert [r["method"] for r in rows] == ["sed", "ar", "data"]
    sed, ar, data = rows
    assert sed["vocab_size"] == ar["vocab_size"] <= 304 and sed["chars_per_token"] > 2  # words, not bytes
    assert sed["eval_tokens"] == ar["eval_tokens"] == data["eval_tokens"]  # equal-length sets
    assert abs(ar["params"] - sed["params"]) / sed["params"] <= 0.10


def test_tokenizer_ablation_reuses_only_a_finished_matching_run(tmp_path, tiny_judge_dir, corpus_file):
    import importlib

    from sedlm.eval.judge import get_judge

    tokenizers = importlib.import_module("benchmarks.tokenizer_ablation")
    micro = [o for o in MICRO if not o.startswith("train.max_steps")]  # the step count is run()'s argument
    over = [
        *micro,
        f"data.source={corpus_file}",
        "train.eval_batches=1",
        "data.val_fraction=0.1",
        "data.vocab_size=300",
    ]
    judge = get_judge(str(tiny_judge_dir))
    before = tokenizers.run("word-8k", 2, 4, 60, 2, judge, tmp_path, over)
    weights = tmp_path / "word-8k-sed" / "model.safetensors"
    first = weights.stat().st_mtime_ns
    rows = tokenizers.run("word-8k", 2, 4, 60, 2, judge, tmp_path, [*over, "sample.score_temp=0.6"], reuse=True)
    assert weights.stat().st_mtime_ns == first  # rescored, not retrained
    sed, sed_before = (next(r for r in rs if r["method"] == "sed") for rs in (rows, before))
    assert sed["value"] == 0.6 and sed_before["value"] != 0.6  # sampled with this command's settings, not the saved
    assert sed["unigram_entropy"] != sed_before["unigram_entropy"]
    tokenizers.run("word-8k", 3, 4, 60, 2, judge, tmp_path, over, reuse=True)
    assert weights.stat().st_mtime_ns != first  # a different step count trains again


def test_tokenizer_ablation_reuse_ignores_vocab_size_only_for_a_fixed_tokenizer(tmp_path):
    import importlib

    from sedlm.config import resolve_config_path
    from sedlm.families import load_config

    tokenizers = importlib.import_module("benchmarks.tokenizer_ablation")

    def cfg(*over: str):
        return load_config(resolve_config_path("tiny"), ["train.max_steps=5", *over])

    pretrained = ("embed.kind=pretrained", "embed.pretrained=smollm2")
    for name, over, reused in (
        ("gpt2", ("data.tokenizer=gpt2",), True),
        ("bpe", ("data.tokenizer=bpe",), False),
        ("smollm2", ("data.tokenizer=bpe", *pretrained), True),
    ):
        out = tmp_path / name
        out.mkdir()
        (out / "config.json").write_text(cfg(*over, "data.vocab_size=4096").to_json())
        (out / "metrics.jsonl").write_text(json.dumps({"step": 5}) + "\n")
        assert tokenizers.finished(out, cfg(*over, "data.vocab_size=4096"))
        # the default vocabulary size changed since the run: GPT-2's tokenizer and a pretrained table's never
        # read it, a BPE trained here did
        assert tokenizers.finished(out, cfg(*over, "data.vocab_size=8192")) is reused
        assert not tokenizers.finished(out, cfg(*over, "data.vocab_size=4096", "train.max_steps=6"))


def test_tokenizer_ablation_frontier_sweeps_each_family(tmp_path, tiny_judge_dir, corpus_file, monkeypatch):
    import importlib
    import sys

    import benchmarks.common as common
    from sedlm.eval.judge import get_judge

    tokenizers = importlib.import_module("benchmarks.tokenizer_ablation")
    micro = [o for o in MICRO if not o.startswith("train.max_steps")]
    over = [
        *micro,
        f"data.source={corpus_file}",
        "train.eval_batches=1",
        "data.val_fraction=0.1",
        "data.vocab_size=300",
    ]
    results = tmp_path / "results"
    monkeypatch.setattr(common, "RESULTS_DIR", results)
    monkeypatch.setattr(tokenizers, "RESULTS_DIR", results)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "tokenizer_ablation.py",
            "--tokenizers",
            "word-8k",
            "--steps",
            "2",
            "--n",
            "4",
            "--chars",
            "60",
            "--sample-steps",
            "2",
            "--judge",
            str(tiny_judge_dir),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "tok",
            "--frontier",
            *over,
        ],
    )
    assert tokenizers.main() == 0
    rows = json.loads((results / "tok.json").read_text())["rows"]
    assert (results / "tok-word-8k.png").stat().st_size > 1000
    sweep = {m: sorted(r["value"] for r in rows if r["method"] == m) for m in ("sed", "ar")}
    assert sweep == {"sed": [0.6, 0.8, 1.0], "ar": [0.7, 0.85, 1.0, 1.0]}  # AR's default row has top-p, its sweep not
    assert {r["knob"] for r in rows if r["method"] == "sed"} == {"score_temp"}
    assert [r["method"] for r in rows].count("data") == 1
    assert len({r["eval_tokens"] for r in rows}) == 1  # every point on the same-length sets
    sed = [r for r in rows if r["method"] == "sed"]
    assert len({r["unigram_entropy"] for r in sed}) == 3  # each point sampled at its own temperature
    plain = tokenizers.run("word-8k", 2, 4, 60, 2, get_judge(str(tiny_judge_dir)), tmp_path / "runs", over, reuse=True)
    keys = ("method", "value", "judge_nll", "unigram_entropy", "word_entropy")
    assert [[r.get(k) for k in keys] for r in plain] == [
        [r.get(k) for k in keys] for r in rows[:3]
    ]  # sweep-independent


def test_tokenizer_ablation_table_control_keeps_the_pretrained_tokenizer(tmp_path):
    import importlib

    from sedlm.data.tokenizer import load_tokenizer
    from sedlm.model.pretrained_table import pretrained_tokenizer

    tokenizers = importlib.import_module("benchmarks.tokenizer_ablation")
    over = tokenizers.overrides("minilm-ppmi", tmp_path)
    assert "embed.kind=ppmi" in over and not any(o.startswith("embed.pretrained") for o in over)
    path = next(o.split("=", 1)[1] for o in over if o.startswith("data.tokenizer="))
    text = "But soft, what light through yonder window breaks?"
    assert load_tokenizer(path).encode(text) == pretrained_tokenizer("minilm").encode(text)


def test_quickstart_targets_rows(tmp_path, tiny_judge_dir, corpus_file):
    import importlib

    from sedlm.eval.judge import get_judge

    targets = importlib.import_module("benchmarks.quickstart_targets")
    micro = [o for o in MICRO if not o.startswith("train.max_steps")]  # the step count is measure()'s argument
    over = [*micro, f"data.source={corpus_file}", "train.eval_batches=1", "data.val_fraction=0.3", "sample.steps=2"]
    rows = targets.measure(3, 4, 8, get_judge(str(tiny_judge_dir)), tmp_path, over)
    sed, ar, data = rows
    assert [r["method"] for r in rows] == ["sed", "ar", "data"]
    assert sed["train_steps"] == ar["train_steps"] == 3  # trained the same way
    assert sed["eval_tokens"] == ar["eval_tokens"] == data["eval_tokens"] == 8  # equal-length sets
    assert abs(ar["params"] - sed["params"]) / sed["params"] <= 0.10
    assert ar["nll_vs_ar"] == 1 and sed["nll_vs_ar"] == pytest.approx(sed["judge_nll"] / ar["judge_nll"], abs=1e-3)
    assert sed["entropy_vs_data"] == pytest.approx(sed["unigram_entropy"] / data["unigram_entropy"] - 1, abs=1e-3)
    assert sed["quickstart_minutes"] >= 0 and (tmp_path / "sed" / "model.safetensors").is_file()
    weights = (tmp_path / "sed" / "model.safetensors").stat().st_mtime_ns
    again = targets.measure(3, 4, 8, get_judge(str(tiny_judge_dir)), tmp_path, over, frontier=True, reuse=True)
    assert (tmp_path / "sed" / "model.safetensors").stat().st_mtime_ns == weights  # scored again, not retrained
    assert again[0]["judge_nll"] == sed["judge_nll"]  # same seed, same model: the same samples
    points = again[3:]
    assert {(p["method"], p["knob"]) for p in points} == {("sed", "score_temp"), ("ar", "temperature")}
    # no point repeats its model's default row: SED's other score temperatures, AR's whole pure-temperature sweep
    assert sorted(p["value"] for p in points if p["method"] == "sed") == [
        v for v in (0.6, 0.8, 1.0) if v != sed["value"]
    ]
    assert sorted(p["value"] for p in points if p["method"] == "ar") == [0.7, 0.85, 1.0]
    assert all("targets_met" in p for p in points if p["method"] == "sed")
    cooler = targets.measure(
        3, 4, 8, get_judge(str(tiny_judge_dir)), tmp_path, [*over, "sample.score_temp=0.6"], reuse=True
    )[0]
    assert cooler["value"] == 0.6 != sed["value"]  # a reused run samples with the command's settings
    assert cooler["unigram_entropy"] != sed["unigram_entropy"]


def test_quickstart_targets_verdicts():
    import importlib

    targets = importlib.import_module("benchmarks.quickstart_targets")
    met = {"real_word_share": 0.90, "nll_vs_ar": 1.10, "entropy_vs_data": -0.05}
    assert targets.targets_met(met) == "real words yes, NLL yes, entropy yes"
    missed = {"real_word_share": 0.89, "nll_vs_ar": 1.11, "entropy_vs_data": 0.06}
    assert targets.targets_met(missed) == "real words no, NLL no, entropy no"
    assert targets.targets_met({**met, "entropy_vs_data": -0.12}).endswith("entropy no")  # too repetitive misses too


def test_block_speed_counts_calls_and_the_cache_adds_none(tmp_path):
    """The block speed benchmark measures each point's network calls: one per block for a one-step sampler
    with and without the cache (a finished block rides in the next block's first call), L for AR."""
    from benchmarks import block_speed

    argv = ["--steps", "1", "--repeats", "1", "--name", str(tmp_path / "bs")]
    sizes = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "data.seq_len=16"]
    assert block_speed.main([*argv, *sizes]) == 0
    rows = json.loads((tmp_path / "bs.json").read_text())["rows"]
    sed = {r["cache"]: r for r in rows if r["system"] == "sed"}
    assert sed[True]["calls_per_row"] == sed[False]["calls_per_row"] == 16 // 4
    assert [r["calls_per_row"] for r in rows if r["system"] == "ar"] == [16]
    assert {"cache_speedup_b1", "over_ar_speed_b1"} <= set(sed[True])
