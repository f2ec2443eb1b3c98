"""Command-line flags derived from the sampling options the registered families declare: one flag per
option name (the union over families); an option the loaded model's family lacks is an error when
the model is asked to use it (``Family.resolve_options``)."""

from __future__ import annotations

import argparse
from typing import Any

from sedlm.families import all_families
from sedlm.options import Option


def declared_options() -> dict[str, tuple[Option, list[str]]]:
    """Every sampling option a registered family declares -> (the declaration, the families declaring it)."""
    seen: dict[str, tuple[Option, list[str]]] = {}
    for family in all_families():
        for o in family.options:
            seen.setdefault(o.name, (o, []))[1].append(family.name)
    return seen


def add_option_flags(p: argparse.ArgumentParser) -> None:
    """One flag per declared sampling option (``--score-temp`` for ``score_temp``)."""
    for o, families in declared_options().values():
        kw: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if o.type is bool else {"type": o.type}
        if o.choices:  # checked by the family, so a wrong value gets its one-line message
            kw["metavar"] = "{" + ",".join(o.choices) + "}"
        default = f"sample.{o.config_key}" if o.config_key else repr(o.default)
        p.add_argument(
            o.flag, dest=o.name, default=None, help=f"{'/'.join(families)}: {o.help} (default: {default})", **kw
        )


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The declared sampling options given on the command line (unset ones fall back to config.sample)."""
    return {k: getattr(args, k) for k in declared_options() if getattr(args, k, None) is not None}
