"""`sedlm embed`: learn the embedding table E with a small factorised masked LM.

The masked LM (``MaskedLM``) replaces ``mask_prob`` of the tokens of each row with the mask
token and predicts them through logits tied to E, so E's geometry has to carry what predicts a
token from its context. The table is saved as ``embeddings.safetensors`` (key ``embedding``,
V x d_embed, rows of norm sqrt(d_embed)) beside the ``tokenizer.json`` it indexes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sedlm.config import EmbedConfig
from sedlm.data.packing import PackedRows
from sedlm.data.tokenizer import Tokenizer
from sedlm.model.embedding import MaskedLM, normalize_rows


def mlm_loss(model: MaskedLM, ids: torch.Tensor, mask_id: int, pad_id: int, mask_prob: float, g: torch.Generator) -> torch.Tensor:
    """Cross-entropy on the masked (non-padding) positions of ids (B, L)."""
    masked = (torch.rand(ids.shape, generator=g, device=ids.device) < mask_prob) & (ids != pad_id)
    logits = model(torch.where(masked, torch.full_like(ids, mask_id), ids))  # (B, L, V)
    return F.cross_entropy(logits[masked], ids[masked]) if masked.any() else logits.sum() * 0.0


def train_embedding(
    cfg: EmbedConfig,
    rows: PackedRows,
    tokenizer: Tokenizer,
    d_embed: int,
    device: torch.device,
    progress: bool = True,
) -> torch.Tensor:
    """Train the masked LM for ``cfg.steps`` (or ``cfg.max_minutes``) and return E. (V, d_embed)"""
    g_init = torch.Generator().manual_seed(cfg.seed)
    model = MaskedLM(tokenizer.vocab_size, d_embed, cfg.d_model, cfg.n_layers, cfg.n_heads, g_init).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    g = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="embed (masked LM)", disable=not progress, leave=False)
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / 20)
        for group in opt.param_groups:
            group["lr"] = lr
        ids = rows.batch(step, cfg.batch_size, seed=cfg.seed).to(device)
        loss = mlm_loss(model, ids, tokenizer.mask_id, tokenizer.pad_id, cfg.mask_prob, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if cfg.max_minutes and time.perf_counter() - start > 60 * cfg.max_minutes:
            break
    return normalize_rows(model.table.detach().float().cpu())


def save_embedding(path: str | Path, table: torch.Tensor) -> None:
    """Write ``embeddings.safetensors`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({"embedding": table.contiguous()}, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
