"""Validation during and after training: the rows a family validates on, the fixed batches, and the loss."""

from __future__ import annotations

import torch

from sedlm.config import Config
from sedlm.data.packing import PackedRows
from sedlm.data.tokenizer import Tokenizer
from sedlm.families import get_family
from sedlm.families.base import Family


def family_rows(rows: PackedRows, family: Family) -> PackedRows:
    """The rows a family trains and validates on: families that end text with EOS get them without
    random padding; the others keep the data's own padding fraction (0 for seq2seq pairs, whose
    trailing padding already sets the target's length)."""
    return rows if family.pads else rows.with_padding(0.0)


def validation_batches(rows: PackedRows, cfg: Config) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The fixed validation batches of a run (``rows`` already through ``family_rows``)."""
    return rows.fixed_batches(cfg.train.batch_size, cfg.train.eval_batches)


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor | None]],
    cfg: Config,
    tokenizer: Tokenizer,
    device: torch.device,
) -> float:
    """Mean validation loss of the model's family (``Family.validation_loss``, kind ``val_loss_kind``) on
    fixed validation batches with fixed noise (comparable across steps)."""
    family = get_family(cfg.family)
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(2024)
    total = sum(
        family.validation_loss(model, ids.to(device), cfg, g, tokenizer, None if given is None else given.to(device))[
            0
        ].item()
        for ids, given in batches
    )
    model.train(was_training)
    return total / max(1, len(batches))
