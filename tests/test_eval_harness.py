"""`sedlm eval` and `sedlm bench compare` end to end, judged by a tiny local causal LM."""

import json

import pytest
from conftest import TINY

from sedlm.api import load_pretrained
from sedlm.bench.compare import COLUMNS, compare
from sedlm.cli import main
from sedlm.data.corpora import shakespeare_documents
from sedlm.eval.harness import CallCounter, evaluate_model
from sedlm.families import load_config
from sedlm.train.trainer import train


@pytest.fixture(scope="module")
def sed_run(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("eval") / "sed"
    train(load_config(None, [*TINY, f"data.source={corpus_file}"]), out, progress=False, log=lambda s: None)
    return out


def test_evaluate_model_reports_model_and_data_rows(sed_run, tiny_judge_dir):
    model = load_pretrained(sed_run)
    rows, samples = evaluate_model(model, judge=str(tiny_judge_dir), n=10, steps=4, min_mauve=8, eval_tokens=10)
    assert [r["method"] for r in rows] == ["sed", "data"]
    assert len(samples) == 10
    for r in rows:
        for key in (
            "judge_nll",
            "judge_nll_ci95",
            "unigram_entropy",
            "unigram_entropy_ci95",
            "word_entropy",
            "distinct_2",
            "self_bleu",
            "mauve",
            "mauve_n",
            "real_word_share",
            "mean_sample_tokens",
        ):
            assert key in r, key
        assert r["entropy_unit"] == "model_token" and r["eval_tokens"] == 10
        assert r["n_samples"] + r["n_short"] == 10  # every sample is either scored at 10 tokens or counted short
        lo, hi = r["unigram_entropy_ci95"]
        assert lo <= r["unigram_entropy"] <= hi
    assert rows[0]["val_loss_kind"] and "val_loss" in rows[0]
    assert "mauve" not in evaluate_model(model, n=10, steps=2, eval_tokens=10)[0][0]  # MAUVE needs >= 256 texts
    assert rows[0]["nfe"] == 4  # one network call per step
    assert rows[1]["real_word_share"] > 0.6  # real text is made of real words (10-token cuts split some at both ends)


def test_samples_shorter_than_the_scored_length_are_counted_not_scored(sed_run, tiny_judge_dir, monkeypatch):
    """Per-sample entropy grows with length: a set that mixed 4-token and 10-token samples would be compared
    with data rows that are all 10 tokens long. Short samples are left out and counted instead."""
    import sedlm.eval.harness as harness
    from sedlm.eval.metrics import text_metrics

    model = load_pretrained(sed_run)
    V = model.tokenizer.vocab_size
    special = set(model.tokenizer.special_ids)
    words = [i for i in range(V) if i not in special][:40]
    full = [[words[(7 * j + i) % 40] for i in range(12)] for j in range(6)]  # 6 samples of 12 tokens
    short = [[words[(3 * j + i) % 40] for i in range(4)] for j in range(4)]  # 4 samples of 4 tokens
    monkeypatch.setattr(harness, "sample_content", lambda *a, **k: (full + short, 4.0, 0.01))
    (row, data_row), samples = evaluate_model(model, judge=str(tiny_judge_dir), n=10, eval_tokens=10, min_mauve=10**6)
    assert (row["n_samples"], row["n_short"], row["mean_sample_tokens"]) == (6, 4, 8.8)
    assert len(samples) == 6 and all(len(model.tokenizer.encode(s)) >= 1 for s in samples)
    expect = text_metrics(samples, judge=str(tiny_judge_dir), sample_ids=[r[:10] for r in full])
    assert row["unigram_entropy"] == pytest.approx(expect["unigram_entropy"])
    assert data_row["n_samples"] + data_row["n_short"] == 10


def test_a_system_whose_samples_all_fall_short_is_an_error_or_a_row_without_scores(
    sed_run, tiny_judge_dir, monkeypatch, tmp_path
):
    """`sedlm eval` refuses to score fewer than two samples; a comparison keeps the system as a row that says
    how many samples fell short (and plots the others) instead of stopping the whole table."""
    import sedlm.eval.harness as harness
    from sedlm.bench.plots import plot, plot_frontier
    from sedlm.errors import SedlmError

    model = load_pretrained(sed_run)
    words = [i for i in range(model.tokenizer.vocab_size) if i not in set(model.tokenizer.special_ids)][:40]
    short = [[words[(3 * j + i) % 40] for i in range(4)] for j in range(9)] + [words[:12]]  # one of 10 reaches 10
    monkeypatch.setattr(harness, "sample_content", lambda *a, **k: (short, 4.0, 0.01))
    with pytest.raises(SedlmError, match="only 1 of 10 samples reach 10 tokens"):
        evaluate_model(model, judge=str(tiny_judge_dir), n=10, eval_tokens=10, min_mauve=10**6)
    (row, data_row), samples = evaluate_model(
        model, judge=str(tiny_judge_dir), n=10, eval_tokens=10, min_mauve=10**6, keep_short=True
    )
    assert samples == [] and (row["n_samples"], row["n_short"]) == (0, 9)
    assert "judge_nll" not in row and data_row["judge_nll"] > 0
    assert harness.scored(row) == "no score: 9 samples fall short of 10 tokens"
    plot([row, data_row], tmp_path / "p.png", 64)
    plot_frontier([{**row, "knob": "temperature", "value": 1.0}], data_row, tmp_path / "f.png")
    assert (tmp_path / "p.png").is_file() and (tmp_path / "f.png").is_file()


@pytest.mark.parametrize("method", ["sed", "ar", "mdlm"])
def test_harness_validation_loss_is_the_trainers(method, tmp_path, corpus_file):
    """The harness scores a checkpoint's validation loss on exactly the trainer's batches: same rows,
    same padding (none for AR), same noise, same EMA weights."""
    from sedlm.data.dataset import prepare_data
    from sedlm.eval.harness import heldout_loss

    cfg = load_config(None, [*TINY, f"data.source={corpus_file}", "data.val_fraction=0.2", "train.eval_every=6"])
    cfg.family = method
    result = train(cfg, tmp_path / method, progress=False, log=lambda s: None)
    model = load_pretrained(tmp_path / method)
    val, kind = heldout_loss(model, prepare_data(model.config.data, tokenizer=model.tokenizer))
    assert val == pytest.approx(result.val_loss, rel=1e-5)
    logged = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["val_loss_kind"] == kind


def test_call_counter_counts_forward_calls(sed_run):
    model = load_pretrained(sed_run)
    counter = CallCounter(model.model)
    model.generate(n=1, steps=7)
    counter.close()
    assert counter.calls == 7
    model.generate(n=1, steps=3)
    assert counter.calls == 7  # detached


def test_eval_cli_writes_json(sed_run, tiny_judge_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    code = main(
        ["eval", "--ckpt", str(sed_run), "--judge", str(tiny_judge_dir), "--n", "8", "--steps", "3", "--out", str(out)]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert [r["method"] for r in result["rows"]] == ["sed", "data"]
    assert len(result["samples"]) == result["rows"][0]["n_samples"] == 8 - result["rows"][0]["n_short"]
    assert "| method |" in capsys.readouterr().out


def test_bench_compare_micro_budget(tmp_path, tiny_judge_dir):
    over = [o for o in TINY if not o.startswith(("train.max_steps", "data.vocab_size", "data.val_fraction"))]
    rows = compare(
        "shakespeare",
        0.1,
        judge_name=str(tiny_judge_dir),
        n=8,
        steps=3,
        runs_dir=tmp_path / "runs",
        results_dir=tmp_path / "results",
        overrides=[*over, "data.max_chars=100000", "data.vocab_size=512"],
        methods=("sed", "ar", "mdlm"),
        eval_tokens=4,  # a few steps of training pad most of a row: score the first 4 tokens
        log=lambda s: None,
    )
    assert [r["method"] for r in rows] == ["sed", "ar", "mdlm", "data"]
    assert [r.get("family") for r in rows] == ["sed", "ar", "mdlm", None]
    sed, ar, mdlm = rows[:3]
    assert abs(ar["params"] - sed["params"]) / sed["params"] <= 0.10
    assert abs(mdlm["params"] - sed["params"]) / sed["params"] <= 0.10
    assert sed["train_tokens"] == ar["train_tokens"] == mdlm["train_tokens"]
    for r in rows[:3]:
        assert r["sample_tokens_per_s_b1"] > 0 and r["sample_tokens_per_s_b32"] > 0
    payload = json.loads((tmp_path / "results" / "compare-shakespeare.json").read_text())
    assert set(payload) == {"name", "command", "machine", "rows"}
    assert (tmp_path / "results" / "compare-shakespeare.md").read_text().count("\n| ") >= 4
    assert (tmp_path / "results" / "compare-shakespeare.png").stat().st_size > 1000
    assert set(COLUMNS) <= set(rows[0]) | {"mauve", "mauve_n"}  # MAUVE only from 256 samples on
    frontier = json.loads((tmp_path / "results" / "frontier-shakespeare.json").read_text())["rows"]
    assert {r["method"] for r in frontier} == {"sed", "ar", "mdlm", "data"}
    assert all(r["judge_nll_ci95"][0] <= r["judge_nll"] <= r["judge_nll_ci95"][1] for r in frontier)
    assert len([r for r in frontier if r["method"] == "ar"]) == 3  # one point per temperature of the sweep
    assert (tmp_path / "results" / "frontier-shakespeare.png").stat().st_size > 1000

    # rerunning one system keeps the others' rows exactly
    again = compare(
        "shakespeare",
        0.1,
        judge_name=str(tiny_judge_dir),
        n=8,
        steps=3,
        runs_dir=tmp_path / "runs",
        results_dir=tmp_path / "results",
        overrides=[*over, "data.max_chars=100000", "data.vocab_size=512"],
        methods=("sed", "ar", "mdlm"),
        rerun=("ar",),
        train_steps=2,
        log=lambda s: None,
    )
    assert again[0] == sed and again[2] == mdlm and again[1]["train_steps"] == 2


def test_bench_compare_recipes_and_variants(tmp_path, tiny_judge_dir):
    over = [
        o for o in TINY if not o.startswith(("train.max_steps", "data.vocab_size", "data.val_fraction", "embed.kind"))
    ]
    systems = ("sed", "cdcd", "cdcd:diffusion.time_warp=false:sample.time_grid=uniform")
    rows = compare(
        "shakespeare",
        0.1,
        judge_name=str(tiny_judge_dir),
        n=8,
        steps=3,
        runs_dir=tmp_path / "runs",
        results_dir=tmp_path / "results",
        overrides=[*over, "data.max_chars=100000", "data.vocab_size=512"],
        methods=systems,
        train_steps=2,
        name="systems",
        log=lambda s: None,
    )
    assert [r["method"] for r in rows] == [*systems, "data"] and rows[1]["family"] == "sed"
    assert (tmp_path / "results" / "systems-shakespeare.json").is_file()
    assert (tmp_path / "results" / "systems-frontier-shakespeare.png").is_file()
    cfg = json.loads(
        (tmp_path / "runs" / "cdcd_diffusion.time_warp-false_sample.time_grid-uniform" / "config.json").read_text()
    )
    assert cfg["recipe"] == "cdcd" and cfg["diffusion"]["time_warp"] is False
    with pytest.raises(Exception, match="unknown system 'nope'"):
        compare("shakespeare", 0.1, methods=("nope",), runs_dir=tmp_path / "r2", results_dir=tmp_path / "r2")


def test_seed_summary_gives_mean_and_spread_per_system():
    from sedlm.bench.seeds import seed_summary

    rows = [
        {"method": "sed", "seed": 0, "judge_nll": 6.0, "judge_nll_ci95": [5.9, 6.1], "unigram_entropy": 4.0},
        {"method": "sed", "seed": 1, "judge_nll": 6.4, "judge_nll_ci95": [6.2, 6.6], "unigram_entropy": 4.2},
        {"method": "ar", "seed": 0, "judge_nll": 5.5, "judge_nll_ci95": [5.4, 5.6], "unigram_entropy": 4.5},
        {"method": "data", "judge_nll": 4.8, "unigram_entropy": 4.7},
    ]
    sed, ar = seed_summary(rows)
    assert (sed["method"], sed["seeds"], sed["judge_nll_mean"]) == ("sed", 2, 6.2)
    assert sed["judge_nll_seed_sd"] == pytest.approx(0.2828, abs=1e-4) and sed["judge_nll_seed_range"] == [6.0, 6.4]
    assert sed["judge_nll_sample_ci_halfwidth"] == pytest.approx(0.15)
    assert sed["unigram_entropy_seed_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert ar["seeds"] == 1 and ar["judge_nll_seed_sd"] is None  # one seed has no spread


def test_bench_compare_trains_every_system_once_per_seed(tmp_path, tiny_judge_dir):
    over = [o for o in TINY if not o.startswith(("train.max_steps", "data.vocab_size", "data.val_fraction"))]
    kw = dict(judge_name=str(tiny_judge_dir), n=6, steps=3, runs_dir=tmp_path / "runs", results_dir=tmp_path / "res")
    rows = compare(
        "shakespeare",
        train_steps=3,
        overrides=[*over, "data.max_chars=60000", "data.vocab_size=300"],
        methods=("ar",),
        seeds=(0, 1),
        eval_tokens=3,
        log=lambda s: None,
        **kw,
    )
    assert [(r["method"], r.get("seed")) for r in rows] == [("ar", 0), ("ar", 1), ("data", None)]
    assert (tmp_path / "runs" / "ar").is_dir() and (tmp_path / "runs" / "ar-seed1").is_dir()
    assert rows[0]["judge_nll"] != rows[1]["judge_nll"]  # two trainings, two models
    summary = json.loads((tmp_path / "res" / "compare-seeds-shakespeare.json").read_text())["rows"]
    assert [(r["method"], r["seeds"]) for r in summary] == [("ar", 2)] and summary[0]["judge_nll_seed_sd"] > 0
    with pytest.raises(Exception, match="distinct non-negative"):
        compare("shakespeare", train_steps=3, methods=("ar",), seeds=(1, 1), **kw)
    # --reuse scores a finished run of the same system, seed and steps again; a changed setting retrains it
    stamp = (tmp_path / "runs" / "ar" / "model.safetensors").stat().st_mtime_ns
    args = dict(train_steps=3, methods=("ar",), eval_tokens=3, log=lambda s: None, reuse=True, **kw)
    again = compare("shakespeare", overrides=[*over, "data.max_chars=60000", "data.vocab_size=300"], **args)
    assert (tmp_path / "runs" / "ar" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again[0]["judge_nll"] == pytest.approx(rows[0]["judge_nll"])
    changed = [*over, "data.max_chars=60000", "data.vocab_size=300", "ar.row_start=document"]
    compare("shakespeare", overrides=changed, **args)
    assert (tmp_path / "runs" / "ar" / "model.safetensors").stat().st_mtime_ns != stamp


def test_bench_compare_on_a_users_file_names_results_by_its_stem(tmp_path, tiny_judge_dir):
    """A user's text file trains the systems and names the results; a run trained on other text is not reused."""
    book = tmp_path / "my_book.txt"
    book.write_text("\n\n".join(d[:3000] for d in shakespeare_documents()[:30]))
    over = [o for o in TINY if not o.startswith(("train.max_steps", "data.vocab_size", "data.val_fraction"))]
    kw = dict(judge_name=str(tiny_judge_dir), n=6, steps=3, runs_dir=tmp_path / "runs", results_dir=tmp_path / "res")
    args = dict(train_steps=3, methods=("ar",), eval_tokens=3, log=lambda s: None, reuse=True, **kw)
    overrides = [*over, "data.max_chars=60000", "data.vocab_size=300", "data.val_fraction=0.2"]
    compare(str(book), overrides=overrides, **args)
    assert (tmp_path / "res" / "compare-my_book.json").is_file()
    assert (tmp_path / "res" / "frontier-my_book.json").is_file()
    assert json.loads((tmp_path / "runs" / "ar" / "config.json").read_text())["data"]["source"] == str(book)
    stamp = (tmp_path / "runs" / "ar" / "model.safetensors").stat().st_mtime_ns
    compare("shakespeare", overrides=overrides, **args)  # same system, seed and steps, other text: retrained
    assert json.loads((tmp_path / "runs" / "ar" / "config.json").read_text())["data"]["source"] == "corpus:shakespeare"
    assert (tmp_path / "runs" / "ar" / "model.safetensors").stat().st_mtime_ns != stamp
