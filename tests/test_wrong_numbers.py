"""Wrong numbers, drawn by hypothesis, for every numeric option of every subcommand and every numeric config
key: exit code 2, at most 3 lines on stderr, no traceback, and nothing left behind. Numbers go through one
checker (``sedlm.cli.flags.Number`` for flags, ``sedlm.config.RANGES`` and the families' declared
minimums for config keys), so a new flag or key that skips it fails the first two tests."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sedlm.cli import build_parser, main
from sedlm.cli.flags import Number
from sedlm.config import Config
from sedlm.config.loading import _SECTIONS
from sedlm.families import all_families
from sedlm.ranges import RANGES
from sedlm.sampling.samplers import SAMPLERS


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of every runnable subcommand, nested ones included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _commands(child, (*path, name))


NUMERIC_FLAGS = sorted(
    (words, a.option_strings[0], a.type)
    for words, p in _commands(build_parser())
    for a in p._actions
    if isinstance(a.type, Number)
)


def test_every_number_on_the_command_line_goes_through_the_checker():
    bare = [
        (" ".join(words), a.option_strings)
        for words, p in _commands(build_parser())
        for a in p._actions
        if a.type in (int, float)
    ]
    assert not bare, f"plain int/float flags skip the range check: {bare}"
    assert len(NUMERIC_FLAGS) >= 40  # sample, eval, train-adjacent, bench, serve, distill, prepare, quickstart


def test_every_numeric_config_key_has_a_declared_range():
    numeric = {
        f"{s}.{f.name}"
        for s in _SECTIONS
        for f in dataclasses.fields(getattr(Config(), s))
        if f.type in ("int", "float", int, float)
    }
    assert numeric == set(RANGES)


def _outside(number: Number) -> st.SearchStrategy[str]:
    """Text that ``number`` must refuse: below its minimum, at an open bound, above its maximum, not finite,
    or not a number at all."""
    wrong: list[st.SearchStrategy[str]] = [st.sampled_from(["abc", "", "1x", "-", "--", "0x10"])]
    if number.kind is int:
        wrong.append(st.sampled_from(["1.5", "1e3"]))
    else:
        wrong.append(st.sampled_from(["nan", "inf", "-inf"]))
    for bound, strict in ((number.minimum, False), (number.above, True)):
        if bound is not None:
            below = (
                st.integers(max_value=math.ceil(bound) - 1)
                if number.kind is int
                else st.floats(max_value=bound, allow_nan=False, allow_infinity=False).filter(
                    lambda v, b=bound, s=strict: v < b or s and v == b
                )
            )  # -0.0 == 0.0 is not below 0
            wrong.append(below.map(repr))
    if number.maximum is not None:
        wrong.append(st.integers(min_value=int(number.maximum) + 1).map(str))
    return st.one_of(wrong)


@pytest.fixture
def in_tmp(tmp_path):
    """Run in an empty folder: whatever a command leaves behind shows up in it."""
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


def _run_refused(argv: list[str], capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, err)
    assert "Traceback" not in err and 1 <= len(lines) <= 3, (argv, err)
    return err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_wrong_number_for_any_flag_is_refused_before_any_work(data, in_tmp, capsys):
    words, flag, number = data.draw(st.sampled_from(NUMERIC_FLAGS), label="flag")
    value = data.draw(_outside(number), label="value")
    err = _run_refused([*words, f"{flag}={value}"], capsys)
    assert flag in err or value == "--" and "required" in err  # argparse reports a missing --ckpt first then
    assert list(in_tmp.iterdir()) == []


def _config_keys() -> list[tuple[str, float | None, float | None, bool, bool, type]]:
    """(key, low, high, open_low, open_high, type) of every numeric shared key and family setting."""
    keys = []
    defaults = Config()
    for key, r in RANGES.items():
        section, name = key.split(".")
        kind = type(getattr(getattr(defaults, section), name))
        keys.append((key, r.low, r.high, r.open_low, r.open_high, kind))
    for family in all_families():
        for o in family.settings:
            if o.type in (int, float) and o.minimum is not None:
                keys.append((f"{family.name}.{o.name}", o.minimum, None, False, False, o.type))
    options = [o for f in all_families() for o in f.options] + [o for e in SAMPLERS.values() for o in e.options]
    for o in options:  # sampling options set in the config (sample.NAME); shared ones are in RANGES already
        if o.type in (int, float) and o.minimum is not None and not o.config_key:
            keys.append((f"sample.{o.name}", o.minimum, None, False, False, o.type))
    return sorted(set(keys))


CONFIG_KEYS = _config_keys()


@st.composite
def _wrong_setting(draw) -> tuple[str, str]:
    key, low, high, open_low, open_high, kind = draw(st.sampled_from(CONFIG_KEYS))
    wrong = [st.sampled_from(["abc", "[1, 2]", "{a: 1}"])]
    if kind is float:
        wrong.append(st.sampled_from([".nan", ".inf", "-.inf"]))
    if kind is int:
        wrong.append(st.sampled_from(["1.5", "true"]))
    if low is not None:
        edge = st.just(low) if open_low else st.nothing()
        below = (
            st.integers(max_value=math.ceil(low) - 1)
            if kind is int
            else st.floats(max_value=low, allow_nan=False, allow_infinity=False).filter(lambda v, b=low: v < b)
        )
        wrong.append(st.one_of(below, edge).map(repr))
    if high is not None:
        above = (
            st.integers(min_value=math.floor(high) + 1)
            if kind is int
            else st.floats(min_value=high, allow_nan=False, allow_infinity=False).filter(
                lambda v, b=high, s=open_high: v > b or s and v == b
            )
        )
        wrong.append(above.map(repr))
    return key, draw(st.one_of(wrong))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_wrong_setting())
def test_a_wrong_value_for_any_config_key_is_refused_before_any_work(case, in_tmp, capsys):
    key, value = case
    err = _run_refused(["train", "--out", "run", f"{key}={value}"], capsys)
    assert key in err
    assert list(in_tmp.iterdir()) == []
