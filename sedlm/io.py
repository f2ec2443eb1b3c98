"""Output paths: checked before any work starts (``check_output``), and written atomically (a temp file in
the same folder, flushed, then renamed over the target, so a reader or a crash never sees a half-written file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sedlm.errors import SedlmError


def check_output(path: str | Path, flag: str, kind: str = "folder") -> None:
    """An output ``kind`` ("folder" or "file") at ``path`` must be one we can create or write: a folder path
    that is not a file, a file path that is not a folder, under a writable existing ancestor. Creates nothing."""
    out = Path(path)
    if kind == "folder" and out.exists() and not out.is_dir():
        raise SedlmError(f"{flag} '{out}' is a file; pass a folder path")
    if kind == "file" and out.is_dir():
        raise SedlmError(f"{flag} '{out}' is a folder; pass a file path")
    ancestors = [out, *out.parents] if kind == "folder" else list(out.parents)
    parent = next((p for p in ancestors if p.exists()), Path("."))
    if not parent.is_dir():
        raise SedlmError(f"{flag} '{out}' cannot be created: '{parent}' is a file; pick another path")
    try:  # a real write, since permission bits do not tell (root, read-only mounts, /proc)
        tempfile.TemporaryDirectory(dir=parent, prefix=".sedlm-probe-").cleanup()
    except OSError:
        raise SedlmError(f"{flag} '{out}' cannot be created ('{parent}' is not writable); pick another path") from None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) atomically, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
