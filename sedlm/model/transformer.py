"""The Transformer backbone shared by every model family.

Pre-LayerNorm blocks with rotary position embeddings (RoPE, Su et al. 2021) and
``scaled_dot_product_attention``; bidirectional by default, causal for autoregressive use.
With ``adaln=True`` each block is modulated by a conditioning vector (DiT, Peebles & Xie 2023).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sedlm.config import ModelConfig


def rope_tables(
    seq_len: int, head_dim: int, device: torch.device, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables, each (L, head_dim/2), for angles pos * base^(-2i/head_dim)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x1, x2) of x: (B, H, L, Dh) by position-dependent angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, causal: bool):
        super().__init__()
        self.n_heads, self.causal, self.dropout = n_heads, causal, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: dict[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        append: bool = True,
        tail: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """x: (B, L, D). With ``cache``, keys/values of earlier positions are read from it and, when
        ``append``, this call's are added; cos/sin then cover only this call's positions. A causal model
        decodes one position per call after its prefix; a bidirectional one attends from the whole chunk
        to every cached position and to the chunk itself (block diffusion). ``mask`` (L, C + L) bool: True
        where a query may attend to a key (C cached keys first). ``tail`` (n, rows): append only the keys
        and values of this call's last n positions, first ``rows`` rows (block diffusion writes a finished
        block while it denoises the next; a guided call's second half repeats the first)."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, Dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        is_causal = self.causal and mask is None
        if cache is not None:
            new_k, new_v = k, v
            if "k" in cache:
                ck, cv = cache["k"], cache["v"]
                if ck.shape[0] != B:  # a guided call batches its rows twice over one cached prefix
                    ck, cv = ck.repeat(B // ck.shape[0], 1, 1, 1), cv.repeat(B // cv.shape[0], 1, 1, 1)
                k, v = torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2)
                assert L == 1 or not self.causal, "after the prefix, decode one position per call"
                is_causal = False
            if append:
                cache["k"], cache["v"] = k, v
            elif tail is not None:
                n, rows = tail
                tk, tv = new_k[:rows, :, L - n :], new_v[:rows, :, L - n :]
                cache["k"] = torch.cat([cache["k"], tk], dim=2) if "k" in cache else tk
                cache["v"] = torch.cat([cache["v"], tv], dim=2) if "v" in cache else tv
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, Dh)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


def block_attention_mask(
    n_noisy: int,
    n_clean: int,
    block: int,
    offset: int = 0,
    device: torch.device | None = None,
    clean_start: int = 0,
) -> torch.Tensor:
    """Who attends to whom in [noisy ; clean] (BD3-LM's vectorised form): a noisy position at row position
    offset + i attends to the noisy positions of its own block and to the clean blocks before it; a clean
    position (row position clean_start + j) attends to the clean blocks up to its own.
    (n_noisy + n_clean, n_noisy + n_clean) bool"""
    nb = (offset + torch.arange(n_noisy, device=device)) // block  # (N,) block of each noisy position
    cb = (clean_start + torch.arange(n_clean, device=device)) // block  # (P,)
    top = torch.cat([nb[:, None] == nb[None, :], cb[None, :] < nb[:, None]], dim=1)  # (N, N + P)
    bottom = torch.cat([torch.zeros(n_clean, n_noisy, dtype=torch.bool, device=device), cb[None, :] <= cb[:, None]], 1)
    return torch.cat([top, bottom], dim=0)


class CleanSide(NamedTuple):
    """Block diffusion's finished blocks as one call runs them beside its noisy positions."""

    ids: torch.Tensor  # (batch, P) the clean ids, repeated to the call's batch
    positions: torch.Tensor  # (N + P,) rotary positions of [noisy ; clean]
    mask: torch.Tensor  # (N + P, N + P) ``block_attention_mask``
    tail: tuple[int, int] | None  # pending blocks: (P, rows) to append to the cache; None for clean ones


def clean_side(
    clean: torch.Tensor | None, pending: torch.Tensor | None, n_noisy: int, batch: int, block: int, offset: int
) -> CleanSide | None:
    """The finished blocks a block-diffusion call reads beside its ``n_noisy`` positions (row positions offset..):
    all of them as ``clean`` ids (row positions 0..; training and uncached sampling), or the ``pending`` ones
    the cache does not hold yet (the P positions just before offset; their keys and values go to the cache).
    None when the call reads neither. A guided call batches its rows twice over one prefix: ids repeat to
    ``batch`` and only the first ``rows`` are appended."""
    extra = clean if clean is not None else pending
    if extra is None:
        return None
    (rows, P), dev = extra.shape, extra.device
    start = 0 if clean is not None else offset - P
    positions = torch.cat([offset + torch.arange(n_noisy, device=dev), start + torch.arange(P, device=dev)])
    return CleanSide(
        extra if rows == batch else extra.repeat(batch // rows, 1),
        positions,
        block_attention_mask(n_noisy, P, block, offset, dev, start),
        None if clean is not None else (P, rows),
    )


class MLP(nn.Module):
    def __init__(self, d_model: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(round(mlp_ratio * d_model))
        self.fc = nn.Linear(d_model, hidden)
        self.out = nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.out(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float, dropout: float, causal: bool, adaln: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=not adaln)
        self.attn = Attention(d_model, n_heads, dropout, causal)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=not adaln)
        self.mlp = MLP(d_model, mlp_ratio, dropout)
        self.modulation = None
        if adaln:
            self.modulation = nn.Linear(d_model, 6 * d_model)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cond: torch.Tensor | None,
        cache: dict[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        append: bool = True,
        tail: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.attn(self.norm1(x), cos, sin, cache, mask, append, tail)
            return x + self.mlp(self.norm2(x))
        mod = self.modulation(cond)  # (B, 6D), or (B, L, 6D) for one condition per position
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod[:, None] if mod.dim() == 2 else mod).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, cos, sin, cache, mask, append, tail)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class Transformer(nn.Module):
    """Stack of blocks + final LayerNorm. (B, L, D) -> (B, L, D)."""

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        causal: bool = False,
        adaln: bool = False,
    ):
        super().__init__()
        self.head_dim = d_model // n_heads
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio, dropout, causal, adaln) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2 style scaled init of residual projections
            nn.init.normal_(block.attn.proj.weight, std=0.02 / (2 * n_layers) ** 0.5)
            nn.init.normal_(block.mlp.out.weight, std=0.02 / (2 * n_layers) ** 0.5)
            if block.modulation is not None:  # adaLN-Zero: every block starts as the identity
                nn.init.zeros_(block.modulation.weight)
                nn.init.zeros_(block.modulation.bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        cache: list[dict[str, torch.Tensor]] | None = None,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        append: bool = True,
        tail: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D). ``cache``: one dict per block (start with empty dicts) for incremental
        decoding; positions continue from the cached length, and ``append`` False reads the cache without
        adding this call's keys (``tail``: only its last positions', see ``Attention``). ``mask`` (L, L)
        bool: who attends to whom among this call's positions (every one also attends to every cached
        position); ``positions`` (L,): the rotary position of each input (default 0..L-1 after the cache),
        e.g. a noisy and a clean copy of one row."""
        start = cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        if mask is not None and start:
            mask = torch.cat([mask.new_ones(mask.shape[0], start), mask], dim=1)  # (L, C + L)
        if positions is None:
            cos, sin = rope_tables(start + x.shape[1], self.head_dim, x.device)
            cos, sin = cos[start:], sin[start:]
        else:
            cos, sin = rope_tables(int(positions.max()) + 1, self.head_dim, x.device)
            cos, sin = cos[positions], sin[positions]
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cond, None if cache is None else cache[i], mask, append, tail)
        return self.norm(x)


class TokenTransformer(nn.Module):
    """Token embedding (tied with the output head) + backbone: (B, L) ids -> (B, L, V) logits. The
    network of the discrete families (ar causal; mdlm and sundae bidirectional)."""

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.backbone = Transformer(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, causal=causal)

    def forward(
        self,
        ids: torch.Tensor,
        cache: list[dict[str, torch.Tensor]] | None = None,
        *,
        clean: torch.Tensor | None = None,
        pending: torch.Tensor | None = None,
        offset: int = 0,
        block_size: int = 0,
    ) -> torch.Tensor:
        """(B, L) -> (B, L, V). ``cache``: keys and values of earlier positions (a causal model appends this
        call's; block diffusion, with ``block_size``, reads finished blocks without adding the noisy one).
        Block diffusion reads the finished blocks before ``ids`` (at row position ``offset``) beside it under
        ``block_attention_mask``: all of them as ``clean`` (B, P) without a cache, or with a cache the
        ``pending`` ones (B, P) not in it yet, whose keys and values this call appends (one pass that
        writes a finished block and denoises the next)."""
        h = self.tok(ids)  # (B, L, D)
        side = clean_side(clean, pending, ids.shape[1], ids.shape[0], block_size, offset)
        if side is None:
            h = self.backbone(h, cache=cache, append=not block_size)
        else:
            h = self.backbone(
                torch.cat([h, self.tok(side.ids)], dim=1),
                cache=None if side.tail is None else cache,
                mask=side.mask,
                positions=side.positions,
                append=False,
                tail=side.tail,
            )[:, : ids.shape[1]]
        return h @ self.tok.weight.t()  # (B, L, V)

    def new_cache(self) -> list[dict[str, torch.Tensor]]:
        return [{} for _ in self.backbone.blocks]
