"""Training-seed spread of a comparison: each system's rows over its seeds summarised, so that a difference
between systems can be read against the noise of training as well as that of sampling."""

from __future__ import annotations

import statistics
from typing import Any

from sedlm.errors import SedlmError

SEED_COLUMNS = [
    "method",
    "seeds",
    "judge_nll_mean",
    "judge_nll_seed_sd",
    "judge_nll_seed_range",
    "judge_nll_sample_ci_halfwidth",
    "unigram_entropy_mean",
    "unigram_entropy_seed_sd",
    "unigram_entropy_seed_range",
]


def check_seeds(seeds: tuple[int, ...]) -> None:
    """Training seeds must be distinct and non-negative (a repeated seed would count one run twice)."""
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SedlmError(f"--seeds takes distinct non-negative training seeds, e.g. 0,1,2 (got {seeds})")


def seed_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system, over its training seeds: the mean of judge NLL and entropy, their spread across seeds
    (standard deviation and range) and, beside it, the mean half-width of one run's sample CI, so a
    difference between systems can be read against both kinds of noise."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "data"):
        runs = [r for r in rows if r["method"] == method]
        row: dict[str, Any] = {"method": method, "seeds": len(runs)}
        for key in ("judge_nll", "unigram_entropy"):
            vals = [r[key] for r in runs if r.get(key) is not None]
            if not vals:
                continue
            row[f"{key}_mean"] = round(statistics.fmean(vals), 4)
            row[f"{key}_seed_sd"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else None
            row[f"{key}_seed_range"] = [round(min(vals), 4), round(max(vals), 4)]
        cis = [r["judge_nll_ci95"] for r in runs if r.get("judge_nll_ci95")]
        row["judge_nll_sample_ci_halfwidth"] = (
            round(statistics.fmean((hi - lo) / 2 for lo, hi in cis), 4) if cis else None
        )
        out.append(row)
    return out
