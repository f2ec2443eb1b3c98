"""``sundae``: the Step-unrolled Denoising Autoencoder (Savinov et al. 2022, arXiv 2112.06749;
``sedlm.baselines.sundae``). A non-autoregressive model without time input, trained on uniformly
corrupted text and on its own unrolled denoisings; it samples by low-temperature parallel updates
of a shrinking random subset of positions, so given tokens anywhere (prompts, blanks, seq2seq
sources) are simply held fixed. It has no likelihood bound."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sedlm.baselines.sundae import SUNDAEModel, sundae_loss, sundae_sample
from sedlm.config import Config
from sedlm.data.tokenizer import Tokenizer
from sedlm.family import Callback, Family, Loss, Request, SamplingOption

class SUNDAEFamily(Family):
    name = "sundae"
    description = "step-unrolled denoising autoencoder (SUNDAE)"
    paper = "Savinov et al. 2022, Step-unrolled Denoising Autoencoders for Text Generation (arXiv 2112.06749)"
    val_loss_kind = "unrolled denoising CE, mean over diffusion.unroll_steps steps (nats/token)"
    pads = True
    frontier_knob = ("temperature", (0.6, 0.8, 1.0))
    summary_options = ("temperature", "update_fraction")
    options = (
        SamplingOption("temperature", float, "softmax temperature of token draws (drawn in float64; SUNDAE's paper "
                       "samples at about 0.8)", "temperature", minimum=1e-6),
        SamplingOption("update_fraction", float, "sundae: fraction of positions redrawn at the last step; it anneals "
                       "linearly from 1 at the first step (in (0, 1])", default=0.3, minimum=1e-6),
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return SUNDAEModel(cfg.model)

    def loss(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator, tokenizer: Tokenizer,
             given: torch.Tensor | None = None) -> Loss:
        """Unrolled over ``diffusion.unroll_steps`` steps (the paper trains with T = 2: one step on corrupted
        data and one on the model's own sample of it, the cheapest unrolling that exposes the network to
        its own errors). Seq2seq sources (``given``) are held clean and left out of the loss; padding is
        counted, so the model learns where text ends."""
        return sundae_loss(model, ids, generator, unroll_steps=cfg.diffusion.unroll_steps, given=given)

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A layout's given tokens are held fixed through every update."""
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        o = request.options
        ids, _ = sundae_sample(lm.model, request.n, request.seq_len, request.steps, generator=g, callback=callback,
                               layout=request.layout, pad_id=lm.tokenizer.pad_id, temperature=o["temperature"],
                               update_fraction=o["update_fraction"])
        return ids

    def preview(self, lm: Any, info: dict[str, Any], layout: Any) -> torch.Tensor | None:
        """The current sample: every position always holds a token."""
        return info.get("z")


FAMILY = SUNDAEFamily()
