"""The declaration of one option: a sampling option of a family or of a sampler, or a setting a family owns.

Every place that offers an option reads its declaration: the command-line flags (``--score-temp`` for
``score_temp``), the Python API's keyword arguments, the server's request schema and the config's
defaults. Values are checked here, so a wrong one gets the same one-line message wherever it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sedlm.errors import SedlmError


@dataclass(frozen=True)
class Option:
    """One option: its keyword name, value type, help text, where its default comes from (the shared
    ``config.sample`` field ``config_key``, else ``default``), allowed values and a lower bound.

    ``kind`` says what it is in messages ("sampling option" or "setting"); ``per_request`` False marks a
    deployment setting (e.g. compiling the network) that the server's requests leave out."""

    name: str
    type: type
    help: str
    config_key: str | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    per_request: bool = True
    kind: str = "sampling option"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_for(self, sample: Any, owner: str = "") -> Any:
        """The value a config holds for this sampling option: its shared ``sample`` field, else the value
        set in ``sample.options`` (checked), else the declared default."""
        if self.config_key:
            return getattr(sample, self.config_key)
        options = getattr(sample, "options", {})
        return self.check(options[self.name], owner) if self.name in options else self.default

    def check(self, value: Any, owner: str) -> Any:
        """``value`` coerced to the option's type, or a clear error (``owner``: the family or sampler)."""
        what = f"{self.kind} {self.name} of {owner}" if owner else f"{self.kind} {self.name}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise SedlmError(f"{what} takes true or false, got {value!r}")
            return value
        whole = self.type is not int or not isinstance(value, float) or value.is_integer()
        if isinstance(value, bool) or not whole:  # int(True) and int(1.5) would pass silently
            raise SedlmError(f"{what} takes a {self.type.__name__}, got {value!r}")
        try:
            value = self.type(value)
        except (TypeError, ValueError):
            raise SedlmError(f"{what} takes a {self.type.__name__}, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SedlmError(f"{self.kind} {self.name} must be a finite number (got {value})")
        if self.choices is not None and value not in self.choices:
            raise SedlmError(f"unknown {self.name} '{value}' for {owner}; valid values: {', '.join(self.choices)}")
        if self.minimum is not None and not value >= self.minimum:
            raise SedlmError(f"{self.kind} {self.name} must be >= {self.minimum:g} (got {value})")
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (the server's /v1/model lists these)."""
        return {
            "name": self.name,
            "type": self.type.__name__,
            "help": self.help,
            "choices": list(self.choices or []) or None,
            "minimum": self.minimum,
        }
