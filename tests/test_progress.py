"""Progress: a bar on a terminal, plain periodic lines when the output is a file or a pipe."""

import io

from sedlm.cli import main
from sedlm.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    bar = progress(total=10, desc="train", stream=out, every_s=0.0)
    assert isinstance(bar, LineProgress)
    for _ in range(10):
        bar.update(1)
        bar.set_postfix(loss="1.000")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 11  # one per update (every_s=0) and one at the end
    assert lines[-1].startswith("train: 10/10 (100%)") and lines[-1].endswith("loss=1.000")


def test_periodic_not_per_step_by_default():
    out = io.StringIO()
    with progress(range(1000), desc="embed", stream=out) as bar:
        for _ in bar:
            pass
    assert out.getvalue() == ""  # work shorter than the period (30 s) writes nothing


def test_a_failure_writes_no_progress_line():
    out = io.StringIO()
    try:
        with progress(total=5, desc="sampling", stream=out, every_s=0.0) as bar:
            raise ValueError("boom")
    except ValueError:
        pass
    assert out.getvalue() == "" and bar.closed


def test_a_terminal_gets_a_bar():
    bar = progress(total=3, desc="x", stream=Terminal())
    assert not isinstance(bar, LineProgress)
    bar.close()


def test_training_log_has_plain_progress_lines(tmp_path, tiny_overrides, capsys, monkeypatch):
    monkeypatch.setattr("sedlm.progress.EVERY_S", 0.0)
    assert main(["train", "--out", str(tmp_path / "r"), *tiny_overrides]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and any(line.startswith("train: 6/6 (100%)") for line in err.splitlines())
