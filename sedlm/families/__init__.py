"""The registry of model families: the only list of them. CLI choices and help, the server, the
benchmarks and the docs all read ``FAMILIES``; adding a family is one module in this package (holding
a ``FAMILY`` instance of a ``sedlm.families.base.Family`` subclass) and one line here.

``check_config`` is the whole check of a config: the shared sections (``sedlm.config.validate``), then
every family section against the settings its family declares, the sampling options against the
declarations of the families and samplers, and the chosen family's own checks."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from sedlm.config import SHARED_KEYS, Config, validate
from sedlm.config import load_config as load_shared
from sedlm.errors import SedlmError

# name -> module holding FAMILY (imported on first use, so listing names costs nothing)
FAMILIES: dict[str, str] = {
    "sed": "sedlm.families.sed",
    "ar": "sedlm.families.ar",
    "mdlm": "sedlm.families.mdlm",
    "sundae": "sedlm.families.sundae",
}


def get_family(name: str) -> Any:
    """The family (a ``sedlm.families.base.Family``) registered under ``name``; an unknown name lists the
    valid ones."""
    if name not in FAMILIES:
        raise SedlmError(f"unknown model family '{name}'; valid families: {', '.join(FAMILIES)}")
    family = import_module(FAMILIES[name]).FAMILY
    assert family.name == name, f"{FAMILIES[name]} registers '{family.name}' under '{name}'"
    return family


def all_families() -> list[Any]:
    return [get_family(name) for name in FAMILIES]


def check_config(cfg: Config) -> Config:
    """Raise SedlmError naming the first wrong value of ``cfg`` (module docstring); return ``cfg``."""
    validate(cfg)
    family = get_family(cfg.family)
    families = all_families()
    for section in cfg.settings:
        if section not in FAMILIES:
            valid = ", ".join([*SHARED_KEYS, *FAMILIES])
            raise SedlmError(
                f"unknown config section '{section}'; valid sections: {valid} (a family's name holds its own settings)"
            )
    for f in families:
        f.check_settings(cfg)
    declared: dict[str, list] = {}
    for f in families:
        for o in f.options:
            declared.setdefault(o.name, []).append((o, f.name))
    for key, value in cfg.sample.options.items():
        if key not in declared:
            valid = ", ".join([*(f"sample.{k}" for k in SHARED_KEYS["sample"]), *sorted(declared)])
            raise SedlmError(f"unknown config key 'sample.{key}'; valid keys: {valid}")
        for o, owner in declared[key]:  # every declaration of it accepts the value, whichever family runs
            try:
                o.check(value, f"family {owner}")
            except SedlmError as e:
                raise SedlmError(f"config key sample.{key}: {e}") from None
    family.resolve_options(cfg.sample, {})  # the values of its own options set in the config
    family.check_config(cfg)
    return cfg


def upgrade_config(cfg: Config, version: int) -> Config:
    """A config read from a checkpoint of format ``version``: its family's settings that older formats
    implied (``Family.format_settings``) are filled in where the file does not set them; returns ``cfg``."""
    if cfg.family in FAMILIES:
        family = get_family(cfg.family)
        for upto, implied in family.format_settings.items():
            if version <= upto:
                section = cfg.settings.setdefault(family.name, {})
                for key, value in implied.items():
                    section.setdefault(key, value)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """``sedlm.config.load_config`` (YAML file + ``section.key=value`` overrides), then ``check_config``."""
    return check_config(load_shared(path, overrides))
