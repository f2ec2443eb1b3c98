"""Block diffusion sampling cost: the KV cache against recomputing the finished blocks, and against AR.

The tiny config's networks (rows of 64 tokens) with block size 4: SED (ddim, ``--steps`` per block) and the
bd3lm recipe (MDLM's ancestral steps per block) write whole rows block by block, with the KV cache of the
finished blocks (``use_cache``) and without it (every call runs all the finished blocks beside the noisy one
under the training mask). AR decodes with its KV cache. Timing does not depend on the weights, so the
networks are freshly initialised and end-of-text stopping is off: every row is written to its full length.

Columns: ms per generated token at batch 1 and tokens/s at batch 32 (median of ``--repeats`` runs), network
calls per row (counted by a forward hook; a finished block enters the cache in the next block's first call,
so the cache adds no call), speed against AR at batch 1, and the cache's speed-up (uncached time / cached
time). This is cost at equal steps, not at equal quality: the steps a trained block model needs for a given
quality are measured by the block frontier, and a distilled student per block
(``distill-block-sed4``) costs what ddim costs at its 1 or 2 steps. ``--steps`` takes a list, so one run times
the teacher's grid and the student's. On CUDA the networks run under bf16 autocast (``--precision``, as
``sedlm sample`` does there).

Rerun (one thread; 3 repeats of each point at 8 steps per block):
    python benchmarks/block_speed.py
    python benchmarks/block_speed.py --name block-speed-wide model.d_model=256 model.n_layers=4 model.n_heads=4
    python benchmarks/block_speed.py --device cuda --config sed-s --steps 1,2,8 --name gpu-block-speed-sed-s
    python benchmarks/block_speed.py --device cuda --config sed-s --block-size 16 --steps 1,2 \
        --name gpu-block-speed-sed-s-b16
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import median_time, publish, random_network, run_main, setup_device  # noqa: E402
from sedlm.devices import PRECISIONS, generation_autocast  # noqa: E402

COLUMNS = [
    "system",
    "device",
    "precision",
    "d_model",
    "n_layers",
    "seq_len",
    "block_size",
    "steps_per_block",
    "cache",
    "calls_per_row",
    "ms_per_token_b1",
    "tokens_per_s_b32",
]


def _models(block_size: int, config: str, overrides: list[str], device: Any) -> dict[str, Any]:
    """SED, the bd3lm recipe and AR at ``config``'s size with block size ``block_size``, freshly initialised."""
    from sedlm.config import resolve_config_path
    from sedlm.families import load_config
    from sedlm.families.recipes import apply_recipe

    out = {}
    for name, family in (("sed", "sed"), ("bd3lm", "mdlm"), ("ar", "ar")):
        cfg = load_config(resolve_config_path(config), [f"diffusion.block_size={block_size}", *overrides])
        cfg.family = family
        if name == "bd3lm":
            cfg = apply_recipe(cfg, "bd3lm")
            cfg.diffusion.block_size = block_size
        cfg.model.vocab_size = cfg.data.vocab_size
        out[name] = (cfg, random_network(cfg, family).to(device).eval())
    return out


def _count_calls(model: Any, fn: Any) -> int:
    """Network calls made by one ``fn()`` (a forward hook)."""
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block-size", type=int, default=4, help="tokens per block (default: 4)")
    ap.add_argument("--steps", default="8", help="sampler steps per block, comma-separated (default: 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per point (default: 3)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default: cpu)")
    ap.add_argument(
        "--precision", default="auto", choices=list(PRECISIONS), help="network precision (default: auto, bf16 on CUDA)"
    )
    ap.add_argument("--name", default="block-speed", help="results name (default: block-speed)")
    ap.add_argument("--config", default="tiny", help="size config of the three networks (default: tiny)")
    ap.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. model.d_model=256"
    )
    args = ap.parse_args(argv)
    try:
        steps_list = [int(k) for k in args.steps.split(",")]
    except ValueError:
        ap.error(f"--steps takes comma-separated integers, got '{args.steps}'")
    if min(steps_list) < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be >= 1")
    import torch

    from sedlm.families.ar import ar_generate
    from sedlm.families.mdlm import mdlm_sample
    from sedlm.sampling.blocks import sample_blocks
    from sedlm.sampling.generate import sample_ids

    device = setup_device(ap, args.device, args.threads)
    autocast = generation_autocast(device, args.precision)
    precision = "bf16" if isinstance(autocast, torch.autocast) else "fp32"
    models = _models(args.block_size, args.config, args.overrides, device)
    L, B = models["sed"][0].data.seq_len, args.block_size
    rows: list[dict[str, Any]] = []

    def speeds(fn: Callable[[int], Any]) -> dict[str, float]:
        """ms per token writing one row and tokens/s writing 32 (``fn(n)`` writes n rows of L)."""
        with autocast, torch.no_grad():
            b1, b32 = (median_time(lambda n=n: fn(n), device, args.repeats) for n in (1, 32))
        return {"ms_per_token_b1": round(1000 * b1 / L, 3), "tokens_per_s_b32": round(32 * L / b32, 1)}

    def one_block_fn(name: str, K: int) -> Any:
        def sed_block(view, n, length, seed, part, cb):
            return sample_ids(view, n=n, seq_len=length, steps=K, sampler="ddim", seed=seed, layout=part, callback=cb)

        def mdlm_block(view, n, length, seed, part, cb):
            g = torch.Generator(device=device).manual_seed(seed)
            return mdlm_sample(view, n, length, K, generator=g, layout=part, callback=cb)[0]

        return sed_block if name == "sed" else mdlm_block

    def base(name: str) -> dict[str, Any]:
        cfg = models[name][0]
        return {
            "system": name,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": precision,
            "d_model": cfg.model.d_model,
            "n_layers": cfg.model.n_layers,
            "seq_len": L,
        }

    for K in steps_list:
        for name in ("sed", "bd3lm"):
            model, one_block = models[name][1], one_block_fn(name, K)
            for cache in (True, False):

                def run(n: int, model=model, one_block=one_block, cache=cache) -> Any:
                    return sample_blocks(model, one_block, n=n, seq_len=L, block_size=B, seed=0, use_cache=cache)

                with autocast, torch.no_grad():
                    calls = _count_calls(model, lambda: run(1))
                row = {**base(name), "block_size": B, "steps_per_block": K, "cache": cache, "calls_per_row": calls}
                rows.append({**row, **speeds(run)})
                print(rows[-1], flush=True)
    ar = models["ar"][1]
    ar_speeds = speeds(lambda n: ar_generate(ar, torch.zeros(n, 1, dtype=torch.long, device=device), L))
    rows.append({**base("ar"), "block_size": 1, "steps_per_block": 1, "cache": True, "calls_per_row": L, **ar_speeds})
    for r in rows:
        if r["system"] != "ar":
            r["over_ar_speed_b1"] = round(ar_speeds["ms_per_token_b1"] / r["ms_per_token_b1"], 2)
        if r["cache"] and r["system"] != "ar":
            off = next(
                o
                for o in rows
                if (o["system"], o["steps_per_block"], o["cache"]) == (r["system"], r["steps_per_block"], False)
            )
            r["cache_speedup_b1"] = round(off["ms_per_token_b1"] / r["ms_per_token_b1"], 2)
            r["cache_speedup_b32"] = round(r["tokens_per_s_b32"] / off["tokens_per_s_b32"], 2)
    columns = [*COLUMNS, "over_ar_speed_b1", "cache_speedup_b1", "cache_speedup_b32"]
    publish(args.name, "block_speed.py", rows, columns)
    return 0


if __name__ == "__main__":
    run_main(main)
