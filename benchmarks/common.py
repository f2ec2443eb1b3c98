"""Shared helpers for the benchmark scripts: the rerun command and the results files.

Every benchmark writes ``benchmarks/results/<name>.json`` shaped as
``{"name", "command", "machine", "rows"}`` and a Markdown table ``<name>.md`` beside it
(the project's results-file format), through ``sedlm.eval.results``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sedlm.eval.results import markdown_table, write_results

if TYPE_CHECKING:
    import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def command_line(script: str) -> str:
    """The command that reproduces this run, e.g. ``python benchmarks/x.py --steps 5``."""
    return shlex.join(["python", f"benchmarks/{script}", *sys.argv[1:]])


def setup_device(ap: Any, device: str, threads: int | None) -> torch.device:
    """Check the requested device (a parser error if CUDA is missing) and set the thread count."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda was asked for but no CUDA device is available")
    if threads:
        torch.set_num_threads(threads)
    return torch.device(device)


def add_judged_run_options(ap: Any, runs_dir: str, name: str) -> None:
    """Options of a benchmark that trains runs and judges their samples: --n, --judge, --runs-dir, --name."""
    ap.add_argument("--n", type=int, default=256, help="samples per row (default: 256)")
    ap.add_argument("--judge", default="smollm2", help="judge LM (default: smollm2)")
    ap.add_argument("--runs-dir", default=runs_dir, help=f"where the runs are written (default: {runs_dir})")
    ap.add_argument("--name", default=name, help=f"results name (default: {name})")


def run_folders(text: str) -> list[Path]:
    """``--runs A,B,...`` as checkpoint folders; a folder without config.json is a one-line error."""
    from sedlm.errors import SedlmError

    runs = [Path(r) for r in text.split(",") if r]
    if missing := [str(r) for r in runs if not (r / "config.json").is_file()]:
        raise SedlmError(f"not a checkpoint folder: {', '.join(missing)}; pass folders written by sedlm train")
    return runs


def publish(name: str, script: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write the results files and print the table with where it went."""
    json_path, md_path = write_results(name, command_line(script), rows, columns, RESULTS_DIR)
    print(markdown_table(rows, columns))
    print(f"\nwrote {json_path} and {md_path}")


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's main(); a user error (bad config, override, sampler) is one line, no traceback."""
    from sedlm.errors import SedlmError

    try:
        raise SystemExit(main())
    except SedlmError as e:
        raise SystemExit(f"error: {e}") from None
