"""The family registry is the single source of model families, and every recipe trains and samples.

Every family in ``FAMILIES`` trains two steps through the CLI, samples through the CLI and answers
through the HTTP API; every recipe in ``RECIPES`` trains two steps and samples; recipe-specific
options (analog bits, the rounding term) do what their papers say.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from fastapi.testclient import TestClient

from sedlm.cli import build_parser, main
from sedlm.families import FAMILIES, all_families, get_family, load_config
from sedlm.families.base import REQUESTS, Family, request_kind
from sedlm.families.recipes import RECIPES, apply_recipe
from sedlm.model.embedding import bits_dim, bits_table
from sedlm.sampling.templates import Layout
from sedlm.serve import create_app

TEMPLATE = "The king [___:3] in the castle."


@pytest.fixture(scope="module", params=list(FAMILIES))
def trained(request, tmp_path_factory, corpus_file):
    from conftest import TINY

    out = tmp_path_factory.mktemp("family") / request.param
    code = main(
        [
            "train",
            "--method",
            request.param,
            "--out",
            str(out),
            *TINY,
            f"data.source={corpus_file}",
            "train.max_steps=2",
            "train.eval_every=2",
        ]
    )
    assert code == 0
    return request.param, out


def test_every_registered_family_trains_and_samples_through_the_cli_and_the_api(trained, capsys):
    name, out = trained
    family = get_family(name)
    assert json.loads((out / "config.json").read_text())["family"] == name
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(out), "--n", "2", "--steps", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["family"] == name and len(payload["samples"]) == 2
    assert set(o.name for o in family.options) <= set(payload)  # every declared option, resolved
    client = TestClient(create_app(out))
    info = client.get("/v1/model").json()
    assert info["family"] == name and info["requests"] == list(family.requests)
    r = client.post("/v1/generate", json={"n": 1, "steps": 3, "prompt": "The king"})
    assert r.status_code == 200 and r.json()["texts"][0].startswith("The king"), r.text
    r = client.post("/v1/infill", json={"template": TEMPLATE, "steps": 3})
    if "infill" in family.requests:
        assert r.status_code == 200 and r.json()["texts"][0].startswith("The king"), r.text
    else:
        assert r.status_code == 400 and f"family {name} does not support infilling" in r.json()["detail"]


def test_every_registered_family_reports_its_likelihood_or_says_it_has_none(trained, capsys, tmp_path):
    name, out = trained
    family = get_family(name)
    capsys.readouterr()
    code = main(["eval", "--ckpt", str(out), "--nll", "--rows", "4", "--json", "--out", str(tmp_path / "nll.json")])
    if family.capabilities()["nll_bound"]:
        res = json.loads(capsys.readouterr().out)
        assert code == 0 and res["family"] == name and res["nll_kind"] in ("exact", "bound") and res["rows"] == 4
        assert res["nll"] > 0 and res["nll_se"] > 0
        assert json.loads((tmp_path / "nll.json").read_text())["nll"] == res["nll"]
    else:
        assert code == 2 and f"family {name} has no likelihood" in capsys.readouterr().err


def test_the_ode_estimate_runs_where_a_family_has_an_ode_and_is_refused_elsewhere(trained, capsys, tmp_path):
    name, out = trained
    family = get_family(name)
    has_ode = type(family).ode_nll is not Family.ode_nll
    capsys.readouterr()
    args = ["eval", "--ckpt", str(out), "--nll", "--estimator", "ode", "--ode-steps", "4", "--rows", "2", "--json"]
    code = main([*args, "--out", str(tmp_path / "nll.json")])
    if has_ode:
        res = json.loads(capsys.readouterr().out)
        assert code == 0 and "probability-flow ODE" in res["nll_kind"] and res["rows"] == 2
        assert math.isfinite(res["nll"]) and res["nll"] > 0
    else:
        why = "probability-flow ODE" if family.capabilities()["nll_bound"] else "likelihood"
        assert code == 2 and f"family {name} has no {why}" in capsys.readouterr().err
        assert not (tmp_path / "nll.json").exists()


def test_cli_choices_and_options_come_from_the_registry():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    method = next(a for a in train._actions if a.dest == "family")
    assert list(method.choices) == list(FAMILIES)
    sample = parser._subparsers._group_actions[0].choices["sample"]
    flags = {a.dest for a in sample._actions}
    assert {o.name for f in all_families() for o in f.options} <= flags


def test_a_family_without_a_request_kind_says_so():
    class PrefixOnly(Family):
        name = "prefix-only"
        requests = ("unconditional", "prompt")

    with pytest.raises(Exception, match="family prefix-only does not support infilling"):
        PrefixOnly().check_request("infill")
    PrefixOnly().check_request("prompt")


def test_request_kind():
    L = 6
    given = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool)
    prompt = Layout(torch.zeros(L, dtype=torch.long), given, torch.zeros(L, dtype=torch.bool))
    assert request_kind(None) == "unconditional" and request_kind(prompt) == "prompt"
    assert request_kind(prompt, src=True) == "seq2seq"
    hole = Layout(
        torch.zeros(L, dtype=torch.long),
        torch.tensor([1, 0, 0, 1, 0, 0], dtype=torch.bool),
        torch.zeros(L, dtype=torch.bool),
    )
    assert request_kind(hole) == "infill"
    assert set(REQUESTS) == {"unconditional", "prompt", "infill", "seq2seq"}


def test_unknown_option_is_an_error_naming_the_valid_ones():
    sed = get_family("sed")
    cfg = load_config(None)
    with pytest.raises(Exception, match="family sed has no sampling option top_p; its options: sampler"):
        sed.resolve_options(cfg.sample, {"top_p": 0.9})
    with pytest.raises(Exception, match="unknown sampler 'nope'"):
        sed.resolve_options(cfg.sample, {"sampler": "nope"})
    assert sed.resolve_options(cfg.sample, {"guidance": 2})["guidance"] == 2.0


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_trains_and_samples(name, tmp_path, corpus_file):
    from conftest import TINY

    out = tmp_path / name
    sizes = [o for o in TINY if not o.startswith("embed.kind=")]  # the recipe picks the embedding space
    assert (
        main(
            [
                "train",
                "--config",
                "tiny",
                "--recipe",
                name,
                "--out",
                str(out),
                *sizes,
                f"data.source={corpus_file}",
                "train.max_steps=2",
                "train.eval_every=2",
                "embed.steps=2",
            ]
        )
        == 0
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"] == name and cfg["family"] == RECIPES[name].family
    for item in RECIPES[name].overrides:  # the recipe's options are in the checkpoint
        section, rest = item.split(".", 1)
        key, value = rest.split("=", 1)
        if (section, key) != ("model", "d_embed"):
            assert str(cfg[section][key]).lower() == value.lower() or float(cfg[section][key]) == float(value), item
    assert main(["sample", "--ckpt", str(out), "--n", "2", "--steps", "3"]) == 0


def test_recipe_of_another_family_with_method_is_an_error(capsys):
    assert main(["train", "--recipe", "diffusionbert", "--method", "sed", "--out", "/nonexistent/x"]) == 2
    assert "is a mdlm recipe" in capsys.readouterr().err


def test_analog_bits_codes():
    V = 300
    table = bits_table(V)
    assert table.shape == (V, bits_dim(V)) == (V, 9)
    assert set(table.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(r) for r in table.tolist()}) == V  # one code per token
    # decoding by the largest inner product with the codes is thresholding each bit at 0
    x = table[123] + 0.9 * torch.randn(9, generator=torch.Generator().manual_seed(0)).clamp(-0.9, 0.9)
    nearest = int((table @ x).argmax())
    assert nearest == 123 == int(sum(int(b > 0) << (8 - i) for i, b in enumerate(x)))


def test_rounding_term_trains_a_learned_table():
    from conftest import TINY

    from sedlm.diffusion.objective import sed_loss
    from sedlm.diffusion.schedules import get_schedule
    from sedlm.model.denoiser import SEDDenoiser

    cfg = load_config(None, [*TINY, "embed.kind=learned", "diffusion.mse_weight=0", "diffusion.ce_weight=0"])
    cfg.model.vocab_size = 50
    ids = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    table = torch.randn(50, cfg.model.d_embed, generator=torch.Generator().manual_seed(1))

    def run(weight: float) -> tuple[float, torch.Tensor | None]:
        torch.manual_seed(0)
        model = SEDDenoiser.from_config(cfg, table)
        cfg.diffusion.round_weight = weight
        loss, _ = sed_loss(model, ids, cfg.diffusion, get_schedule("cosine"), torch.Generator().manual_seed(2))
        loss.backward()
        return loss.item(), model.embedding.table.grad

    zero, grad0 = run(0.0)
    one, grad1 = run(1.0)
    # the readout starts as E^T, so the data's own x0 is already fairly decodable: 0 < CE < log V
    assert zero == 0.0 and 0.05 < one < torch.log(torch.tensor(50.0)).item()
    assert (grad0 is None or grad0.abs().sum() == 0) and grad1.abs().sum() > 0


def test_apply_recipe_records_the_name():
    cfg = apply_recipe(load_config(None), "cdcd")
    assert cfg.recipe == "cdcd" and cfg.diffusion.x0_estimate == "interp" and cfg.embed.kind == "learned"
    with pytest.raises(Exception, match="valid recipes: sed-paper"):
        apply_recipe(load_config(None), "nope")


def test_a_new_family_is_one_module_and_one_registry_line(monkeypatch, tmp_path, corpus_file, capsys):
    """README's example: the unigram family of tests/unigram_family.py, registered with one line, trains
    through the trainer and samples through the CLI and the HTTP API with no other change."""
    from conftest import TINY

    monkeypatch.setitem(FAMILIES, "unigram", "unigram_family")
    out = tmp_path / "unigram"
    assert (
        main(
            [
                "train",
                "--method",
                "unigram",
                "--out",
                str(out),
                *TINY,
                f"data.source={corpus_file}",
                "train.max_steps=40",
                "train.lr=0.05",
                "train.eval_every=20",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["val_loss_kind"] == "unigram NLL (nats/token)"
    capsys.readouterr()
    assert main(["infill", "--ckpt", str(out), TEMPLATE, "--json", "--temperature", "0.5"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["family"] == "unigram" and payload["samples"][0].startswith("The king")
    r = TestClient(create_app(out)).post("/v1/generate", json={"n": 2, "temperature": 2.0})
    assert r.status_code == 200 and r.json()["options"] == {"temperature": 2.0}


def test_sed_frontier_sweeps_a_knob_that_acts():
    sed = get_family("sed")
    cfg = load_config(None, ["diffusion.x0_estimate=interp", "diffusion.mse_weight=0"])
    assert sed.frontier(cfg) == ("score_temp", (0.6, 0.8, 1.0))  # only interp estimates have a score temperature
    cfg = load_config(None, ["diffusion.x0_estimate=direct", "sample.sampler=ddpm"])
    assert sed.frontier(cfg)[0] == "noise_temp" and len(sed.frontier(cfg)[1]) == 3
    cfg = load_config(None, ["diffusion.x0_estimate=direct", "sample.sampler=ddim"])
    assert len(sed.frontier(cfg)[1]) == 1  # a deterministic sampler: one point, not three equal ones


def test_recipes_use_their_papers_noise_ranges_and_samplers():
    """CDCD: sigma in [1, 300] (log-SNR 0 to -2 ln 300) with Euler steps on the warped grid; Difformer: the sqrt
    schedule with noise factor F = 4 (log-SNR shifted by -2 ln 4) and half-time self-conditioning; Analog Bits:
    x0_hat clipped to the bit scale inside each step."""
    import math

    from sedlm.config import Config
    from sedlm.diffusion.schedules import get_schedule, log_snr
    from sedlm.families.recipes import apply_recipe

    ends = torch.tensor([0.0, 1.0])
    cdcd = apply_recipe(Config(), "cdcd")
    lam = log_snr(get_schedule(cdcd.diffusion.schedule, cdcd.diffusion.logsnr_shift)(ends))
    assert lam.tolist() == pytest.approx([0.0, -2 * math.log(300)], abs=1e-4)
    assert (cdcd.sample.sampler, cdcd.sample.time_grid) == ("euler", "warped")
    dif = apply_recipe(Config(), "difformer")
    mid = torch.tensor([0.3, 0.7])
    shifted = log_snr(get_schedule(dif.diffusion.schedule, dif.diffusion.logsnr_shift)(mid))
    assert (shifted - log_snr(get_schedule("sqrt")(mid))).tolist() == pytest.approx([-2 * math.log(4)] * 2, abs=1e-3)
    assert dif.diffusion.self_cond == "half_nograd"
    assert apply_recipe(Config(), "analog-bits").sample.options["x0_clip"] == 1.0
