"""Paper directions at several training seeds: does a variant differ from its base by more than the training-seed
spread, at equal entropy, and in the direction its paper reports?

Each pair names two systems already measured with ``sedlm bench compare --seeds ...`` (their
``<name>-seeds-<corpus>.json`` seed summaries and the first seed's ``<name>-frontier-<corpus>.json``). For a pair:

    gap              variant's seed-mean judge NLL minus the base's, moved to the variant's entropy along the base's
                     frontier: gap = nll_v - (nll_b + slope * (H_v - H_b)), slope the base frontier's nats per bit
                     around H_v (piecewise linear through its points scored on at least 64 samples; the end
                     segment beyond them, flagged); a base without a frontier (a deterministic sampler has no
                     temperature to sweep) is compared as it is when the entropies agree within 0.1 bits
    spread           twice the larger of the two training-seed standard deviations of judge NLL
    verdict          |gap| <= spread: not a finding; otherwise reproduced when the sign is the paper's, refuted if not

A lower judge NLL at equal entropy is better. Writes ``<name>.{json,md}`` (default ``directions``).

Rerun (the systems' results files must exist; a pair whose files are missing gets a row that says which):
    python benchmarks/directions.py
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import RESULTS_DIR, publish, run_main  # noqa: E402

COLUMNS = [
    "direction",
    "variant",
    "variant_seeds",
    "variant_nll",
    "variant_nll_seed_sd",
    "variant_entropy",
    "base",
    "base_seeds",
    "base_nll",
    "base_nll_seed_sd",
    "base_entropy",
    "base_slope_nats_per_bit",
    "extrapolated",
    "gap_at_equal_entropy",
    "seed_spread",
    "verdict",
]


MIN_POINT_SAMPLES = 64  # a frontier point scored on fewer samples (most fell short of the length) is too noisy
EQUAL_ENTROPY_BITS = 0.1  # without a base frontier, entropies this close compare as they are


@dataclass(frozen=True)
class System:
    results: str  # results name: <results>-seeds-<corpus> and <results>-frontier-<corpus>
    method: str  # the row's method in those files


@dataclass(frozen=True)
class Pair:
    direction: str  # what the paper reports
    variant: System
    base: System
    variant_better: bool  # the paper's sign: the variant is the better one


SED, MDLM = System("seeds-sed", "sed"), System("seeds-mdlm", "mdlm")
PAIRS = [
    Pair(
        "self-conditioning helps (Chen et al. 2022; SED)",
        System("directions-selfcond-off", "sed:diffusion.self_cond=off"),
        SED,
        False,
    ),
    Pair(
        "flow matching beats the VP process (LangFlow, ELF)",
        System("directions-flow-matching", "flow-matching"),
        SED,
        True,
    ),
    Pair(
        "the spindle schedule beats MDLM's (DiffusionBERT)",
        System("directions-diffusionbert", "diffusionbert"),
        MDLM,
        True,
    ),
    Pair(
        # CDCD's own sigma range [1, 300] does not train in 600 steps (benchmarks/README.md), so the warp is
        # checked on the cosine range, where both arms learn
        "time warping helps (CDCD)",
        System(
            "directions-cdcd-cosine-nowarp",
            "cdcd:diffusion.schedule=cosine:diffusion.time_warp=false:sample.time_grid=uniform",
        ),
        System("directions-cdcd-cosine", "cdcd:diffusion.schedule=cosine"),
        False,
    ),
    Pair(
        "two unrolled steps beat one (SUNDAE)",
        System("directions-sundae-unroll1", "sundae:sundae.unroll_steps=1"),
        System("directions-sundae", "sundae"),
        False,
    ),
    Pair(
        "self-conditioning helps (Analog Bits)",
        System("directions-analog-bits-sc-off", "analog-bits:diffusion.self_cond=off"),
        System("directions-analog-bits", "analog-bits"),
        False,
    ),
    Pair(
        "the adaptive per-position schedule helps (SeqDiffuSeq)",
        System("directions-seqdiffuseq-nowarp", "seqdiffuseq:diffusion.position_warp=false"),
        System("directions-seqdiffuseq", "seqdiffuseq"),
        False,
    ),
]


def frontier_slope(points: list[tuple[float, float]], entropy: float) -> tuple[float, bool]:
    """(nats per bit, extrapolated) of the piecewise-linear frontier through ``points`` (entropy, NLL) at
    ``entropy``: the slope of the segment holding it, or of the end segment nearest to it (extrapolated)."""
    pts = sorted(points)
    if len(pts) < 2:
        raise ValueError("a frontier needs at least two points with judge NLL and entropy")
    inside = pts[0][0] <= entropy <= pts[-1][0]
    i = next((k for k in range(1, len(pts)) if entropy <= pts[k][0]), len(pts) - 1)
    (h0, n0), (h1, n1) = pts[i - 1], pts[i]
    return (n1 - n0) / (h1 - h0), not inside


def compare_pair(
    variant: dict[str, Any], base: dict[str, Any], base_frontier: list[tuple[float, float]], variant_better: bool
) -> dict[str, Any]:
    """The gap at equal entropy, the seed spread and the verdict of one pair (module docstring)."""
    nv, hv, sv = variant["judge_nll_mean"], variant["unigram_entropy_mean"], variant["judge_nll_seed_sd"] or 0.0
    nb, hb, sb = base["judge_nll_mean"], base["unigram_entropy_mean"], base["judge_nll_seed_sd"] or 0.0
    if len(base_frontier) >= 2:
        slope, extrapolated = frontier_slope(base_frontier, hv)
    else:  # a deterministic sampler has no temperature to sweep: compare as they are when the entropies agree
        slope, extrapolated = 0.0, abs(hv - hb) > EQUAL_ENTROPY_BITS
    gap = nv - (nb + slope * (hv - hb))
    spread = 2 * max(sv, sb)
    if len(base_frontier) < 2 and extrapolated:
        verdict = f"no base frontier, and the entropies differ by more than {EQUAL_ENTROPY_BITS} bits"
    elif variant["seeds"] < 2 or base["seeds"] < 2:
        verdict = "one seed: no spread to judge by"
    elif abs(gap) <= spread:
        verdict = "not a finding"
    else:
        verdict = "reproduced" if (gap < 0) == variant_better else "refuted"
    return {
        "variant_seeds": variant["seeds"],
        "variant_nll": round(nv, 3),
        "variant_nll_seed_sd": round(sv, 3),
        "variant_entropy": round(hv, 2),
        "base_seeds": base["seeds"],
        "base_nll": round(nb, 3),
        "base_nll_seed_sd": round(sb, 3),
        "base_entropy": round(hb, 2),
        "base_slope_nats_per_bit": round(slope, 3),
        "extrapolated": extrapolated,
        "gap_at_equal_entropy": round(gap, 3),
        "seed_spread": round(spread, 3),
        "verdict": verdict,
    }


def _read_rows(path: Path) -> list[dict[str, Any]] | None:
    return json.loads(path.read_text())["rows"] if path.is_file() else None


def pair_row(pair: Pair, results_dir: Path, corpus: str) -> dict[str, Any]:
    """One table row: the pair's comparison, or which results files it still lacks."""
    row: dict[str, Any] = {"direction": pair.direction, "variant": pair.variant.method, "base": pair.base.method}
    files = {
        "variant": results_dir / f"{pair.variant.results}-seeds-{corpus}.json",
        "base": results_dir / f"{pair.base.results}-seeds-{corpus}.json",
        "frontier": results_dir / f"{pair.base.results}-frontier-{corpus}.json",
    }
    rows = {k: _read_rows(p) for k, p in files.items()}
    if missing := [str(p.name) for k, p in files.items() if rows[k] is None]:
        return {**row, "verdict": "not measured: " + ", ".join(missing)}
    variant = next((r for r in rows["variant"] if r["method"] == pair.variant.method), None)
    base = next((r for r in rows["base"] if r["method"] == pair.base.method), None)
    frontier = [
        (r["unigram_entropy"], r["judge_nll"])
        for r in rows["frontier"]
        if r["method"] == pair.base.method and r.get("judge_nll") is not None and r["n_samples"] >= MIN_POINT_SAMPLES
    ]
    if variant is None or base is None:
        return {**row, "verdict": "not measured: no seed summary row for the system"}
    return {**row, **compare_pair(variant, base, frontier, pair.variant_better)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="shakespeare", help="the results files' corpus name (default: shakespeare)")
    ap.add_argument("--results-dir", default=str(RESULTS_DIR), help="where the systems' results files are")
    ap.add_argument("--name", default="directions", help="results name (default: directions)")
    args = ap.parse_args()
    rows = [pair_row(p, Path(args.results_dir), args.corpus) for p in PAIRS]
    publish(args.name, "directions.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
