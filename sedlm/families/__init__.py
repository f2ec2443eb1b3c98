"""The registry of model families: the only list of them. CLI choices and help, the server, the
benchmarks and the docs all read ``FAMILIES``; adding a family is one module in this package (holding
a ``FAMILY`` instance of a ``sedlm.families.base.Family`` subclass) and one line here."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sedlm.errors import SedlmError

# name -> module holding FAMILY (imported on first use, so listing names costs nothing)
FAMILIES: dict[str, str] = {
    "sed": "sedlm.families.sed",
    "ar": "sedlm.families.ar",
    "mdlm": "sedlm.families.mdlm",
    "sundae": "sedlm.families.sundae",
}


def get_family(name: str) -> Any:
    """The family (a ``sedlm.families.base.Family``) registered under ``name``; an unknown name lists the valid
    ones. This module imports nothing of the package but its errors, so the config can check names
    against the registry without an import cycle."""
    if name not in FAMILIES:
        raise SedlmError(f"unknown model family '{name}'; valid families: {', '.join(FAMILIES)}")
    family = import_module(FAMILIES[name]).FAMILY
    assert family.name == name, f"{FAMILIES[name]} registers '{family.name}' under '{name}'"
    return family


def all_families() -> list[Any]:
    return [get_family(name) for name in FAMILIES]
