"""The seed benchmarks: the sampling grid scores every point on every seed's run and groups its summary by
point, the likelihood table groups runs by system, and bad input is a one-line error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from tiny_runs import tiny_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: the `benchmarks` package

from benchmarks import common  # noqa: E402
from benchmarks import sampling_grid as grid  # noqa: E402


def test_points_parse_numbers_and_names():
    assert grid.parse_point("sc_weight=3") == {"sc_weight": 3.0}
    assert grid.parse_point("sampler=ddpm,noise_temp=0.9") == {"sampler": "ddpm", "noise_temp": 0.9}
    assert grid.label({"sampler": "ddpm", "noise_temp": 0.9}) == "sampler=ddpm,noise_temp=0.9"
    for bad in ("", "sc_weight", "=3"):
        with pytest.raises(argparse.ArgumentTypeError):
            grid.parse_point(bad)


def test_every_point_on_every_seed(tmp_path, corpus_file, tiny_judge_dir, monkeypatch):
    over = (f"data.source={corpus_file}", "data.val_fraction=0.3")
    runs = [tiny_checkpoint(tmp_path / f"sed-{s}", overrides=(*over, f"train.seed={s}")) for s in (0, 1)]
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(grid, "RESULTS_DIR", tmp_path / "results")
    argv = ["sampling_grid.py", "--runs", ",".join(map(str, runs)), "--n", "4", "--steps", "2"]
    argv += ["--point", "sampler=ddim", "--point", "sampler=ddpm", "--judge", str(tiny_judge_dir), "--name", "g"]
    monkeypatch.setattr(sys, "argv", argv)
    assert grid.main() == 0
    rows = json.loads((tmp_path / "results" / "g.json").read_text())["rows"]
    assert [(r["point"], r["seed"]) for r in rows[:-1]] == [
        ("sampler=ddim", 0),
        ("sampler=ddpm", 0),
        ("sampler=ddim", 1),
        ("sampler=ddpm", 1),
    ]
    assert rows[-1]["method"] == "data"
    assert rows[0]["judge_nll"] != rows[1]["judge_nll"]  # the point's option reached the sampler
    summary = json.loads((tmp_path / "results" / "g-seeds.json").read_text())["rows"]
    assert [(s["point"], s["seeds"]) for s in summary] == [("sampler=ddim", 2), ("sampler=ddpm", 2)]
    ddim = [r["judge_nll"] for r in rows if r.get("point") == "sampler=ddim"]
    assert summary[0]["judge_nll_mean"] == pytest.approx(sum(ddim) / 2, abs=1e-4)
    assert (tmp_path / "results" / "g.png").is_file()


def test_mixed_systems_and_missing_runs_are_errors(tmp_path, corpus_file, tiny_judge_dir, monkeypatch):
    from sedlm.errors import SedlmError

    monkeypatch.setattr(sys, "argv", ["sampling_grid.py", "--runs", str(tmp_path / "nope"), "--point", "steps=2"])
    with pytest.raises(SedlmError, match="not a checkpoint folder"):
        grid.main()
    over = (f"data.source={corpus_file}", "data.val_fraction=0.3")
    runs = [tiny_checkpoint(tmp_path / m, m, over) for m in ("sed", "ar")]
    argv = ["sampling_grid.py", "--runs", ",".join(map(str, runs)), "--n", "4", "--judge", str(tiny_judge_dir)]
    monkeypatch.setattr(sys, "argv", [*argv, "--point", "sampler=ddim"])
    with pytest.raises(SedlmError, match="mixes systems"):
        grid.main()
    monkeypatch.setattr(sys, "argv", [*argv, "--point", "steps=2"])
    with pytest.raises(SedlmError, match="cannot set steps"):
        grid.main()


def test_likelihood_seeds_groups_runs_by_system(tmp_path, corpus_file, monkeypatch):
    from benchmarks import likelihood_seeds as lik

    over = (f"data.source={corpus_file}", "data.val_fraction=0.3")
    runs = [  # untrained: the second AR seed differs by its width, so that the two runs score differently
        tiny_checkpoint(tmp_path / name, method, (*over, f"train.seed={seed}", f"model.d_model={width}"))
        for name, method, seed, width in (("ar", "ar", 0, 32), ("ar-seed1", "ar", 1, 48), ("mdlm", "mdlm", 0, 32))
    ]
    assert [lik.system_of(r) for r in runs] == ["ar", "ar", "mdlm"]
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", ["likelihood_seeds.py", "--runs", ",".join(map(str, runs)), "--rows", "4"])
    assert lik.main() == 0
    rows = json.loads((tmp_path / "results" / "likelihood-seeds.json").read_text())["rows"]
    assert [(r["method"], r["seed"], r["nll_kind"]) for r in rows] == [
        ("ar", 0, "exact"),
        ("ar", 1, "exact"),
        ("mdlm", 0, "bound"),
    ]
    summary = json.loads((tmp_path / "results" / "likelihood-seeds-seeds.json").read_text())["rows"]
    ar = summary[0]
    assert ar["seeds"] == 2 and ar["nll_mean"] == pytest.approx((rows[0]["nll"] + rows[1]["nll"]) / 2, abs=1e-4)
    assert ar["nll_seed_sd"] > 0 and summary[1]["seeds"] == 1 and summary[1]["nll_seed_sd"] is None


def test_directions_compare_at_equal_entropy_against_the_seed_spread(tmp_path):
    from benchmarks import directions as d

    frontier = [(4.0, 6.0), (5.0, 7.0), (6.0, 9.0)]  # 1 nat per bit up to 5 bits, 2 beyond
    assert d.frontier_slope(frontier, 4.5) == (1.0, False)
    assert d.frontier_slope(frontier, 5.5) == (2.0, False)
    assert d.frontier_slope(frontier, 3.0) == (1.0, True) and d.frontier_slope(frontier, 6.5) == (2.0, True)
    base = {"seeds": 5, "judge_nll_mean": 7.0, "unigram_entropy_mean": 5.0, "judge_nll_seed_sd": 0.1}

    def row(nll, entropy, sd=0.1, seeds=3):
        return {"seeds": seeds, "judge_nll_mean": nll, "unigram_entropy_mean": entropy, "judge_nll_seed_sd": sd}

    # lower NLL bought with one bit less entropy: on the base's frontier that is worth 1 nat, so no gain
    same = d.compare_pair(row(6.05, 4.0), base, frontier, variant_better=True)
    assert same["gap_at_equal_entropy"] == pytest.approx(0.05) and same["verdict"] == "not a finding"
    better = d.compare_pair(row(6.5, 5.0), base, frontier, variant_better=True)
    assert better["gap_at_equal_entropy"] == pytest.approx(-0.5) and better["verdict"] == "reproduced"
    assert d.compare_pair(row(6.5, 5.0), base, frontier, variant_better=False)["verdict"] == "refuted"
    noisy = d.compare_pair(row(6.5, 5.0, sd=0.3), base, frontier, variant_better=True)
    assert noisy["seed_spread"] == pytest.approx(0.6) and noisy["verdict"] == "not a finding"
    assert "one seed" in d.compare_pair(row(6.5, 5.0, seeds=1), base, frontier, True)["verdict"]
    # a base without a frontier: the means compare as they are only at (nearly) equal entropy
    assert d.compare_pair(row(6.5, 5.05), base, [], variant_better=True)["verdict"] == "reproduced"
    assert d.compare_pair(row(6.5, 4.5), base, [], variant_better=True)["verdict"].startswith("no base frontier")
    # a pair whose files do not exist yet says which
    pair = d.Pair("x helps", d.System("var", "sed:x=off"), d.System("base", "sed"), False)
    assert d.pair_row(pair, tmp_path, "c")["verdict"].startswith("not measured: var-seeds-c.json, base-seeds-c.json")
    # from the files: a frontier point scored on few samples does not set the slope
    summary = {**row(7.6, 4.5), "method": "sed:x=off"}
    (tmp_path / "var-seeds-c.json").write_text(json.dumps({"rows": [summary]}))
    (tmp_path / "base-seeds-c.json").write_text(json.dumps({"rows": [{**base, "method": "sed"}]}))
    points = [(4.0, 6.0, 200), (5.0, 7.0, 250), (4.4, 9.0, 10)]
    rows = [{"method": "sed", "unigram_entropy": h, "judge_nll": n, "n_samples": k} for h, n, k in points]
    (tmp_path / "base-frontier-c.json").write_text(json.dumps({"rows": [*rows, {"method": "data"}]}))
    out = d.pair_row(pair, tmp_path, "c")
    assert out["base_slope_nats_per_bit"] == 1.0 and out["gap_at_equal_entropy"] == pytest.approx(1.1)
    assert out["verdict"] == "reproduced"  # the variant is worse, as the paper says
