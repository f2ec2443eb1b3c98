"""How many CPU threads torch may use, chosen deliberately.

torch starts one compute thread per core. Two such processes on the same cores oversubscribe them and
both slow down far more than sharing would explain (threads wait on each other at every parallel
region), so the CLI picks the count:

    explicit   ``--threads N`` on any subcommand, or the ``SEDLM_THREADS`` environment variable
    inherited  ``OMP_NUM_THREADS`` set by the user or a launcher (torchrun, accelerate) is kept
    auto       the cores this process may run on (its CPU affinity), divided among the processes of a
               multi-process launch on this machine (``LOCAL_WORLD_SIZE``), less the cores other
               programs keep busy right now (the runnable count of ``/proc/loadavg``, read a few times),
               and at least 1

Only the CLI applies a choice; the Python API leaves torch's setting alone. Thread count can change
the last bits of CPU arithmetic: pass ``--threads`` for runs that must repeat bit for bit.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from sedlm.errors import SedlmError

ENV = "SEDLM_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def busy_elsewhere(samples: int = 5, interval_s: float = 0.02) -> int:
    """Threads of other programs runnable right now: the median over a few reads of /proc/loadavg's
    running count, less the reader itself. 0 where the OS does not say."""
    path = Path("/proc/loadavg")
    if not path.is_file():
        return 0
    counts = []
    for i in range(samples):
        try:
            counts.append(int(path.read_text().split()[3].split("/")[0]))
        except (OSError, ValueError, IndexError):
            return 0
        if i < samples - 1:
            time.sleep(interval_s)
    return max(0, int(statistics.median(counts)) - 1)


def parse_threads(value: str | int | None) -> int | None:
    """``None``/"auto" -> None (choose), else a positive int; a clear error otherwise."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise SedlmError(f"--threads must be a positive number or auto (got {value!r})")
    return n


def choose_threads(requested: str | int | None = None, share: int = 1) -> tuple[int | None, str]:
    """The thread count to use and why; (None, reason) means keep torch's current setting.
    ``share`` divides the cores further among concurrent workers of this process (the server's pool)."""
    if share < 1:
        raise SedlmError(f"share must be at least 1 (got {share})")
    explicit = parse_threads(requested if requested is not None else os.environ.get(ENV))
    if explicit is not None:
        return explicit, "--threads" if requested is not None else ENV
    if os.environ.get("OMP_NUM_THREADS"):
        return None, "OMP_NUM_THREADS"
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    per_process = max(1, usable_cores() // local)
    others = busy_elsewhere()
    # other programs' load spreads over every core of the machine, this process's share of it by local
    free = per_process - -(-others // local)
    return max(
        1, min(per_process, free) // share
    ), f"auto: {usable_cores()} cores, {local} process(es), {others} busy elsewhere"


def apply_threads(requested: str | int | None = None, share: int = 1) -> int | None:
    """Set torch's intra-op thread count by ``choose_threads``; returns it (None: left as it was). When torch
    is not imported yet the count goes to ``OMP_NUM_THREADS``, which torch reads as it starts, so commands
    that never use torch do not pay for importing it (processes they start inherit the setting)."""
    n, _ = choose_threads(requested, share)
    if n is not None:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
        else:
            os.environ["OMP_NUM_THREADS"] = str(n)
    return n
