"""The comparison's plots: the judge-NLL/entropy frontier of each system and quality against sampling speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sedlm.eval.results import save_figure


def plot_frontier(
    rows: list[dict[str, Any]],
    data_row: dict[str, Any],
    path: Path,
    title: str = "quality/diversity frontier (95% bootstrap CIs)",
) -> None:
    """Judge NLL against per-sample entropy, one line per family through its temperature sweep, with
    95% CIs as error bars; the real-text row is a point. Lower-right is better; a family is compared
    at equal entropy, never by NLL alone. A point sampled with top-p < 1 is labelled with it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    rows = [r for r in rows if r.get("judge_nll") is not None]  # a system whose samples fell short has no point
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["unigram_entropy"])
        xs, ys = [r["unigram_entropy"] for r in pts], [r["judge_nll"] for r in pts]
        # clipped at 0: with a handful of samples a percentile interval can miss its own point estimate
        xerr = [
            [max(0.0, x - r["unigram_entropy_ci95"][0]) for x, r in zip(xs, pts)],
            [max(0.0, r["unigram_entropy_ci95"][1] - x) for x, r in zip(xs, pts)],
        ]
        yerr = [
            [max(0.0, y - r["judge_nll_ci95"][0]) for y, r in zip(ys, pts)],
            [max(0.0, r["judge_nll_ci95"][1] - y) for y, r in zip(ys, pts)],
        ]
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, marker="o", capsize=2, label=f"{method} ({pts[0]['knob']} sweep)")
        for x, y, r in zip(xs, ys, pts):
            top_p = r.get("top_p", 1.0) or 1.0
            ax.annotate(
                f"{r['value']:g}" + (f", top-p {top_p:g}" if top_p < 1 else ""),
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    ax.scatter(
        [data_row["unigram_entropy"]], [data_row["judge_nll"]], marker="*", s=150, color="black", label="real text"
    )
    ax.set_xlabel("unigram entropy per sample (bits, model tokens)")
    ax.set_ylabel("judge NLL (nats/token, lower is better)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot(rows: list[dict[str, Any]], path: Path, seq_len: int) -> None:
    """Judge NLL against sampling throughput at batch 32 (rows of ``seq_len`` tokens); data is a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r["method"] == "data":
            ax.axhline(
                r["judge_nll"],
                color="grey",
                ls="--",
                label=f"real text (NLL {r['judge_nll']:.2f}, H={r['unigram_entropy']:.2f} bits)",
            )
        elif (
            r.get("sample_tokens_per_s_b32") is not None and r.get("judge_nll") is not None
        ):  # measured on a system's first training seed
            ax.scatter(r["sample_tokens_per_s_b32"], r["judge_nll"], s=60)
            ax.annotate(
                f"{r['method']} (H={r['unigram_entropy']:.2f} bits)",
                (r["sample_tokens_per_s_b32"], r["judge_nll"]),
                textcoords="offset points",
                xytext=(6, 4),
            )
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)  # room for the labels
    ax.set_xlabel(f"sampling tokens/s (batch 32, length {seq_len})")
    ax.set_ylabel("judge NLL (nats/token, lower is better)")
    ax.set_title("quality vs sampling speed")
    ax.legend(loc="best")
    fig.tight_layout()
    save_figure(fig, path)
