"""Results files: ``<name>.json`` shaped as ``{"name", "command", "machine", "rows"}``
and a Markdown table ``<name>.md`` beside it, both written atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from sedlm.io import write_atomic


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: OS, Python, torch, CPU count, threads, GPU if any."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.1f}"
        return f"{v:.4g}" if v == 0 or abs(v) >= 1e-3 else f"{v:.3e}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; columns default to the keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    command: str,
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
    results_dir: str | Path = "benchmarks/results",
) -> tuple[Path, Path]:
    """Write ``<results_dir>/<name>.json`` and ``<name>.md``; return both paths."""
    machine = machine_info()
    results_dir = Path(results_dir)
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    payload = {"name": name, "command": command, "machine": machine, "rows": rows}
    write_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    summary = ", ".join(f"{k} {v}" for k, v in machine.items() if v is not None)
    md = f"# {name}\n\nCommand: `{command}`\n\nMachine: {summary}\n\n{markdown_table(rows, columns)}\n"
    write_atomic(md_path, md)
    return json_path, md_path


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically (temp file + rename; the folder is created) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
