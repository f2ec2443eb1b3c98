import pytest
import torch

from sedlm.config import resolve_config_path
from sedlm.config import Config, apply_overrides, from_dict, load_config
from sedlm.errors import SedlmError
from sedlm.families.sed import build_denoiser


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.max_steps=7", "model.d_model=64", "train.lr=1e-3", "data.source=corpus:wiki"])
    assert cfg.train.max_steps == 7 and cfg.model.d_model == 64 and cfg.train.lr == 1e-3
    assert cfg.data.source == "corpus:wiki"
    assert isinstance(load_config(None, ["train.lr=1"]).train.lr, float)  # ints are fine for floats


def test_round_trip_through_dict():
    cfg = load_config(resolve_config_path("tiny"))
    assert from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["train.max_stepz=3"], "unknown config key 'train.max_stepz'"),
        (["trian.max_steps=3"], "unknown config section 'trian'"),
        (["train.max_steps=abc"], "expects int"),
        (["train.max_steps"], "section.key=value"),
        (["model.n_heads=3"], "divisible"),
        (["diffusion.self_cond=sometimes"], "choose one of"),
        (["train.max_steps=0"], "must be positive"),
    ],
)
def test_bad_overrides_name_the_problem(overrides, fragment):
    with pytest.raises(SedlmError, match=fragment):
        load_config(None, overrides)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(SedlmError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(SedlmError, match="not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  width: 3\n")
    with pytest.raises(SedlmError, match="unknown config key 'model.width'"):
        load_config(unknown)


@pytest.mark.parametrize("name, target", [("sed-s", 135e6), ("sed-l", 420e6)])
def test_paper_configs_match_paper_sizes(name, target):
    cfg = load_config(resolve_config_path(name), ["model.vocab_size=32768"])
    assert cfg.model.n_layers == 12 and cfg.model.n_heads == 16 and cfg.data.seq_len == 256
    with torch.device("meta"):
        model = build_denoiser(cfg, torch.empty(32768, cfg.model.d_embed))
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert abs(n - target) / target < 0.10, n


def test_copy_is_independent():
    cfg = Config()
    other = apply_overrides(cfg.copy(), ["train.seed=5"])
    assert cfg.train.seed == 0 and other.train.seed == 5
