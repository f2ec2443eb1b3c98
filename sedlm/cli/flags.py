"""Command-line flags: the one numeric type every number on the command line goes through (``Number``:
finite, within its declared bounds, checked while parsing, before any work starts), and the flags derived
from the sampling options the registered families declare: one flag per option name (the union over
families); an option the loaded model's family lacks is an error when the model is asked to use it
(``Family.resolve_options``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from sedlm.families import all_families
from sedlm.io import check_output
from sedlm.options import Option
from sedlm.ranges import SEED_MAX


class Number:
    """An argparse ``type``: a finite ``kind`` (int or float) with ``minimum <= value`` (``value > above``
    when ``above`` is set) and ``value <= maximum``; anything else is a usage error in one line (exit 2)."""

    def __init__(
        self,
        kind: type = int,
        minimum: float | None = None,
        *,
        above: float | None = None,
        maximum: float | None = None,
    ):
        self.kind, self.minimum, self.above, self.maximum = kind, minimum, above, maximum
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects {self.describe()}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expects a finite number, got {text!r}")
        low = self.above is not None and value <= self.above or self.minimum is not None and value < self.minimum
        if low or self.maximum is not None and value > self.maximum:
            raise argparse.ArgumentTypeError(f"expects {self.describe()}, got {text}")
        return value

    def describe(self) -> str:
        show = lambda v: str(int(v)) if self.kind is int else f"{v:g}"  # noqa: E731
        bounds = [f">= {show(self.minimum)}" if self.minimum is not None else ""]
        bounds += [f"> {show(self.above)}" if self.above is not None else ""]
        bounds += [f"<= {show(self.maximum)}" if self.maximum is not None else ""]
        text = " and ".join(b for b in bounds if b)
        what = "an integer" if self.kind is int else "a number"
        return f"{what} {text}" if text else what


def output(parser: argparse.ArgumentParser, flag: str, kind: str = "folder", **kw: Any) -> argparse.Action:
    """Add an output path option (``kind``: "folder" or "file"): every output a subcommand declares this way is
    checked by ``check_outputs`` before the command does any work (``sedlm.io.check_output``)."""
    action = parser.add_argument(flag, **kw)
    outputs = {**(parser.get_default("_outputs") or {}), action.dest: (flag, kind)}
    parser.set_defaults(_outputs=outputs)
    return action


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path the chosen subcommand declared (``output``) and the user gave or defaulted."""
    for dest, (flag, kind) in (getattr(args, "_outputs", None) or {}).items():
        if getattr(args, dest, None):
            check_output(getattr(args, dest), flag, kind)


def unparsed_number(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The flag of a ``Number`` option whose value never went through its type (argparse passes the value
    ``--`` on as a list), if any."""
    stack = [parser]
    while stack:
        p = stack.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                stack.extend(a.choices.values())
            elif isinstance(a.type, Number) and isinstance(getattr(args, a.dest, None), list):
                return a.option_strings[0]
    return None


def count(minimum: int = 1) -> Number:
    """A whole number of things (samples, steps, rows): at least ``minimum``."""
    return Number(int, minimum)


def seed() -> Number:
    return Number(int, 0, maximum=SEED_MAX)


def positive() -> Number:
    """A real number above 0 (rates, temperatures, scales)."""
    return Number(float, above=0.0)


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
        kw: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if o.type is bool else {"type": option_type(o)}
        if o.choices:  # checked by the family, so a wrong value gets its one-line message
            kw["metavar"] = "{" + ",".join(o.choices) + "}"
        default = f"sample.{o.config_key}" if o.config_key else repr(o.default)
        p.add_argument(
            o.flag, dest=o.name, default=None, help=f"{'/'.join(families)}: {o.help} (default: {default})", **kw
        )


def option_type(o: Option) -> Any:
    """The flag type of a declared option: a ``Number`` with the option's minimum for numbers."""
    return Number(o.type, o.minimum) if o.type in (int, float) else o.type


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The declared sampling options given on the command line (unset ones fall back to config.sample)."""
    return {k: getattr(args, k) for k in declared_options() if getattr(args, k, None) is not None}
