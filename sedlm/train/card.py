"""Model cards: the ``README.md`` of every checkpoint folder, with Hugging Face model-card metadata (YAML
front matter: library, pipeline, tags, datasets) above a table of what the run is (family, recipe, data,
tokenizer, parameters, steps) and, once ``sedlm eval`` has run, what was measured. Loading ignores it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from sedlm.config import Config, from_dict
from sedlm.data.tokenizer import load_tokenizer
from sedlm.families import FAMILIES, get_family
from sedlm.io import write_atomic

CARD = "README.md"
# The figures of an evaluation a card shows, with their labels (sedlm eval's eval.json rows).
FIGURES = (
    ("judge_nll", "judge NLL (nats/token)"),
    ("judge_nll_ci95", "judge NLL 95% CI"),
    ("unigram_entropy", "unigram entropy (bits)"),
    ("mauve", "MAUVE"),
    ("val_loss", "validation loss"),
    ("val_loss_kind", "validation loss kind"),
    ("n_samples", "samples"),
)


def model_card(
    config: Config, n_params: int, steps: int | None, vocab_size: int, evaluation: dict[str, Any] | None = None
) -> str:
    """The card's text. ``evaluation``: {"model": the model's row of an eval.json, "data": the held-out rows'}."""
    family = get_family(config.family) if config.family in FAMILIES else None
    source = config.data.source
    meta: dict[str, Any] = {
        "library_name": "sedlm",
        "pipeline_tag": "text-generation",
        "tags": ["sedlm", config.family, *([config.recipe] if config.recipe else [])],
    }
    if source.startswith("hf:"):
        meta["datasets"] = [source[3:].split("?")[0].split(":")[0]]
    rows = [
        ("family", f"{config.family} ({family.description})" if family else config.family),
        ("recipe", config.recipe or "none (the family's defaults and the size config)"),
        ("data", f"`{source}` ({config.data.task})"),
        ("tokenizer", f"`{config.data.tokenizer}`, {vocab_size:,} tokens"),
        ("parameters", f"{n_params:,} (model.safetensors, a frozen embedding table included)"),
        ("training steps", f"{steps:,}" if steps is not None else "not recorded"),
        ("sequence length", f"{config.data.seq_len} tokens"),
        ("sampler", f"{config.sample.sampler}, {config.sample.steps} steps"),
    ]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", ""]
    lines += [f"# {config.family} model trained with sedlm", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from sedlm import load_pretrained",
        "",
        'model = load_pretrained("path/to/this/folder")',
        "print(model.generate(n=4))",
        "```",
        "",
        "or `sedlm sample --ckpt path/to/this/folder`. The full config is `config.json`.",
    ]
    if evaluation:
        model_row, data_row = evaluation.get("model", {}), evaluation.get("data", {})
        lines += ["", "## Evaluation (`sedlm eval`)", "", "| | this model | held-out text |", "|---|---|---|"]
        for key, label in FIGURES:
            if model_row.get(key) is not None or data_row.get(key) is not None:
                lines.append(f"| {label} | {_show(model_row.get(key))} | {_show(data_row.get(key))} |")
        lines += [
            "",
            "Judge NLL is the judge LM's negative log-likelihood of the samples (lower reads as more fluent); "
            "read it with the entropy beside it, since repetitive text scores low.",
        ]
    return "\n".join(lines) + "\n"


def _show(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v)


def count_weights(weights: dict[str, Any]) -> int:
    return int(sum(t.numel() for t in weights.values()))


def refresh_card(folder: str | Path, evaluation: dict[str, Any] | None = None) -> None:
    """Rewrite a checkpoint folder's card (atomically) from its files, with an evaluation when given."""
    folder = Path(folder)
    config = from_dict(json.loads((folder / "config.json").read_text()))
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        n_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    state = folder / "training_state" / "state.json"
    steps = json.loads(state.read_text()).get("step") if state.is_file() else None
    vocab = load_tokenizer(folder / "tokenizer.json").vocab_size
    write_atomic(folder / CARD, model_card(config, n_params, steps, vocab, evaluation))
