"""Thread counts: explicit, inherited from OMP_NUM_THREADS, or chosen from free cores (sedlm/threads.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from sedlm import threads
from sedlm.cli import main
from sedlm.errors import SedlmError


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: ``set(cores, busy)``; no thread settings in the environment."""
    for var in ("SEDLM_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)

    def set_(cores: int, busy: int) -> None:
        monkeypatch.setattr(threads, "usable_cores", lambda: cores)
        monkeypatch.setattr(threads, "busy_elsewhere", lambda: busy)

    return set_


def test_parse():
    assert threads.parse_threads(None) is None and threads.parse_threads("auto") is None
    assert threads.parse_threads("3") == 3 and threads.parse_threads(2) == 2
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(SedlmError, match="--threads must be a positive number or auto"):
            threads.parse_threads(bad)


@pytest.mark.parametrize(
    "cores,busy,local,share,want",
    [
        (2, 0, 1, 1, 2),  # idle: every core
        (2, 1, 1, 1, 1),  # one core busy elsewhere: the other one (no oversubscription)
        (2, 5, 1, 1, 1),  # at least one
        (8, 0, 4, 1, 2),  # a 4-process launch: a quarter each
        (8, 4, 4, 1, 1),  # ... less its share of the others' load
        (8, 0, 1, 2, 4),  # a server running two model calls at once: half each
    ],
)
def test_auto_divides_the_free_cores(machine, monkeypatch, cores, busy, local, share, want):
    machine(cores, busy)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local))
    n, why = threads.choose_threads(None, share)
    assert n == want and why.startswith("auto")


def test_explicit_and_inherited_settings_win(machine, monkeypatch):
    machine(8, 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(None) == (None, "OMP_NUM_THREADS")  # a launcher's choice is kept
    monkeypatch.setenv("SEDLM_THREADS", "5")
    assert threads.choose_threads(None) == (5, "SEDLM_THREADS")
    assert threads.choose_threads("2") == (2, "--threads")
    assert threads.choose_threads("auto") == (None, "OMP_NUM_THREADS")  # asked for auto: the launcher's setting


def test_busy_elsewhere_sees_a_spinning_process():
    if not threads.Path("/proc/loadavg").is_file():
        pytest.skip("no /proc/loadavg")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads.busy_elsewhere() >= 1
    finally:
        spin.kill()
        spin.wait()


def test_cli_flag_sets_torch_threads_and_rejects_bad_values(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["recipes", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["recipes", "--threads", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["sedlm recipes: error: --threads must be a positive number or auto (got '0')"]
    finally:
        torch.set_num_threads(before)
