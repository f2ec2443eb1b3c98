"""Progress of long work: a tqdm bar on a terminal, periodic plain lines otherwise.

A bar redrawn with carriage returns floods a log file or a CI console; when the stream is not a
terminal, ``LineProgress`` writes one line every ``every_s`` seconds (and one at the end, if it wrote
any: work shorter than the period stays silent) instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm.auto import tqdm

EVERY_S = 30.0


class LineProgress:
    """The part of tqdm's interface the library uses, printing ``desc: n/total (p%), elapsed, postfix``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        initial: int = 0,
        every_s: float = EVERY_S,
        stream: IO[str] | None = None,
    ):
        self.iterable, self.desc, self.n = iterable, desc, initial
        self.total = total if total is not None or iterable is None else _len(iterable)
        self.every_s, self.stream = every_s, stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False
        self.lines = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:  # the work failed: its error is the message, not a progress line
            self.closed = True
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every_s:
            self._line()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.lines:
                self._line()

    def _line(self) -> None:
        self.last, self.lines = time.monotonic(), self.lines + 1
        done = (
            f"{self.n}/{self.total}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")
            if self.total
            else f"{self.n}"
        )
        elapsed = time.monotonic() - self.start
        print(
            f"{self.desc}: {done}, {elapsed:.0f}s" + (f", {self.postfix}" if self.postfix else ""),
            file=self.stream,
            flush=True,
        )


def _len(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    initial: int = 0,
    stream: IO[str] | None = None,
    every_s: float | None = None,
    **tqdm_kw: Any,
) -> Any:
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a ``LineProgress``; nothing shown
    when not ``enabled``."""
    stream = stream or sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, total=total, desc=desc, initial=initial, file=stream, **tqdm_kw)
    return LineProgress(iterable, total, desc, initial, EVERY_S if every_s is None else every_s, stream)
