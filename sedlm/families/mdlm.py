"""``mdlm``: the masked (absorbing-state) discrete diffusion baseline (Sahoo et al. 2024;
``sedlm.baselines.mdlm``). Its validation loss is the continuous-time NELBO, a likelihood bound."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sedlm.baselines.mdlm import MDLMModel, mdlm_loss, mdlm_sample
from sedlm.config import Config
from sedlm.data.tokenizer import Tokenizer
from sedlm.family import Callback, Family, Loss, Request, SamplingOption


class MDLMFamily(Family):
    name = "mdlm"
    description = "masked discrete diffusion (MDLM)"
    paper = "Sahoo et al. 2024, Simple and Effective Masked Diffusion Language Models (arXiv 2406.07524)"
    val_loss_kind = "NELBO (nats/token)"
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))
    summary_options = ("temperature",)
    options = (
        SamplingOption("temperature", float, "softmax temperature of revealed tokens (drawn in float64)", "temperature",
                       minimum=1e-6),
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return MDLMModel(cfg.model, tokenizer.mask_id)

    def loss(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator, tokenizer: Tokenizer,
             given: torch.Tensor | None = None) -> Loss:
        return mdlm_loss(model, ids, generator)

    def nll_bound(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator,
                  tokenizer: Tokenizer) -> torch.Tensor:
        """The NELBO of each row (nats/token), one antithetic time draw per row."""
        return torch.stack([mdlm_loss(model, row[None], generator)[0] for row in ids])

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A layout's given tokens start (and stay) unmasked."""
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        ids, _ = mdlm_sample(lm.model, request.n, request.seq_len, request.steps, generator=g, callback=callback,
                             layout=request.layout, pad_id=lm.tokenizer.pad_id, temperature=request.options["temperature"])
        return ids

    def preview(self, lm: Any, info: dict[str, Any], layout: Any) -> torch.Tensor | None:
        """The partly revealed tokens, still-masked positions shown as nothing."""
        z = info.get("z")
        return None if z is None else torch.where(z == lm.model.mask_id, torch.full_like(z, lm.tokenizer.pad_id), z)


FAMILY = MDLMFamily()
