"""Every `sedlm` command in the documentation's shell blocks parses with the CLI as shipped, so a renamed
or removed option cannot linger in README.md, benchmarks/README.md or docs/ (parsed only, never run)."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from sedlm.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_commands(text: str) -> list[str]:
    """`sedlm ...` lines of the ```bash blocks in ``text``: continuations joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#", line)[0].strip()
            if line.startswith("sedlm ") and not line.startswith("sedlm lm-eval"):  # lm-eval parses its own line
                out.append(line)
    return out


COMMANDS = [(doc.relative_to(ROOT).as_posix(), cmd) for doc in DOCS for cmd in shell_commands(doc.read_text())]


def parse_error(command: str) -> str | None:
    """argparse's message for ``command``, or None when the CLI accepts it."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(shlex.split(command)[1:])
    except SystemExit as e:
        return err.getvalue().strip() or f"exit {e.code}" if e.code else None
    return None


def test_the_docs_hold_commands_to_check():
    assert len(COMMANDS) >= 30 and {doc for doc, _ in COMMANDS} >= {"README.md", "benchmarks/README.md"}


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[f"{d}:{i}" for i, (d, _) in enumerate(COMMANDS)])
def test_documented_command_parses(doc, command):
    error = parse_error(command)
    assert error is None, f"{doc}: `{command}` -> {error}"


def test_a_stale_option_is_caught():
    assert "unrecognized arguments: --minutes-per-step" in parse_error("sedlm bench compare --minutes-per-step 3")
    assert parse_error("sedlm bench ablate --seeds 0,1 --threads 1") is None
