"""Where a block model's end-of-text tokens go: the denoiser's end-of-text mass against what its sampler writes.

For the runs of ``block_doc_lengths.py`` (SED trained on the plays cut into speeches, documents packed with
end-of-text), each table row gives, per row of L tokens (position 0 excluded):

- ``eos_in_rows``: the end-of-text tokens in the rows of that context: held-out data rows, or ``--n`` rows the
  run's sampler writes after a document start, exactly as ``block_doc_lengths.py`` samples them;
- ``mass_t=T``: the denoiser's end-of-text probability summed over the positions, with every position noised
  at time T of the run's schedule and both self-conditioning passes (the second fed the first's estimate, as
  when sampling). A block model reads the rows' own tokens as the clean blocks before each block.

A denoiser fitted to the data predicts, at any T, the data's count on data rows (its token marginals match
the data's), so ``mass`` against ``eos_in_rows`` on data rows checks training, and on the run's own samples
it shows how much of the end-of-text mass the model gives at the start of a block (T = 1) the sampler then
writes.

Rerun (64 rows written and 64 read per run, four noise times; the runs come from ``block_doc_lengths.py``):
    OMP_NUM_THREADS=1 python benchmarks/block_eos.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.block_doc_lengths import document_rows, speeches  # noqa: E402
from benchmarks.common import publish, run_folders, run_main  # noqa: E402


def eos_mass(model: Any, rows: Any, times: list[float], seed: int = 0) -> list[float]:
    """Mean over ``rows`` (B, L) of the summed end-of-text probability at positions 1.., one value per time."""
    import torch

    from sedlm.diffusion.likelihood import sampling_logits
    from sedlm.diffusion.schedules import get_schedule
    from sedlm.errors import SedlmError

    net, cfg = model.model, model.config
    if not hasattr(net, "block_size"):
        raise SedlmError("block_eos.py reads SED runs (an embedding-diffusion denoiser); pass SED runs to --runs")
    schedule = get_schedule(cfg.diffusion.schedule, cfg.diffusion.logsnr_shift)
    blocks = {"clean": rows} if 0 < net.block_size < rows.shape[1] else {}
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        x = net.embed(rows)  # (B, L, D)
        zero, unmasked = torch.zeros_like(x), torch.zeros(rows.shape)
        for t0 in times:
            t = torch.full((len(rows),), t0)
            ab = schedule(t)[:, None, None]
            z = ab.sqrt() * x + (1 - ab).sqrt() * torch.randn(x.shape, generator=gen)
            logits = sampling_logits(net, z, t, True, zero, unmasked, blocks)  # (B, L, V)
            out.append(round(logits.softmax(-1)[:, 1:, model.tokenizer.eos_id].sum(1).mean().item(), 3))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--runs",
        default="runs/doclen/sed,runs/doclen/sed_diffusion.block_size-4",
        help="comma-separated SED run folders trained by block_doc_lengths.py",
    )
    ap.add_argument("--n", type=int, default=64, help="rows written and data rows read per run (default: 64)")
    ap.add_argument("--steps", type=int, default=200, help="denoising steps per row, over its blocks (default: 200)")
    ap.add_argument(
        "--times", default="0.5,0.9,0.99,1", help="noise times of the mass columns (default: 0.5,0.9,0.99,1)"
    )
    ap.add_argument("--sampler", default=None, help="the sampler that writes the rows (default: each model's own)")
    ap.add_argument("--name", default="block-eos", help="results name (default: block-eos)")
    args = ap.parse_args()

    from sedlm.api import load_pretrained
    from sedlm.config import resolve_config_path
    from sedlm.data.dataset import prepare_data
    from sedlm.errors import SedlmError
    from sedlm.families import load_config

    times = [float(t) for t in args.times.split(",")]
    runs = run_folders(args.runs)
    corpus = runs[0].parent / "speeches.txt"
    if not corpus.is_file():
        corpus.write_text("\n\n".join(speeches()) + "\n")
    data = prepare_data(load_config(resolve_config_path("tiny"), [f"data.source={corpus}"]).data)
    real = data.val.rows[: args.n].long()
    columns = ["method", "block_size", "sampler", "context", "eos_in_rows"] + [f"mass_t={t:g}" for t in times]
    rows: list[dict[str, Any]] = []
    for run in runs:
        model = load_pretrained(run)
        probe = data.val_docs[0]
        if model.tokenizer.encode(probe) != data.tokenizer.encode(probe):
            raise SedlmError(f"{run} was not trained on {corpus}; train it with block_doc_lengths.py")
        own = document_rows(model, args.n, args.steps, seed=0, sampler=args.sampler)
        for context, ids in (("data rows", real), ("own samples", own)):
            row = {
                "method": run.name,
                "block_size": model.config.diffusion.block_size,
                "sampler": args.sampler or model.config.sample.sampler,
                "context": context,
                "eos_in_rows": round((ids[:, 1:] == model.tokenizer.eos_id).float().sum(1).mean().item(), 3),
            }
            row.update(zip(columns[5:], eos_mass(model, ids, times)))
            rows.append(row)
        publish(args.name, "block_eos.py", rows, columns)
    return 0


if __name__ == "__main__":
    run_main(main)
