"""Nested dataclass configuration.

Defaults live here only; YAML files and ``section.key=value`` overrides change them.
Everything is validated at start so that a bad value fails with one clear message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sedlm.errors import SedlmError
from sedlm.ranges import RANGES

FORMAT_VERSION = 2  # 2: autoregressive rows start at a row-start token (ar.row_start)


@dataclass
class ModelConfig:
    """Denoiser backbone (Strudel et al. 2022, §3)."""

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    d_embed: int = 64
    dropout: float = 0.0
    time_cond: str = "add"  # "add" (paper: sinusoidal -> MLP added to the input) or "adaln" (DiT)
    # "zero": the self-conditioning estimate's input weights start at zero, so it enters as a residual
    # learned from nothing (LangFlow's zero-initialised projection of [x_t ; x0_sc]); "default": as the rest
    self_cond_init: str = "default"
    # LangFlow's skip term (interp estimates): logits += alpha_t / sigma_t^2 <x_t, E_v>, the exact token
    # posterior of the noisy state for independent tokens over equal-norm rows; the network learns the rest
    logit_skip: bool = False
    vocab_size: int = 0  # filled from the tokenizer when 0


@dataclass
class EmbedConfig:
    """The frozen embedding space E (Strudel et al. 2022, §3.1) and the masked LM that learns it."""

    # "mlm" (masked LM of `sedlm embed`, the paper), "ppmi" (truncated SVD of the training text's PPMI
    # co-occurrence matrix: seconds, no training), "random" (frozen random), "learned" (joint, normalised),
    # "bits" (Analog Bits: the token id's binary code as +-1 values; d_embed becomes ceil(log2 V)),
    # "pretrained" (the paper's choice: PCA of a pretrained model's input embeddings, see `pretrained`)
    kind: str = "mlm"
    # kind=pretrained: "minilm" (bundled all-MiniLM-L6-v2), "smollm2" (bundled SmolLM2-135M), or a local
    # model folder / Hugging Face hub name; the run then uses that model's tokenizer (data.tokenizer and
    # data.vocab_size are ignored). See sedlm/model/pretrained_table.py
    pretrained: str = ""
    path: str = ""  # an embeddings.safetensors written by `sedlm embed`; built on the fly if empty
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    mask_prob: float = 0.15
    max_minutes: float = 0.0  # wall-clock cap for the masked LM stage; 0 means no cap
    seed: int = 1
    window: int = 4  # ppmi: co-occurrence window (tokens on each side)


@dataclass
class DiffusionConfig:
    """Forward process and SED objective (Strudel et al. 2022, §3)."""

    schedule: str = "cosine"
    logsnr_shift: float = 0.0  # added to the schedule's log-SNR; negative = more time at high noise
    # CDCD time warping: fit the loss as a function of t during training, draw t where it changes fastest,
    # and offer the fitted warp as a sampling grid (sample.time_grid=warped); stored in the checkpoint
    time_warp: bool = False
    # how the warp is fitted: "isotonic" (CDCD: monotone piecewise-linear in t) or "gumbel" (LangFlow: the loss
    # as H times a Gumbel CDF in -log SNR, so noise levels are drawn from that Gumbel and steps sit at its quantiles)
    warp_fit: str = "isotonic"
    # SeqDiffuSeq's adaptive noise schedule: one warp per position, fitted so that each position's loss
    # rises linearly along a shared time u (training draws u, samplers step uniformly in u); ddpm/ddim only
    position_warp: bool = False
    # block diffusion (BD3-LM, Arriola et al. 2025): rows are cut into blocks of this many tokens, each
    # denoised given the clean blocks before it (a KV cache when sampling); 0 = the whole row (plain SED)
    block_size: int = 0
    sigma0: float = 1e-2
    # "vp": the network sees the variance-preserving state; "flow": flow matching's straight path
    # x_t = (1 - t) x0 + t eps (use with schedule=flow; sedlm/diffusion/schedules.py)
    path: str = "vp"
    # training times: "uniform" t ~ U[0, 1], or "logit_normal" t = sigmoid(time_mean + time_std * n)
    # (Esser et al. 2024), which spends more steps at middle noise levels
    time_dist: str = "uniform"
    time_mean: float = 0.0
    time_std: float = 1.0
    # weight of the x0 MSE: "x0" (1) or "velocity" (1 / t'^2 with t' the straight path's time at that noise
    # level, capped at 100: the flow-matching velocity loss ||v - v_hat||^2 written for an x0 estimate)
    mse_weighting: str = "x0"
    self_cond: str = "both"  # "both" (paper), "half_nograd" (Analog Bits), "off"
    # "direct": x0_hat is regressed (the paper); "interp": x0_hat = softmax(logits) E, the expected
    # embedding under the model's token distribution (CDCD score interpolation; train with mse_weight=0)
    x0_estimate: str = "direct"
    mse_weight: float = 1.0
    ce_weight: float = 1.0
    # Diffusion-LM's rounding term: CE of the readout applied to the clean x0 itself (not to x0_hat),
    # which keeps learned embeddings decodable (Li et al. 2022, eq. 2's L_round)
    round_weight: float = 0.0
    p_uncond: float = 0.1
    # ELF's self-conditioning guidance trained into the network: a guidance weight w is an input (embedded like
    # t), drawn per example with log(1 + w) uniform on [log(1 + w_min), log(1 + w_max)]; on self-conditioned
    # examples the regression target is x0 + (1 - 1/w)(x0_c - x0_u), x0_u the estimate without
    # self-conditioning and x0_c with it (both without gradient), so the output at w is
    # x0_u + w (x0 - x0_u): guidance in one call (sample with the family option sc_weight). Needs
    # self_cond=half_nograd
    guidance_input: bool = False
    guidance_w_min: float = 0.5
    guidance_w_max: float = 5.0
    # Conditioning kinds trained on (sedlm/data/masks.py): SED's span masking (which includes
    # unconditional rows, n = 1), prompt prefixes, and free-length blanks (text then padding inside a
    # window, so that `[___]` blanks get text of a fitting length); "none" trains unconditional only.
    cond_masks: str = "span:0.6,prefix:0.2,blank:0.2"


@dataclass
class DataConfig:
    """Text source, tokenizer and packing."""

    source: str = "corpus:shakespeare"
    task: str = "lm"  # "lm" (packed text) or "seq2seq" (a .jsonl of {"src", "tgt"} pairs, one per row)
    # "bpe" (train a byte-level BPE), "word" (train a word-level tokenizer with an unknown token),
    # "gpt2" (bundled GPT-2 BPE), or a tokenizer.json / folder; embed.kind=pretrained
    # overrides it with the pretrained model's tokenizer
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    seq_len: int = 64
    # seq2seq only (on by default there, TASK_DEFAULTS): rows hold one pair and then padding, so while every
    # pair fits in half a row the rows are halved and train.batch_size doubled (a step sees as many tokens);
    # the run's config records the resulting data.seq_len and train.batch_size
    fit_rows: bool = False
    pad_fraction: float = 0.1
    val_fraction: float = 0.05
    split_seed: int = 0
    max_chars: int = 0  # use at most this many characters of training text; 0 means all


@dataclass
class TrainConfig:
    """Optimisation loop."""

    max_steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 500
    max_minutes: float = 0.0  # wall-clock budget; 0 means run max_steps
    device: str = "auto"
    # batch_size is the global batch (rows of data.seq_len tokens) whatever the process count; each
    # process splits its share into micro-batches of this many rows (gradient accumulation); 0 = no split
    micro_batch_size: int = 0
    strategy: str = "ddp"  # several processes: "ddp" (replicated model) or "fsdp" (sharded, for large models)
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16", "fp32"
    compile: bool = False  # torch.compile the model for training
    # experiment trackers, comma-separated, through Accelerate (metrics.jsonl is always written): "none",
    # tensorboard (event files in <out>/sedlm; extra sedlm[trackers]), wandb, mlflow, comet_ml, aim,
    # clearml, dvclive (each needs its own package and account)
    report_to: str = "none"


TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")


@dataclass
class SampleConfig:
    """Defaults for `sedlm sample` and `SED.generate`. Sampling options that one family or one sampler
    declares (e.g. ``temperature``, ``top_p``, ``eta``, ``churn``, ``time_delta``) are set here too, as
    ``sample.NAME=value``; they are kept in ``options`` and checked against their declarations."""

    sampler: str = "ddpm"
    steps: int = 1000
    time_grid: str = "uniform"  # uniform | karras | cosine: where the steps sit in [0, 1]
    rho: float = 7.0  # karras grid: higher rho puts more steps at low noise
    n: int = 4
    guidance: float = 1.0
    # "cond": guidance on the given tokens (prompt, template, source); unconditional requests then run
    # unguided. "self_cond": guidance on the self-conditioning estimate, for any request (2 calls/step)
    guidance_mode: str = "cond"
    seed: int = 0
    noise_temp: float = 1.0  # scale of the fresh noise of stochastic samplers (< 1 trades diversity for NLL)
    score_temp: float = 1.0  # softmax temperature of interp x0 estimates (diffusion.x0_estimate=interp)
    clamp: bool = False  # snap every x0 estimate to its nearest embedding row (Diffusion-LM clamping)
    compile: bool = False  # torch.compile the denoiser for sampling (pays off for long runs on a GPU)
    options: dict[str, Any] = field(default_factory=dict)  # declared options of a family or sampler (see above)


@dataclass
class Config:
    """The shared sections, plus ``settings``: the sections of settings a family owns (``mdlm.mask_schedule``),
    keyed by the family's name, declared and checked by the family (``sedlm.families.check_config``)."""

    family: str = "sed"
    recipe: str = ""  # the named recipe (sedlm recipes) this config was made with, if any
    model: ModelConfig = field(default_factory=ModelConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Nested dict: the sample section's options sit among its keys, each family's settings form a
        section named after the family (the shape ``from_dict`` and YAML files use)."""
        d = dataclasses.asdict(self)
        d["sample"].update(d["sample"].pop("options"))
        settings = d.pop("settings")
        version = d.pop("format_version")
        return {**d, **settings, "format_version": version}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def copy(self) -> Config:
        return from_dict(self.to_dict())


_SECTIONS = {f.name: f for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)}
_TOP = ("family", "recipe")
# The keys of each shared section, as error messages list them.
SHARED_KEYS = {
    name: [x.name for x in dataclasses.fields(f.default_factory) if x.name != "options"]
    for name, f in _SECTIONS.items()
}
CHOICES = {
    ("model", "time_cond"): ("add", "adaln"),
    ("model", "self_cond_init"): ("default", "zero"),
    ("embed", "kind"): ("mlm", "ppmi", "random", "learned", "bits", "pretrained"),
    ("data", "task"): ("lm", "seq2seq"),
    ("diffusion", "self_cond"): ("both", "half_nograd", "off"),
    ("diffusion", "x0_estimate"): ("direct", "interp"),
    ("diffusion", "path"): ("vp", "flow"),
    ("diffusion", "warp_fit"): ("isotonic", "gumbel"),
    ("diffusion", "time_dist"): ("uniform", "logit_normal"),
    ("diffusion", "mse_weighting"): ("x0", "velocity"),
    ("train", "device"): ("auto", "cpu", "cuda", "mps"),
    ("train", "strategy"): ("ddp", "fsdp"),
    ("train", "precision"): ("auto", "bf16", "fp32"),
    ("sample", "time_grid"): ("uniform", "karras", "cosine", "warped"),
    ("sample", "guidance_mode"): ("cond", "self_cond"),
}
# Defaults of a task where they differ from the shared ones, as dotted keys. The bundled configs (tiny,
# sed-s, ...) hold values chosen for language modelling; a task's defaults replace them. They apply to
# every key the run does not set itself: a command-line override always wins, and so does every key of a
# config file that names the task in effect (`data: {task: seq2seq}`). They are part of the resolved
# config, so a checkpoint's config.json holds them. Measured in benchmarks/seq2seq_synthetic.py.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "seq2seq": {
        # a PPMI (or masked-LM) table is learned from the rows, where a source word and its target words
        # co-occur, which packs their rows together; a random table keeps every token apart
        "embed.kind": "random",
        # more training draws at noise levels where the target can only be read from the source
        "diffusion.logsnr_shift": -3.0,
        # rows as long as the pairs need, the batch holding as many tokens (DataConfig.fit_rows)
        "data.fit_rows": True,
    },
}
# Keys older configs hold that no longer mean anything; dropped when read. (diffusion.timesteps: the
# samplers take their step count from sample.steps, in continuous time.)
_RETIRED = {("diffusion", "timesteps")}
# Keys older configs hold that moved to the section of the family that owns them (read under the new name).
_MOVED = {
    ("diffusion", "mask_schedule"): ("mdlm", "mask_schedule"),
    ("diffusion", "spindle_lambda"): ("mdlm", "spindle_lambda"),
    ("diffusion", "unroll_steps"): ("sundae", "unroll_steps"),
}
# Top-level keys older configs hold under another name.
_RENAMED = {"method": "family"}


def _coerce(value: Any, typ: type, name: str) -> Any:
    """Check ``value`` against a field type; ints are accepted where floats are expected."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if typ is bool and isinstance(value, bool):
        return value
    if isinstance(value, typ) and not isinstance(value, bool):
        return value
    raise SedlmError(
        f"config key '{name}' expects {typ.__name__}, got {value!r}; fix the value in the YAML file or override"
    )


def _set(section_obj: Any, section: str, key: str, value: Any) -> None:
    hints = typing.get_type_hints(type(section_obj))
    if section == "sample" and key not in SHARED_KEYS["sample"]:
        section_obj.options[key] = value  # a declared option of a family or sampler, checked by its owner
        return
    if key not in hints:
        valid = ", ".join(f"{section}.{k}" for k in hints)
        raise SedlmError(f"unknown config key '{section}.{key}'; valid keys: {valid}")
    setattr(section_obj, key, _coerce(value, hints[key], f"{section}.{key}"))


def set_key(cfg: Config, section: str, key: str, value: Any) -> None:
    """Set ``section.key``: a shared section's field (type-checked here), a sampling option kept in
    ``sample.options``, or a setting of the family section ``section`` (checked by the family)."""
    section, key = _MOVED.get((section, key), (section, key))
    if (section, key) in _RETIRED:
        return
    if section in _SECTIONS:
        _set(getattr(cfg, section), section, key, value)
    else:
        cfg.settings.setdefault(section, {})[key] = value


def from_dict(d: dict[str, Any]) -> Config:
    """Build a Config from a nested dict, rejecting unknown keys of the shared sections. Any other
    section is taken as a family's settings, checked against the families by ``sedlm.families.check_config``."""
    cfg = Config()
    for name, value in d.items():
        name = _RENAMED.get(name, name)
        if name in _TOP:
            setattr(cfg, name, _coerce(value, str, name))
        elif name == "format_version":
            cfg.format_version = _coerce(value, int, "format_version")
        elif not isinstance(value, dict):
            valid = ", ".join([*_TOP, *_SECTIONS])
            raise SedlmError(
                f"config entry '{name}' must be a section (a mapping of keys to values) or one of: {valid}"
            )
        else:
            for key, v in value.items():
                set_key(cfg, name, key, v)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SedlmError(f"override {item!r} is not of the form section.key=value (e.g. train.max_steps=100)")
        dotted, raw = item.split("=", 1)
        section, key = dotted.split(".", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:  # not a YAML scalar (e.g. "@x"): the text itself
            value = raw
        if value is None:
            value = ""
        hints = typing.get_type_hints(type(getattr(cfg, section))) if section in _SECTIONS else {}
        if hints.get(key) is str and not isinstance(value, str):
            value = raw  # e.g. data.tokenizer=gpt2 stays a string even if YAML would read a number
        set_key(cfg, section, key, value)
    return cfg


def resolve_config_path(name: str | Path | None) -> Path | None:
    """A path as given, else a bundled config of that name (``tiny`` -> sedlm/configs/tiny.yaml)."""
    if name is None:
        return None
    p = Path(name)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    bundled = resources.files("sedlm") / "configs" / f"{name}.yaml"
    return Path(str(bundled)) if bundled.is_file() else p


def apply_task_defaults(cfg: Config, explicit: set[str] | frozenset[str] = frozenset()) -> Config:
    """Set the defaults of ``cfg.data.task`` (``TASK_DEFAULTS``) on every key not named in ``explicit``
    (dotted names of the keys chosen for this task); return ``cfg``."""
    for dotted, value in TASK_DEFAULTS.get(cfg.data.task, {}).items():
        if dotted not in explicit:
            section, key = dotted.split(".", 1)
            set_key(cfg, section, key, value)
    return cfg


def _named(d: dict[str, Any]) -> set[str]:
    """The dotted keys a config file sets."""
    return {f"{s}.{k}" for s, section in d.items() if isinstance(section, dict) for k in section}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides, then the task's
    defaults (``TASK_DEFAULTS``) to the keys neither sets for that task, and validate."""
    explicit = {item.split("=", 1)[0].strip() for item in overrides or []}
    if path is None:
        cfg = Config()
    else:
        p = Path(path)
        if not p.is_file():
            raise SedlmError(f"config file '{p}' not found; pass an existing YAML file (see configs/)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SedlmError(
                f"config file '{p}' is not valid YAML ({str(e).splitlines()[0]}); fix its syntax"
            ) from None
        if not isinstance(data, dict):
            raise SedlmError(f"config file '{p}' must hold a mapping of sections (model:, train:, ...)")
        cfg = from_dict(data)
    apply_overrides(cfg, overrides or [])
    if path is not None and (data.get("data") or {}).get("task", "lm") == cfg.data.task:
        explicit |= _named(data)  # the file was written for this task: its values are choices
    apply_task_defaults(cfg, explicit)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Raise SedlmError naming the first inconsistent value of the shared sections. The family's own
    settings and options are checked by the family: ``sedlm.families.check_config`` runs both."""
    for section in _SECTIONS:  # every number finite and in its declared range, before anything divides by it
        for f in dataclasses.fields(getattr(cfg, section)):
            v = getattr(getattr(cfg, section), f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise SedlmError(f"{section}.{f.name} must be a finite number, got {v}")
            bounds = RANGES[f"{section}.{f.name}"]
            if not bounds.holds(v):
                raise SedlmError(f"{section}.{f.name} must be {bounds.describe()}, got {v}")
    if cfg.sample.time_grid == "warped" and not cfg.diffusion.time_warp:
        raise SedlmError(
            "sample.time_grid=warped needs diffusion.time_warp=true (the grid is the warp learned in "
            "training); set sample.time_grid=uniform or karras"
        )
    if cfg.diffusion.path == "flow" and cfg.diffusion.schedule != "flow":
        raise SedlmError("diffusion.path=flow is flow matching's straight path; set diffusion.schedule=flow with it")
    if cfg.diffusion.time_dist != "uniform" and (cfg.diffusion.time_warp or cfg.diffusion.position_warp):
        raise SedlmError("time warping draws its own training times; set diffusion.time_dist=uniform with it")
    if cfg.diffusion.block_size and cfg.data.seq_len % cfg.diffusion.block_size:
        raise SedlmError(
            f"diffusion.block_size={cfg.diffusion.block_size} must divide data.seq_len={cfg.data.seq_len}; "
            "pick a divisor, or 0 for the whole row"
        )
    if cfg.data.fit_rows and cfg.data.task != "seq2seq":
        raise SedlmError("data.fit_rows sizes seq2seq rows to their pairs; set data.task=seq2seq or drop it")
    if cfg.diffusion.block_size and cfg.diffusion.position_warp:
        raise SedlmError("diffusion.block_size does not combine with diffusion.position_warp; set one of them")
    if cfg.diffusion.position_warp and cfg.diffusion.time_warp:
        raise SedlmError(
            "diffusion.position_warp and diffusion.time_warp are two kinds of time warping; set one of them"
        )
    for (section, key), valid in CHOICES.items():
        v = getattr(getattr(cfg, section), key)
        if v not in valid:
            raise SedlmError(f"{section}.{key}={v!r} is not valid; choose one of: {', '.join(valid)}")
    for tracker in cfg.train.report_to.split(","):
        if tracker.strip() not in TRACKERS:
            raise SedlmError(
                f"train.report_to names '{tracker.strip()}'; choose from {', '.join(TRACKERS)} (comma-separated)"
            )
    m = cfg.model
    if m.d_model % m.n_heads or (m.d_model // m.n_heads) % 2:
        raise SedlmError(
            f"model.d_model={m.d_model} must be divisible by model.n_heads={m.n_heads} into even head sizes"
        )
    e = cfg.embed
    if e.kind == "pretrained" and not e.pretrained.strip():
        raise SedlmError(
            "embed.kind=pretrained needs embed.pretrained: minilm, smollm2, a local model folder or a "
            "Hugging Face model name"
        )
    if e.d_model % e.n_heads or (e.d_model // e.n_heads) % 2:
        raise SedlmError(
            f"embed.d_model={e.d_model} must be divisible by embed.n_heads={e.n_heads} into even head sizes"
        )
    if cfg.data.tokenizer == "bpe" and cfg.data.vocab_size < 259:
        raise SedlmError(
            f"data.vocab_size={cfg.data.vocab_size} is below what a byte-level BPE needs (256 bytes + pad, "
            "end-of-document and mask tokens); use at least 259"
        )
