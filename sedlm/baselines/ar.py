"""Autoregressive baseline: a causal Transformer on the shared backbone, with KV-cache decoding.

Loss: next-token cross-entropy  L = -1/(B(L-1)) sum_i log p(w_{i+1} | w_<=i).
Generation: temperature and nucleus (top-p) sampling (Holtzman et al. 2020), one position per
network call; with the KV cache each call processes only the new position.
"""

from __future__ import annotations

import torch

from sedlm.config import ModelConfig
from sedlm.losses import token_nll
from sedlm.model.transformer import TokenTransformer


class ARModel(TokenTransformer):
    """Token embedding (tied with the output head) + causal backbone. (B, L) -> (B, L, V)"""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, causal=True)

    def new_cache(self) -> list[dict[str, torch.Tensor]]:
        return [{} for _ in self.backbone.blocks]


def ar_loss(model: ARModel, ids: torch.Tensor, pad_id: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean next-token cross-entropy in nats (targets equal to ``pad_id`` are ignored)."""
    logits = model(ids[:, :-1])  # (B, L-1, V)
    target = ids[:, 1:]
    ignore = -100 if pad_id is None else pad_id
    loss = token_nll(logits.float(), target, ignore).sum() / (target != ignore).sum().clamp(min=1)
    with torch.no_grad():
        acc = (logits.argmax(-1) == target).float().mean()
    return loss, {"ce": loss.detach(), "acc": acc}


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Draw one token per row from logits (B, V): greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def ar_generate(
    model: ARModel,
    prefix: torch.Tensor,  # (B, P) ids to continue, P >= 1 (e.g. the end-of-document id)
    new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 0.95,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Append ``new_tokens`` sampled tokens to ``prefix``. (B, P) -> (B, P + new_tokens)"""
    ids = prefix
    cache = model.new_cache() if use_cache else None
    logits = model(ids, cache=cache)[:, -1]  # prefill
    for i in range(new_tokens):
        nxt = sample_next(logits, temperature, top_p, generator)[:, None]  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
        if i == new_tokens - 1:
            break
        logits = (model(nxt, cache=cache) if use_cache else model(ids))[:, -1]
    return ids
