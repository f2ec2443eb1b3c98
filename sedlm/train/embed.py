"""`sedlm embed`: build the embedding table E that SED diffuses in.

Two ways:
- ``mlm`` (the paper): a small factorised masked LM (``MaskedLM``) replaces ``mask_prob`` of the
  tokens of each row with the mask token and predicts them through logits tied to E, so E's
  geometry has to carry what predicts a token from its context.
- ``ppmi``: corpus statistics instead of training (Levy & Goldberg 2014; Levy et al. 2015):
  symmetric co-occurrence counts within ``window`` tokens, positive PMI with context-distribution
  smoothing (alpha = 0.75), then E = U_d sqrt(S_d) from a truncated SVD. Seconds on a CPU.
The table is saved as ``embeddings.safetensors`` (key ``embedding``, V x d_embed, rows of norm
sqrt(d_embed)) beside the ``tokenizer.json`` it indexes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sedlm.config import EmbedConfig
from sedlm.data.packing import PackedRows
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.model.embedding import MaskedLM, normalize_rows
from sedlm.progress import progress as show_progress


def mlm_loss(
    model: MaskedLM, ids: torch.Tensor, mask_id: int, pad_id: int, mask_prob: float, g: torch.Generator
) -> torch.Tensor:
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
    bar = show_progress(range(cfg.steps), desc="embed (masked LM)", enabled=progress, leave=False)
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


def ppmi_table(
    rows: torch.Tensor,  # (N, L) token ids
    vocab_size: int,
    d_embed: int,
    window: int = 4,
    ignore: tuple[int, ...] = (),
    alpha: float = 0.75,
    seed: int = 0,
) -> torch.Tensor:
    """E (V, d_embed) from the truncated SVD of the PPMI matrix
        PPMI(a, b) = max(0, log P(a, b) / (P(a) P_alpha(b))),  P_alpha(b) = c(b)^alpha / sum c^alpha.
    Tokens in ``ignore`` (padding, special ids) and tokens never seen get random rows."""
    ids = rows.long()
    keep = torch.ones_like(ids, dtype=torch.bool)
    for i in ignore:
        keep &= ids != i
    pairs = []
    for k in range(1, window + 1):
        a, b = ids[:, :-k].reshape(-1), ids[:, k:].reshape(-1)
        ok = (keep[:, :-k] & keep[:, k:]).reshape(-1)
        pairs += [a[ok] * vocab_size + b[ok], b[ok] * vocab_size + a[ok]]  # both directions
    keys, counts = torch.unique(torch.cat(pairs), return_counts=True)
    rows_i, cols_i = keys // vocab_size, keys % vocab_size
    counts = counts.double()
    row_sum = torch.zeros(vocab_size, dtype=torch.float64).index_add_(0, rows_i, counts)
    ctx = row_sum**alpha
    pmi = torch.log(counts * ctx.sum() / (row_sum[rows_i] * ctx[cols_i]))  # log P(a,b) / (P(a) P_alpha(b))
    pos = pmi > 0
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows_i[pos], cols_i[pos]]), pmi[pos].float(), (vocab_size, vocab_size), check_invariants=True
    )
    g = torch.Generator().manual_seed(seed)
    q = min(vocab_size, d_embed + 10)
    with torch.random.fork_rng(devices=[]):  # svd_lowrank draws from the global generator; leave it as it was
        torch.manual_seed(seed)
        U, S, _ = torch.svd_lowrank(matrix.coalesce(), q=q, niter=4)
    table = U[:, :d_embed] * S[:d_embed].sqrt()  # (V, d_embed)
    unseen = row_sum == 0
    unseen[list(ignore)] = True
    table[unseen] = (
        torch.randn(int(unseen.sum()), d_embed, generator=g) * table[~unseen].norm(dim=-1).mean() / d_embed**0.5
    )
    return normalize_rows(table)


PPMI_MAX_TOKENS = 8_000_000  # co-occurrences are counted on at most this many tokens


def build_table(
    cfg: EmbedConfig,
    rows: PackedRows,
    tokenizer: Tokenizer,
    d_embed: int,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> torch.Tensor:
    """The ``mlm`` or ``ppmi`` table for ``cfg.kind``. (V, d_embed)"""
    if cfg.kind == "ppmi":
        log(f"building the embedding space: PPMI + SVD, window {cfg.window}, d_embed={d_embed}")
        special = tuple(i for i in (tokenizer.pad_id, tokenizer.mask_id) if i is not None)
        ids = rows.rows
        if ids.numel() > PPMI_MAX_TOKENS:  # counts settle long before; evenly spaced rows keep memory bounded
            ids = ids[torch.linspace(0, len(ids) - 1, PPMI_MAX_TOKENS // ids.shape[1]).long()]
        else:
            ids = ids[:]  # memory-mapped shard rows become a tensor here
        return ppmi_table(ids, tokenizer.vocab_size, d_embed, cfg.window, ignore=special, seed=cfg.seed)
    if cfg.kind != "mlm":
        raise SedlmError(f"embed.kind='{cfg.kind}' has no table to build; use mlm or ppmi")
    log(f"training the embedding space: masked LM, {cfg.steps} steps, d_embed={d_embed}")
    return train_embedding(cfg, rows, tokenizer, d_embed, device, progress)


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
