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
    from torch import nn

    from sedlm.config import Config

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


class StubTokenizer:
    """What losses and generation read from a tokenizer when the text does not matter (ids only)."""

    pad_id, eos_id, mask_id, bos_id = 0, 1, 2, None


def random_network(cfg: Config, method: str) -> nn.Module:
    """A freshly initialised network of family ``method`` at ``cfg``'s size, over a random embedding table
    (timing does not depend on the weights); the same weights on every call."""
    import torch

    from sedlm.families import get_family
    from sedlm.model.embedding import random_table

    torch.manual_seed(0)
    table = random_table(cfg.model.vocab_size, cfg.model.d_embed, torch.Generator().manual_seed(1))
    return get_family(method).build(cfg, StubTokenizer(), table)


def timed_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of one ``fn()`` call, the device synchronised before and after."""
    import time

    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls after one untimed warm-up call (device synchronised)."""
    import statistics

    timed_call(fn, device)
    return statistics.median(timed_call(fn, device) for _ in range(repeats))


def gpu_size_parser(doc: str) -> Any:
    """The parser of a GPU benchmark over one config's network size: --config, --device, --vocab-size,
    --threads, --name and trailing ``section.key=value`` overrides; the script adds its own options."""
    import argparse

    ap = argparse.ArgumentParser(
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides are section.key=value pairs, as for `sedlm train`.",
    )
    ap.add_argument("--config", default="sed-s", help="bundled config name or YAML path (default: sed-s)")
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"], help="device (default: cuda)")
    ap.add_argument("--vocab-size", type=int, default=32768, help="vocabulary size (default: 32768, the configs')")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--name", help="results name (default: the script's, with the config's name)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. data.seq_len=128")
    return ap


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
