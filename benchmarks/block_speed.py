"""Block diffusion sampling cost: the KV cache against recomputing the finished blocks, and against AR.

The tiny config's networks (rows of 64 tokens) with block size 4: SED (ddim, ``--steps`` per block) and the
bd3lm recipe (MDLM's ancestral steps per block) write whole rows block by block, with the KV cache of the
finished blocks (``use_cache``) and without it (every call runs the finished blocks beside the noisy one
under the training mask). AR decodes with its KV cache. Timing does not depend on the weights, so the
networks are freshly initialised and end-of-text stopping is off: every row is written to its full length.

Columns: ms per generated token at batch 1 and tokens/s at batch 32 (median of ``--repeats`` runs), network
calls per row, and the cache's speed-up (uncached time / cached time). This is cost at equal steps, not at
equal quality: the steps a trained block model needs for a given quality are measured by the block frontier.

Rerun (one thread; 3 repeats of each point at 8 steps per block):
    python benchmarks/block_speed.py
    python benchmarks/block_speed.py --name block-speed-wide model.d_model=256 model.n_layers=4 model.n_heads=4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_main  # noqa: E402

COLUMNS = [
    "system",
    "d_model",
    "n_layers",
    "block_size",
    "steps_per_block",
    "cache",
    "calls_per_row",
    "ms_per_token_b1",
    "tokens_per_s_b32",
]


def _models(block_size: int, config: str = "tiny", overrides: list[str] | None = None) -> dict[str, Any]:
    from types import SimpleNamespace

    import torch

    from sedlm.config import resolve_config_path
    from sedlm.families import get_family, load_config
    from sedlm.families.recipes import apply_recipe
    from sedlm.model.embedding import random_table

    out = {}
    for name, family, extra in (("sed", "sed", []), ("bd3lm", "mdlm", []), ("ar", "ar", [])):
        cfg = load_config(
            resolve_config_path(config), [f"diffusion.block_size={block_size}", *extra, *(overrides or [])]
        )
        cfg.family = family
        if name == "bd3lm":
            cfg = apply_recipe(cfg, "bd3lm")
            cfg.diffusion.block_size = block_size
        cfg.model.vocab_size = cfg.data.vocab_size
        torch.manual_seed(0)
        table = random_table(cfg.model.vocab_size, cfg.model.d_embed, torch.Generator().manual_seed(0))
        tok = SimpleNamespace(pad_id=0, eos_id=1, mask_id=cfg.model.vocab_size - 1)  # ids only matter for mdlm
        out[name] = (cfg, get_family(family).build(cfg, tok, table).eval())
    return out


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block-size", type=int, default=4, help="tokens per block (default: 4)")
    ap.add_argument("--steps", type=int, default=8, help="sampler steps per block (default: 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per point (default: 3)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    ap.add_argument("--name", default="block-speed", help="results name (default: block-speed)")
    ap.add_argument("--config", default="tiny", help="size config of the three networks (default: tiny)")
    ap.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. model.d_model=256"
    )
    args = ap.parse_args()
    import torch

    from sedlm.families.ar import ar_generate
    from sedlm.families.mdlm import mdlm_sample
    from sedlm.sampling.blocks import sample_blocks
    from sedlm.sampling.generate import sample_ids

    torch.set_num_threads(args.threads)
    models = _models(args.block_size, args.config, args.overrides)
    L, B, K = models["sed"][0].data.seq_len, args.block_size, args.steps
    rows: list[dict[str, Any]] = []

    def sed_block(view, n, length, seed, part, cb):
        return sample_ids(view, n=n, seq_len=length, steps=K, sampler="ddim", seed=seed, layout=part, callback=cb)

    def mdlm_block(view, n, length, seed, part, cb):
        g = torch.Generator().manual_seed(seed)
        return mdlm_sample(view, n, length, K, generator=g, layout=part, callback=cb)[0]

    calls_per_row = {"sed": (L // B) * (2 * K + 1), "bd3lm": (L // B) * (K + 1)}  # SED: two self-cond passes
    for name, one_block in (("sed", sed_block), ("bd3lm", mdlm_block)):
        model = models[name][1]
        for cache in (True, False):
            point = {}
            for n in (1, 32):
                run = lambda n=n: sample_blocks(  # noqa: E731
                    model, one_block, n=n, seq_len=L, block_size=B, seed=0, use_cache=cache
                )
                point[n] = _time(run, args.repeats)
            rows.append(
                {
                    "system": name,
                    "d_model": models[name][0].model.d_model,
                    "n_layers": models[name][0].model.n_layers,
                    "block_size": B,
                    "steps_per_block": K,
                    "cache": cache,
                    "calls_per_row": calls_per_row[name],
                    "ms_per_token_b1": round(1000 * point[1] / L, 3),
                    "tokens_per_s_b32": round(32 * L / point[32], 1),
                }
            )
            print(rows[-1], flush=True)
    ar = models["ar"][1]
    point = {}
    for n in (1, 32):
        start = torch.zeros(n, 1, dtype=torch.long)
        point[n] = _time(lambda start=start: ar_generate(ar, start, L, use_cache=True), args.repeats)
    rows.append(
        {
            "system": "ar",
            "d_model": models["ar"][0].model.d_model,
            "n_layers": models["ar"][0].model.n_layers,
            "block_size": 1,
            "steps_per_block": 1,
            "cache": True,
            "calls_per_row": L,
            "ms_per_token_b1": round(1000 * point[1] / L, 3),
            "tokens_per_s_b32": round(32 * L / point[32], 1),
        }
    )
    for name in ("sed", "bd3lm"):
        on, off = (next(r for r in rows if r["system"] == name and r["cache"] is c) for c in (True, False))
        on["cache_speedup_b1"] = round(off["ms_per_token_b1"] / on["ms_per_token_b1"], 2)
        on["cache_speedup_b32"] = round(on["tokens_per_s_b32"] / off["tokens_per_s_b32"], 2)
    publish(args.name, "block_speed.py", rows, [*COLUMNS, "cache_speedup_b1", "cache_speedup_b32"])
    return 0


if __name__ == "__main__":
    run_main(main)
