"""Masked (absorbing-state) discrete diffusion baseline in the style of MDLM (Sahoo et al. 2024).

Forward process: each token is replaced by the mask token independently with probability 1 - alpha_t,
alpha_t = 1 - t (the log-linear schedule). The network predicts x0 from z_t with the SUBS
parameterisation (the mask token is never predicted; unmasked tokens are carried over).
Continuous-time negative ELBO per token (MDLM eq. 10 with alpha'_t / (1 - alpha_t) = -1/t):

    NELBO = E_t [ 1/t * sum_{i masked} -log p_theta(x0_i | z_t) ] / L

Ancestral sampling from t = 1 (all masked) to 0: a masked position is revealed between t and
s < t with probability (alpha_s - alpha_t) / (1 - alpha_t) = (t - s) / t, its token drawn from
p_theta(x0 | z_t). The network has no time input, so when a step reveals nothing the previous
prediction is reused and no network call is made.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sedlm.config import ModelConfig
from sedlm.model.transformer import Transformer
from sedlm.sampling.templates import Layout


class MDLMModel(nn.Module):
    """Token embedding (tied head) + bidirectional backbone; logits never put mass on the mask."""

    def __init__(self, cfg: ModelConfig, mask_id: int):
        super().__init__()
        self.cfg, self.mask_id = cfg, mask_id
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.backbone = Transformer(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, causal=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.backbone(self.tok(z)) @ self.tok.weight.t()  # (B, L, V)
        logits[..., self.mask_id] = float("-inf")
        return logits


def mdlm_loss(model: MDLMModel, ids: torch.Tensor, generator: torch.Generator, eps: float = 1e-3
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """NELBO in nats per token (an upper bound on -log p / L) on one batch."""
    B, L = ids.shape
    # Antithetic (stratified) times reduce the variance of the 1/t-weighted estimate.
    u = (torch.rand((), generator=generator, device=ids.device) + torch.arange(B, device=ids.device) / B) % 1.0
    t = eps + (1 - eps) * u  # (B,)
    masked = torch.rand(ids.shape, generator=generator, device=ids.device) < t[:, None]
    z = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
    logits = model(z)
    ce = F.cross_entropy(logits.transpose(1, 2).float(), ids, reduction="none")  # (B, L)
    nelbo = (ce * masked / t[:, None]).sum() / (B * L)
    with torch.no_grad():
        acc = ((logits.argmax(-1) == ids) & masked).sum() / masked.sum().clamp(min=1)
    return nelbo, {"ce": ((ce * masked).sum() / masked.sum().clamp(min=1)).detach(), "acc": acc}


@torch.inference_mode()
def mdlm_sample(
    model: MDLMModel,
    n: int,
    length: int,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    layout: Layout | None = None,
    pad_id: int | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, int]:
    """Sample (n, length) ids with ``steps`` reveal steps; also return the network calls made.
    A ``layout``'s given tokens are unmasked from the start (infilling); its ``no_pad`` positions
    never reveal ``pad_id``. Revealed tokens are drawn from softmax(logits / ``temperature``) in
    float64 (categorical draws in float32 lower the entropy of diffusion samples; Zheng et al. 2024)."""
    device = next(model.parameters()).device
    z = torch.full((n, length), model.mask_id, dtype=torch.long, device=device)
    no_pad = None
    if layout is not None:
        z = torch.where(layout.given.to(device), layout.ids.to(device), z)
        if pad_id is not None and layout.no_pad.any():
            no_pad = layout.no_pad.to(device)
    ts = torch.linspace(1.0, 0.0, steps + 1)
    probs, nfe = None, 0
    for i in range(steps):
        t, s = ts[i].item(), ts[i + 1].item()
        masked = z == model.mask_id
        if not masked.any():
            break
        if probs is None:
            logits = model(z).float()  # (n, L, V)
            if no_pad is not None:
                logits[:, no_pad, pad_id] = float("-inf")
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            nfe += 1
        reveal = masked & (torch.rand(z.shape, generator=generator, device=device) < (t - s) / t)
        if reveal.any():
            z = z.clone()
            z[reveal] = torch.multinomial(probs[reveal], 1, generator=generator).squeeze(-1)  # draw only where revealed
            probs = None  # the input changed: the next step needs a fresh prediction
        if callback is not None:
            callback({"i": i, "t": t, "z": z})
    return z, nfe
