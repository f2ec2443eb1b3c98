"""``mdlm``: the masked (absorbing-state) discrete diffusion baseline (Sahoo et al. 2024;
``sedlm.baselines.mdlm``). Its validation loss is the continuous-time NELBO, a likelihood bound under the
linear schedule. ``diffusion.mask_schedule=spindle`` uses DiffusionBERT's information-dependent schedule
(He et al. 2023), its token information measured on the training rows (``init_from_data``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sedlm.baselines.mdlm import MDLMModel, mdlm_loss, mdlm_sample, spindle_info
from sedlm.config import Config
from sedlm.data.tokenizer import Tokenizer
from sedlm.family import Callback, Family, Loss, Request, SamplingOption

COUNT_TOKENS = 1 << 24  # unigram frequencies are read from at most this many training tokens (evenly spread rows)


def spindle_lambda(cfg: Config) -> float:
    """The spindle's lambda; 0 (the linear schedule) unless ``diffusion.mask_schedule`` is spindle."""
    return cfg.diffusion.spindle_lambda if cfg.diffusion.mask_schedule == "spindle" else 0.0


class MDLMFamily(Family):
    name = "mdlm"
    description = "masked discrete diffusion (MDLM)"
    paper = "Sahoo et al. 2024, Simple and Effective Masked Diffusion Language Models (arXiv 2406.07524)"
    val_loss_kind = "NELBO (nats/token)"
    nll_kind = "bound"
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))
    summary_options = ("temperature",)
    options = (
        SamplingOption("temperature", float, "softmax temperature of revealed tokens (drawn in float64)", "temperature",
                       minimum=1e-6),
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return MDLMModel(cfg.model, tokenizer.mask_id, cfg.diffusion.mask_schedule, cfg.diffusion.spindle_lambda)

    def init_from_data(self, model: nn.Module, cfg: Config, rows: Any, tokenizer: Tokenizer) -> None:
        """Under the spindle schedule, fill ``model.token_info`` from the unigram counts of the training
        rows (``sedlm.baselines.mdlm.spindle_info``: pad, eos and mask keep the linear schedule)."""
        if cfg.diffusion.mask_schedule != "spindle":
            return
        data, V = rows.rows, model.token_info.numel()  # (N, L): a tensor or memory-mapped shard rows
        n = len(data)
        take = max(1, min(n, COUNT_TOKENS // max(1, data.shape[1])))
        idx = torch.linspace(0, n - 1, take).round().long().unique()  # (take,) evenly spread, in order
        counts = torch.zeros(V, dtype=torch.long)
        for chunk in idx.split(4096):  # bounded memory for shard-backed rows
            counts += torch.bincount(torch.as_tensor(data[chunk]).reshape(-1).long(), minlength=V)[:V]
        specials = {tokenizer.pad_id, tokenizer.eos_id, tokenizer.mask_id}
        model.token_info.copy_(spindle_info(counts, specials).to(model.token_info.device))

    def loss(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator, tokenizer: Tokenizer,
             given: torch.Tensor | None = None) -> Loss:
        return mdlm_loss(model, ids, generator, spindle_lambda=spindle_lambda(cfg))

    def nll_bound(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator,
                  tokenizer: Tokenizer) -> torch.Tensor:
        """The NELBO of each row (nats/token), one antithetic time draw per row (under the spindle,
        DiffusionBERT's objective rather than a strict bound: ``sedlm.baselines.mdlm``)."""
        lam = spindle_lambda(cfg)
        return torch.stack([mdlm_loss(model, row[None], generator, spindle_lambda=lam)[0] for row in ids])

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A layout's given tokens start (and stay) unmasked; the spindle reveals by its own kernel."""
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        ids, _ = mdlm_sample(lm.model, request.n, request.seq_len, request.steps, generator=g, callback=callback,
                             layout=request.layout, pad_id=lm.tokenizer.pad_id, temperature=request.options["temperature"],
                             spindle_lambda=spindle_lambda(lm.config))
        return ids

    def preview(self, lm: Any, info: dict[str, Any], layout: Any) -> torch.Tensor | None:
        """The partly revealed tokens, still-masked positions shown as nothing."""
        z = info.get("z")
        return None if z is None else torch.where(z == lm.model.mask_id, torch.full_like(z, lm.tokenizer.pad_id), z)


FAMILY = MDLMFamily()
