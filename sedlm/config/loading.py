"""Reading and checking a configuration: YAML files, ``section.key=value`` overrides, task defaults, and the
validation that makes a bad value fail at start with one clear message."""

from __future__ import annotations

import dataclasses
import math
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sedlm.config.sections import TRACKERS, Config
from sedlm.devices import PRECISIONS
from sedlm.errors import SedlmError
from sedlm.ranges import RANGES

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
    ("train", "precision"): PRECISIONS,
    ("sample", "time_grid"): ("uniform", "karras", "cosine", "warped"),
    ("sample", "guidance_mode"): ("cond", "self_cond"),
    ("sample", "precision"): PRECISIONS,
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
