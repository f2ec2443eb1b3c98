"""Model families trained by one trainer: ``sed`` (ours), ``ar`` and ``mdlm`` (baselines).

Each family says how to build its network from a config (+ tokenizer, + the frozen embedding
table for SED), what its training loss is, and whether it trains on randomly padded rows
(variable length through padding tokens; the autoregressive model ends text with EOS instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from sedlm.baselines.ar import ARModel, ar_loss
from sedlm.baselines.mdlm import MDLMModel, mdlm_loss
from sedlm.config import Config
from sedlm.data.masks import conditioning
from sedlm.data.tokenizer import Tokenizer
from sedlm.diffusion.objective import sed_loss
from sedlm.diffusion.schedules import get_schedule
from sedlm.errors import SedlmError
from sedlm.model.denoiser import SEDDenoiser
from sedlm.model.embedding import EmbeddingSpace

Loss = tuple[torch.Tensor, dict[str, torch.Tensor]]


def build_denoiser(cfg: Config, table: torch.Tensor) -> SEDDenoiser:
    """A denoiser over the embedding ``table`` (V, d_embed); frozen unless embed.kind=learned."""
    return SEDDenoiser(cfg.model, EmbeddingSpace(table, learned=cfg.embed.kind == "learned"), cfg.diffusion.x0_estimate,
                       time_warp=cfg.diffusion.time_warp)


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    build: Callable[[Config, Tokenizer, torch.Tensor | None], nn.Module]
    # (model, ids, config, generator, tokenizer, given positions or None) -> loss
    loss: Callable[[nn.Module, torch.Tensor, Config, torch.Generator, Tokenizer, torch.Tensor | None], Loss]
    uses_embedding_table: bool
    pads: bool
    loss_name: str  # what the validation loss is


def _sed_loss(model, ids, cfg, gen, tok, given=None) -> Loss:
    """SED loss conditioned on ``given`` positions (seq2seq sources), else on positions drawn from
    the configured conditioning-mask mixture."""
    if given is None and cfg.diffusion.cond_masks != "none":
        ids, given = conditioning(cfg.diffusion.cond_masks, ids, tok.pad_id, gen)
    return sed_loss(model, ids, cfg.diffusion, get_schedule(cfg.diffusion.schedule, cfg.diffusion.logsnr_shift), gen, cond_mask=given)


METHODS: dict[str, Method] = {
    "sed": Method("sed", "self-conditioned embedding diffusion", lambda cfg, tok, table: build_denoiser(cfg, table),
                  _sed_loss, True, True, "SED loss (x0 MSE + CE)"),
    "ar": Method("ar", "autoregressive causal Transformer", lambda cfg, tok, table: ARModel(cfg.model),
                 lambda m, ids, cfg, gen, tok, given=None: ar_loss(m, ids), False, False, "next-token NLL (nats/token)"),
    "mdlm": Method("mdlm", "masked discrete diffusion (MDLM)", lambda cfg, tok, table: MDLMModel(cfg.model, tok.mask_id),
                   lambda m, ids, cfg, gen, tok, given=None: mdlm_loss(m, ids, gen), False, True, "NELBO (nats/token)"),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise SedlmError(f"unknown method '{name}'; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def count_parameters(model: nn.Module) -> int:
    """All parameters and buffers (SED's frozen embedding table counts; it is part of the model)."""
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
