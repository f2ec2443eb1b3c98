"""Score a trained model's samples next to real held-out text, the same way for every family.

Every evaluation returns two rows: the model's and the ``data`` row (the same metrics on real
held-out text of the same count and length), so a number is never read without its reference.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.eval.metrics import text_metrics, vocabulary
from sedlm.methods import get_method
from sedlm.pretrained import PretrainedLM
from sedlm.train.trainer import validation_loss


def heldout_texts(data: PreparedData, n: int, offset: int = 0) -> list[str]:
    """``n`` decoded validation rows (no padding), starting at row ``offset``."""
    rows = data.val if data.val is not None and len(data.val) >= offset + n else data.train
    return data.tokenizer.decode_batch(rows.rows[offset : offset + n])


class CallCounter:
    """Counts forward calls of a module and the rows they processed. Rows per sample is the honest
    number of function evaluations (NFE): a guided call runs every sample twice (conditional and
    unconditional in one batch) and counts twice."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.rows = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: tuple, *_: Any) -> None:
        self.calls += 1
        self.rows += inputs[0].shape[0] if inputs and isinstance(inputs[0], torch.Tensor) else 1

    def close(self) -> None:
        self._handle.remove()


def sample_texts(model: PretrainedLM, n: int, batch_size: int = 32, **kw: Any) -> tuple[list[str], float, float]:
    """Generate ``n`` texts in batches; return them, network evaluations per text (NFE) and seconds per text."""
    counter, texts = CallCounter(model.model), []
    start = time.perf_counter()
    try:
        for i in range(0, n, batch_size):
            kw_i = {**kw, "seed": kw.get("seed", 0) + i}
            texts += model.generate(n=min(batch_size, n - i), **kw_i)
    finally:
        counter.close()
    return texts, counter.rows / max(n, 1), (time.perf_counter() - start) / n


def generation_seconds(model: PretrainedLM, batch: int, seq_len: int, **kw: Any) -> float:
    """Wall seconds for one ``generate_ids`` call of ``batch`` rows of ``seq_len`` tokens, after a
    warm-up call that pays the one-off costs."""
    model.generate_ids(n=batch, seq_len=seq_len, seed=1, **kw)
    start = time.perf_counter()
    model.generate_ids(n=batch, seq_len=seq_len, seed=0, **kw)
    return time.perf_counter() - start


def evaluate_model(
    model: PretrainedLM,
    data: PreparedData | None = None,
    *,
    judge: Any = None,
    n: int = 64,
    steps: int | None = None,
    seed: int = 0,
    label: str | None = None,
    **gen_options: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for ``model`` and for real held-out text (judge NLL, entropy, diversity, MAUVE, validation
    loss), and the samples themselves. ``gen_options`` (sampler, guidance, temperature, top_p)
    go to the model's generate."""
    cfg = model.config
    data = data or prepare_data(cfg.data, tokenizer=model.tokenizer)
    vocab = vocabulary(data.train_docs)
    gen_kw: dict[str, Any] = {"seed": seed, **{k: v for k, v in gen_options.items() if v is not None}}
    if steps:
        gen_kw["steps"] = steps
    samples, nfe, sec = sample_texts(model, n, **gen_kw)
    refs = heldout_texts(data, n)
    refs_b = heldout_texts(data, n, offset=n)  # a second real set: MAUVE of data against data

    val_rows = data.val if data.val is not None else data.train
    batches = val_rows.fixed_batches(cfg.train.batch_size, cfg.train.eval_batches)
    val = validation_loss(model.model, batches, cfg, model.tokenizer, model.device)

    row = {"method": label or cfg.method, "nfe": round(nfe, 1), "seconds_per_sample": round(sec, 4),
           **text_metrics(samples, refs, judge=judge, vocab=vocab),
           "val_loss": round(val, 4), "val_loss_kind": get_method(cfg.method).loss_name}
    if cfg.method == "sed":
        row["sampler"] = gen_kw.get("sampler", cfg.sample.sampler)
        row["guidance"] = gen_kw.get("guidance", cfg.sample.guidance)
    data_row = {"method": "data", **text_metrics(refs_b, refs, judge=judge, vocab=vocab)}
    return [row, data_row], samples
