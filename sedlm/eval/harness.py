"""Score a trained model's samples next to real held-out text, the same way for every family.

Every evaluation returns two rows: the model's and the ``data`` row (the same metrics on real
held-out text of the same length), so a number is never read without its reference.
Sample sets are of equal length across rows (``equal_length``): only samples and references that reach
``eval_tokens`` model tokens (padding and special tokens removed) are scored, each cut to exactly that
many; each row reports how many fell short (``n_short``) and ``mean_sample_tokens`` before the cut, so
a family that writes shorter text is seen, not hidden, and per-sample entropy (which grows with length)
is compared at one length. Entropy is the mean per-sample unigram entropy over those model tokens,
with bootstrap CIs.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.errors import SedlmError
from sedlm.eval.metrics import text_metrics, vocabulary
from sedlm.pretrained import PretrainedLM
from sedlm.sampling.blocks import per_block_steps
from sedlm.train.validation import family_rows, validation_batches, validation_loss


def heldout_ids(data: PreparedData, n: int, offset: int = 0, limit: int | None = None) -> list[list[int]]:
    """Content ids of ``n`` validation rows starting at row ``offset``, cut to ``limit`` tokens. Never
    training text: too small a validation split is an error naming the fix."""
    have = 0 if data.val is None else len(data.val)
    if have < offset + n:
        raise SedlmError(
            f"the validation split holds {have} rows of data.seq_len tokens but {offset + n} are needed "
            "as real-text references; raise data.val_fraction or lower --n"
        )
    return content_ids(data.tokenizer, data.val.rows[offset : offset + n], limit)


def heldout_texts(data: PreparedData, n: int, offset: int = 0, limit: int | None = None) -> list[str]:
    """``n`` decoded validation rows (no padding), starting at row ``offset`` (see ``heldout_ids``)."""
    return [data.tokenizer.decode(r) for r in heldout_ids(data, n, offset, limit)]


def equal_length(ids: list[list[int]], k: int) -> tuple[list[list[int]], int]:
    """The sequences that reach ``k`` tokens, each cut to exactly ``k``, and how many fell short."""
    kept = [r[:k] for r in ids if len(r) >= k]
    return kept, len(ids) - len(kept)


def default_eval_tokens(seq_len: int) -> int:
    """Length every sample is scored at: 80% of a row, below what random padding leaves a diffusion
    sample on average (10%), so that most samples of every family reach it."""
    return max(1, int(0.8 * seq_len))


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
    """Generate ``n`` texts in batches; return them, network evaluations per text (NFE) and seconds per text.
    A ``prompt`` is laid out on every sample's canvas (and is part of each text)."""
    layout = model.make_layout(prompt=kw.pop("prompt", None), seq_len=kw.get("seq_len"))
    ids, nfe, sec = sample_content(model, n, batch_size, layout=layout, **kw)
    return [model.tokenizer.decode(r) for r in ids], nfe, sec


def content_ids(tokenizer: Any, rows: torch.Tensor | list[list[int]], limit: int | None = None) -> list[list[int]]:
    """Each row's model tokens with padding and special tokens removed, cut to ``limit`` tokens."""
    special = tokenizer.special_ids
    out = [[int(i) for i in row if int(i) not in special] for row in (rows.tolist() if torch.is_tensor(rows) else rows)]
    return [r[:limit] for r in out] if limit else out


def sample_content(
    model: PretrainedLM, n: int, batch_size: int = 32, **kw: Any
) -> tuple[list[list[int]], float, float]:
    """Generate ``n`` unconditional samples in batches; return their content ids (no padding or
    special tokens), network evaluations per sample (NFE) and seconds per sample."""
    counter, ids = CallCounter(model.model), []
    start = time.perf_counter()
    try:
        for i in range(0, n, batch_size):
            kw_i = {**kw, "seed": kw.get("seed", 0) + i}
            ids += content_ids(
                model.tokenizer,
                model.generate_ids(n=min(batch_size, n - i), **{k: v for k, v in kw_i.items() if v is not None}),
            )
    finally:
        counter.close()
    return ids, counter.rows / max(n, 1), (time.perf_counter() - start) / n


def full_rows(model: PretrainedLM, kw: dict[str, Any]) -> dict[str, Any]:
    """``kw`` with ``stop_at_eos`` off unless asked, for a family that has the option (block models): measured
    rows are written to their end, as windows of the text stream like the data rows, and rows that end early
    neither shorten a sample set nor make a timing look faster."""
    if model.family.option("stop_at_eos") is not None:
        return {"stop_at_eos": False, **kw}
    return kw


def generation_seconds(model: PretrainedLM, batch: int, seq_len: int, **kw: Any) -> float:
    """Wall seconds for one ``generate_ids`` call of ``batch`` rows of ``seq_len`` tokens (whole rows:
    ``full_rows``), after a warm-up call that pays the one-off costs."""
    kw = full_rows(model, kw)
    model.generate_ids(n=batch, seq_len=seq_len, seed=1, **kw)
    start = time.perf_counter()
    model.generate_ids(n=batch, seq_len=seq_len, seed=0, **kw)
    return time.perf_counter() - start


def heldout_loss(model: PretrainedLM, data: PreparedData) -> tuple[float, str]:
    """The family's validation loss and its kind, on exactly the batches its trainer validates on
    (same rows, padding, noise and EMA weights), so the two numbers agree."""
    if data.val is None:
        raise SedlmError("the data has no validation split to score on; set data.val_fraction > 0")
    batches = validation_batches(family_rows(data.val, model.family), model.config)
    return validation_loss(
        model.model, batches, model.config, model.tokenizer, model.device
    ), model.family.val_loss_kind


def evaluate_model(
    model: PretrainedLM,
    data: PreparedData | None = None,
    *,
    judge: Any = None,
    n: int = 256,
    steps: int | None = None,
    seed: int = 0,
    label: str | None = None,
    eval_tokens: int | None = None,
    min_mauve: int | None = None,
    with_data_row: bool = True,
    keep_short: bool = False,
    **gen_options: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for ``model`` and for real held-out text (judge NLL and per-sample token entropy with
    bootstrap CIs, word entropy, diversity, MAUVE when n is large enough, validation loss and its
    kind), and the samples themselves. Samples and references are cut to ``eval_tokens`` model tokens
    (default ``default_eval_tokens``); ``with_data_row=False`` leaves the real-text row out. When fewer than
    two samples reach that length it is an error, or with ``keep_short`` a row without text metrics that
    still reports ``n_short`` (a comparison table keeps the system rather than stopping).
    ``gen_options`` (sampler, guidance, temperature, top_p, ...) go to the model's generate."""
    from sedlm.eval.metrics import MIN_MAUVE_TEXTS

    if n < 1:
        raise SedlmError(f"--n must be at least 1 (got {n})")
    cfg = model.config
    data = data or prepare_data(cfg.data, tokenizer=model.tokenizer)
    K = eval_tokens or default_eval_tokens(cfg.data.seq_len)
    tok = model.tokenizer
    vocab = vocabulary(data.train_docs)
    gen_kw: dict[str, Any] = {"seed": seed, **{k: v for k, v in gen_options.items() if v is not None}}
    if steps:  # denoising steps per row: a block model spends them over its blocks
        gen_kw["steps"] = per_block_steps(steps, cfg.diffusion.block_size, cfg.data.seq_len)
    gen_kw = full_rows(model, gen_kw)
    full, nfe, sec = sample_content(model, n, **gen_kw)
    ids, n_short = equal_length(full, K)
    if len(ids) < 2 and not keep_short:
        raise SedlmError(
            f"only {len(ids)} of {n} samples reach {K} tokens (the length every row is scored at); "
            "lower --eval-tokens or raise data.seq_len"
        )
    samples = [tok.decode(r) for r in ids] if len(ids) >= 2 else []
    ref_ids, _ = equal_length(heldout_ids(data, n), K)
    data_full = heldout_ids(data, n, offset=n)  # a second real set: the data row, and MAUVE of data against data
    data_ids, data_short = equal_length(data_full, K)
    refs = [tok.decode(r) for r in ref_ids]
    val, val_kind = heldout_loss(model, data)
    mk = {
        "judge": judge,
        "vocab": vocab,
        "seed": seed,
        "min_mauve": MIN_MAUVE_TEXTS if min_mauve is None else min_mauve,
    }

    row = {
        "method": label or cfg.family,
        "nfe": round(nfe, 1),
        "seconds_per_sample": round(sec, 4),
        **(text_metrics(samples, refs, sample_ids=ids, **mk) if samples else {"n_samples": 0}),
        "eval_tokens": K,
        "n_short": n_short,
        "mean_sample_tokens": round(sum(map(len, full)) / max(1, len(full)), 2),
        "val_loss": round(val, 4),
        "val_loss_kind": val_kind,
    }
    row.update({k: v for k, v in model.sampling_summary(gen_kw).items() if k not in row})
    if not with_data_row:
        return [row], samples
    data_row = {
        "method": "data",
        **text_metrics([tok.decode(r) for r in data_ids], refs, sample_ids=data_ids, **mk),
        "eval_tokens": K,
        "n_short": data_short,
        "mean_sample_tokens": round(sum(map(len, data_full)) / max(1, len(data_full)), 2),
    }
    return [row, data_row], samples


def scored(row: dict[str, Any]) -> str:
    """One line for the log: a row's judge NLL and entropy with their CIs, or why it has none."""
    if row.get("judge_nll") is None:
        if row.get("n_blank"):
            return f"no score: the judge finds all {row['n_blank']} samples blank (whitespace only)"
        return f"no score: {row['n_short']} samples fall short of {row['eval_tokens']} tokens"
    return (
        f"judge NLL {row['judge_nll']:.3f} {row.get('judge_nll_ci95')}, "
        f"entropy {row['unigram_entropy']:.2f} {row.get('unigram_entropy_ci95')} bits"
        + (f" ({row['n_short']} samples short)" if row.get("n_short") else "")
    )
