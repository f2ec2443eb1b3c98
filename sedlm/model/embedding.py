"""The embedding space E in which SED diffuses (Strudel et al. 2022, §3.1: a frozen, pretrained table
with rows of norm sqrt(d)).

``EmbeddingSpace`` holds a V x d_embed table whose rows are scaled to norm sqrt(d_embed).
Kinds:
    mlm      a table learned by the factorised masked LM of ``sedlm embed``; frozen
    random   a frozen random table (the paper's ablation)
    learned  trained jointly with the denoiser; re-normalised on every use (CDCD/Difformer)
    bits     Analog Bits (Chen et al. 2023): row w is the binary code of w as +-1 values, d = ceil(log2 V)
    pretrained  another model's input embeddings projected by PCA (``sedlm.model.pretrained_table``)
``MaskedLM`` is the small model that learns the ``mlm`` table: its input embedding is
factorised as V x d_embed -> d_model, and its output logits are tied to the same table.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sedlm.errors import SedlmError
from sedlm.model.transformer import Transformer


def normalize_rows(table: torch.Tensor) -> torch.Tensor:
    """Scale every row to L2 norm sqrt(d): E_i <- sqrt(d) * E_i / ||E_i||. (V, d) -> (V, d)"""
    return F.normalize(table, dim=-1) * table.shape[-1] ** 0.5


def random_table(vocab_size: int, d_embed: int, generator: torch.Generator) -> torch.Tensor:
    return normalize_rows(torch.randn(vocab_size, d_embed, generator=generator))


def bits_dim(vocab_size: int) -> int:
    """Bits needed to write every token id: ceil(log2 V)."""
    return max(1, (vocab_size - 1).bit_length())


def bits_table(vocab_size: int) -> torch.Tensor:
    """Row w = the binary code of w with bits mapped to +-1 (norm sqrt(d) already). (V, ceil(log2 V))"""
    d = bits_dim(vocab_size)
    bits = (torch.arange(vocab_size)[:, None] >> torch.arange(d - 1, -1, -1)[None]) & 1  # (V, d), MSB first
    return bits.float() * 2 - 1


def effective_d_embed(kind: str, vocab_size: int, d_embed: int) -> int:
    """The table width a run uses: ``model.d_embed``, except that analog bits need ceil(log2 V)."""
    return bits_dim(vocab_size) if kind == "bits" else d_embed


def load_table(path: str | Path, vocab_size: int, d_embed: int) -> torch.Tensor:
    """Load the ``embedding`` tensor of an embeddings.safetensors and check its shape."""
    p = Path(path)
    if not p.is_file():
        raise SedlmError(f"embedding file '{p}' not found; run `sedlm embed` first or set embed.kind=random")
    table = load_file(str(p)).get("embedding")
    if table is None or table.ndim != 2:
        raise SedlmError(f"'{p}' holds no 2-D 'embedding' tensor; pass a file written by `sedlm embed`")
    if tuple(table.shape) != (vocab_size, d_embed):
        raise SedlmError(
            f"embedding table '{p}' is {tuple(table.shape)} but the model needs ({vocab_size}, {d_embed}); "
            "train it with the same tokenizer and model.d_embed"
        )
    return normalize_rows(table.float())


class EmbeddingSpace(nn.Module):
    """w -> E[w] with rows of norm sqrt(d_embed); frozen unless ``learned``."""

    def __init__(self, table: torch.Tensor, learned: bool = False):
        super().__init__()
        self.learned = learned
        if learned:
            self.table = nn.Parameter(table.clone())
        else:
            self.register_buffer("table", normalize_rows(table.clone()))

    @property
    def weight(self) -> torch.Tensor:
        """The normalised table (V, d_embed)."""
        return normalize_rows(self.table) if self.learned else self.table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)  # (B, L) -> (B, L, d_embed)


class MaskedLM(nn.Module):
    """Bidirectional masked LM with a factorised, tied V x d_embed table (for ``sedlm embed``)."""

    def __init__(
        self, vocab_size: int, d_embed: int, d_model: int, n_layers: int, n_heads: int, generator: torch.Generator
    ):
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab_size, d_embed, generator=generator))
        self.inp = nn.Linear(d_embed, d_model)
        self.backbone = Transformer(d_model, n_layers, n_heads)
        self.out = nn.Linear(d_model, d_embed)

    def embedding(self) -> torch.Tensor:
        return normalize_rows(self.table)  # train in the same geometry SED will see

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        E = self.embedding()
        h = self.backbone(self.inp(F.embedding(ids, E)))  # (B, L, d_model)
        return self.out(h) @ E.t() / E.shape[1] ** 0.5  # (B, L, V)
