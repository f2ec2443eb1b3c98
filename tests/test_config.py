import pytest
import torch

from sedlm.config import Config, apply_overrides, from_dict, resolve_config_path
from sedlm.errors import SedlmError
from sedlm.families import check_config, load_config
from sedlm.model.denoiser import SEDDenoiser


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
        (["train.max_steps=0"], "must be >= 1"),
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
        model = SEDDenoiser.from_config(cfg, torch.empty(32768, cfg.model.d_embed))
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert abs(n - target) / target < 0.10, n


def test_copy_is_independent():
    cfg = Config()
    other = apply_overrides(cfg.copy(), ["train.seed=5"])
    assert cfg.train.seed == 0 and other.train.seed == 5


def test_old_configs_with_method_and_moved_keys_load_under_the_new_names():
    """Checkpoints written before the rename say ``method`` and keep the baselines' settings in the shared
    diffusion/sample sections; they load as ``family`` and the owning family's section."""
    old = {
        "method": "mdlm",
        "diffusion": {"mask_schedule": "spindle", "spindle_lambda": 0.3, "unroll_steps": 3},
        "sample": {"temperature": 0.7, "top_p": 0.9, "time_delta": 1.0},
    }
    cfg = check_config(from_dict(old))
    assert cfg.family == "mdlm"
    assert cfg.settings == {"mdlm": {"mask_schedule": "spindle", "spindle_lambda": 0.3}, "sundae": {"unroll_steps": 3}}
    assert cfg.sample.options == {"temperature": 0.7, "top_p": 0.9, "time_delta": 1.0}
    assert "method" not in cfg.to_dict() and cfg.to_dict()["mdlm"]["mask_schedule"] == "spindle"
    assert from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()  # round trip
    same = load_config(None, ["diffusion.mask_schedule=spindle"])  # an old override still works
    assert same.settings["mdlm"]["mask_schedule"] == "spindle"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            ["mdlm.mask_schedule=cosine"],
            "unknown mask_schedule 'cosine' for family mdlm; valid values: linear, spindle",
        ),
        (["mdlm.mask_shedule=spindle"], "unknown config key 'mdlm.mask_shedule'"),
        (["sundae.unroll_steps=0"], "setting unroll_steps must be >= 1"),
        (["sample.temprature=0.5"], "unknown config key 'sample.temprature'"),
        (["sample.eta=-1"], "sampling option eta must be >= 0"),
    ],
)
def test_family_settings_and_declared_options_are_checked_by_their_owner(overrides, fragment):
    with pytest.raises(SedlmError, match=fragment):
        load_config(None, overrides)


def test_an_option_of_another_family_is_kept_and_checked_whichever_family_runs():
    """A base config shared by several families may set AR's top_p: SED keeps it unused, and a value no family
    could use is refused whichever family the config names."""
    assert check_config(from_dict({"family": "sed", "sample": {"top_p": 0.9}})).sample.options == {"top_p": 0.9}
    for family in ("sed", "ar"):
        with pytest.raises(SedlmError, match="sample.top_p: sampling option top_p must be >= 0"):
            check_config(from_dict({"family": family, "sample": {"top_p": -1}}))


def test_a_family_reads_its_settings_with_their_declared_defaults():
    from sedlm.families import get_family

    mdlm, sundae = get_family("mdlm"), get_family("sundae")
    cfg = load_config(None, ["mdlm.spindle_lambda=0.25"])
    assert mdlm.setting(cfg, "spindle_lambda") == 0.25 and mdlm.setting(cfg, "mask_schedule") == "linear"
    assert sundae.setting(cfg, "unroll_steps") == 2


def test_seq2seq_gets_its_task_defaults_and_chosen_values_win(tmp_path):
    """--task seq2seq over the tiny config (whose values were chosen for lm) brings the seq2seq defaults; an
    override, or a key of a file written for seq2seq, wins; the resolved config holds them (a checkpoint
    reloads them as they were), and lm runs keep the file's values."""
    tiny = resolve_config_path("tiny")
    cfg = load_config(tiny, ["data.task=seq2seq"])
    assert cfg.embed.kind == "random" and cfg.diffusion.logsnr_shift == -3.0 and cfg.data.fit_rows
    assert cfg.model.d_model == 128 and cfg.train.batch_size == 16  # the file's other values stay
    assert from_dict(cfg.to_dict()) == cfg
    lm = load_config(tiny)
    assert lm.embed.kind == "ppmi" and lm.diffusion.logsnr_shift == 0.0 and not lm.data.fit_rows
    chosen = load_config(tiny, ["embed.kind=ppmi", "diffusion.logsnr_shift=-1", "data.task=seq2seq"])
    assert chosen.embed.kind == "ppmi" and chosen.diffusion.logsnr_shift == -1.0 and chosen.data.fit_rows
    own = tmp_path / "s2s.yaml"
    own.write_text("data:\n  task: seq2seq\n  fit_rows: false\nembed:\n  kind: mlm\n")
    mine = load_config(own)
    assert mine.embed.kind == "mlm" and not mine.data.fit_rows and mine.diffusion.logsnr_shift == -3.0
    with pytest.raises(SedlmError, match="data.fit_rows"):
        load_config(None, ["data.fit_rows=true"])  # lm rows are packed full
