"""Likelihood of held-out text under any family, in nats per token: exact for AR, a bound for diffusion.

Each family's ``nll_bound`` scores rows of ``data.seq_len`` tokens of plain packed text (documents joined
by <eos>, no random padding), the same rows for every family. The rows are the checkpoint's own
validation split, or, for zero-shot numbers, every document of another source tokenised with the
checkpoint's tokenizer. Rows are independent, so the standard error of the mean is the rows' standard
deviation / sqrt(rows); for bounds it includes the Monte Carlo noise of the estimate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sedlm.data.dataset import PreparedData
from sedlm.errors import SedlmError
from sedlm.pretrained import PretrainedLM

ESTIMATORS = ("bound", "ode")
ODE_KIND = "bound (probability-flow ODE, Euler + Hutchinson)"


def text_rows(
    model: PretrainedLM,
    source: str | None = None,
    rows: int = 256,
    *,
    data: PreparedData | None = None,
    documents: list[str] | None = None,
) -> torch.Tensor:
    """Up to ``rows`` rows (R, L) of plain text: the checkpoint's validation split (of ``data`` when given,
    already prepared with the checkpoint's tokenizer), or ``source``'s documents (a path, ``corpus:NAME`` or
    ``hf:NAME``; ``documents`` when already loaded) tokenised with the checkpoint's tokenizer."""
    from sedlm.data.corpora import load_documents
    from sedlm.data.dataset import prepare_data
    from sedlm.data.packing import pack_rows, tokenize_documents

    L = model.config.data.seq_len
    if source is None:
        if model.config.data.task == "seq2seq":
            raise SedlmError("likelihood is measured on plain text; pass --data with a text source for a seq2seq model")
        val = (data or prepare_data(model.config.data, tokenizer=model.tokenizer)).val
        if val is None:
            raise SedlmError("the checkpoint's data has no validation split; pass --data to score other text")
        out = torch.as_tensor(val.rows[:rows])
    else:
        ids = tokenize_documents(model.tokenizer, documents if documents is not None else load_documents(source))
        if len(ids) < L:
            raise SedlmError(f"'{source}' holds {len(ids)} tokens, fewer than one row of {L}; give more text")
        out = pack_rows(ids, L)[:rows]
    return out.long()


@torch.no_grad()
def likelihood(
    model: PretrainedLM,
    source: str | None = None,
    *,
    rows: int = 256,
    seed: int = 0,
    batch_size: int = 32,
    data: PreparedData | None = None,
    documents: list[str] | None = None,
    estimator: str = "bound",
    ode_steps: int = 128,
) -> dict[str, Any]:
    """Mean -log p per token over ``rows`` rows, its standard error, its kind (exact | bound | objective) and
    the perplexity exp(nll); ``source``, ``data`` and ``documents`` as in ``text_rows``. Every family scores
    the same rows and all of their tokens (AR pays for the first one, read after end-of-document), so the
    figures compare like for like; the rows hold no random padding, which the padding families trained with
    (``trained_pad_fraction``) and so pay for in their bound. ``estimator``: ``bound`` (the family's own:
    exact, variational bound or objective) or ``ode`` (embedding diffusion only: LangFlow's estimate through
    the probability-flow ODE, ``ode_steps`` Euler steps)."""
    if estimator not in ESTIMATORS:
        raise SedlmError(f"unknown likelihood estimator '{estimator}'; valid estimators: {', '.join(ESTIMATORS)}")
    if rows < 2:
        raise SedlmError(f"--rows must be at least 2 for a standard error (got {rows})")
    family = model.family
    if not family.capabilities()["nll_bound"]:
        raise SedlmError(f"family {family.name} has no likelihood or likelihood bound")
    data_rows = text_rows(model, source, rows, data=data, documents=documents)
    g = torch.Generator(device=model.device).manual_seed(seed)
    model.model.eval()

    def score(batch: torch.Tensor) -> torch.Tensor:
        if estimator == "ode":
            return family.ode_nll(model.model, batch, model.config, g, ode_steps)
        return family.nll_bound(model.model, batch, model.config, g, model.tokenizer)

    per_row = torch.cat([score(batch.to(model.device)).double().cpu() for batch in data_rows.split(batch_size)])
    nll, se = per_row.mean().item(), per_row.std().item() / math.sqrt(len(per_row))
    return {
        "nll": nll,
        "nll_se": se,
        "nll_kind": ODE_KIND if estimator == "ode" else family.likelihood_kind(model.config),
        "perplexity": math.exp(nll) if nll < 700 else None,
        "rows": len(per_row),
        "tokens_per_row": int(data_rows.shape[1]),
        # the rows scored carry no random padding for any family; the families that pad trained with this share
        "trained_pad_fraction": model.config.data.pad_fraction if family.pads else 0.0,
        "source": source or f"validation split of {model.config.data.source}",
    }
