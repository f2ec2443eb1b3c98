"""Step-unrolled Denoising Autoencoder (SUNDAE; Savinov et al. 2022, arXiv 2112.06749).

A bidirectional network f_theta maps a whole sequence of tokens to per-position distributions over
the clean tokens; there is no time input. Training (paper §2):

    corruption q(x~ | x):  alpha ~ U[0, 1] per row; x~_i = x_i w.p. 1 - alpha, else u_i ~ U(vocab)
    step 1:                L(1) = -1/N sum_i log p_theta(x_i | x~)
    unrolled step t > 1:   y(t-1) ~ p_theta(. | y(t-2))  (y(0) = x~; a sample, no gradient through it)
                           L(t) = -1/N sum_i log p_theta(x_i | y(t-1))
    unrolled loss:         L(1:T) = 1/T sum_{t=1..T} L(t)

so the network is also trained on its own (imperfect) denoisings, the inputs it meets at sampling
time. Normalisation: each L(t) is a mean over the N counted tokens (every position that is not a
given seq2seq source position) and the T step losses are averaged, not summed, so the value keeps
the scale of one cross-entropy in nats/token whatever T is (a sum only rescales it by T).

Sampling (paper §3): start from uniform random tokens and repeatedly redraw tokens from
softmax(f_theta(x) / temperature) in parallel, updating only a random subset of positions per step.
Schedule: the fraction of redrawn positions anneals linearly from 1 at the first step (every
position leaves the initial noise) to ``update_fraction`` at the last, so the sample settles while
ever fewer tokens move at once; sampling stops early once a step changes nothing.

The family (``FAMILY``, registered as ``sundae``): given tokens anywhere (prompts, blanks, seq2seq sources)
are simply held fixed through every update. It has no likelihood bound. This module holds the whole
family: network, loss, sampler, adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sedlm.config import Config, ModelConfig
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.families.base import Callback, Family, Loss, Request
from sedlm.losses import token_nll
from sedlm.model.transformer import TokenTransformer
from sedlm.options import Option
from sedlm.sampling.categorical import categorical
from sedlm.sampling.templates import Layout


class SUNDAEModel(TokenTransformer):
    """Token embedding (tied output head) + bidirectional backbone: (B, L) ids -> (B, L, V) logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, causal=False)


def _draw(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
    """One token per position from softmax(logits / temperature) by ``categorical``. logits: (..., V) -> (...)."""
    return categorical(torch.softmax(logits.detach().double() / temperature, dim=-1), generator)


def sundae_loss(
    model: nn.Module,
    ids: torch.Tensor,
    generator: torch.Generator,
    *,
    unroll_steps: int = 2,
    given: torch.Tensor | None = None,
    pad_id: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unrolled denoising loss L(1:T) (module docstring) with T = ``unroll_steps``, in nats/token.
    ``given`` (B, L) marks seq2seq source positions: never corrupted, never counted. With ``pad_id``,
    padding targets are not counted either (the families count them: the model learns where text ends)."""
    if unroll_steps < 1:
        raise SedlmError(f"unroll_steps must be >= 1 (got {unroll_steps})")
    B, L = ids.shape
    V = model.cfg.vocab_size
    keep = torch.zeros_like(ids, dtype=torch.bool) if given is None else given.bool()  # (B, L) held fixed
    counted = ~keep if pad_id is None else ~keep & (ids != pad_id)
    n_counted = counted.sum().clamp(min=1)
    alpha = torch.rand(B, 1, generator=generator, device=ids.device)  # (B, 1) corruption rate per row
    noise = torch.randint(0, V, ids.shape, generator=generator, device=ids.device)
    corrupt = (torch.rand(ids.shape, generator=generator, device=ids.device) < alpha) & ~keep
    x = torch.where(corrupt, noise, ids)  # y(0) = x~
    ces = []
    for t in range(unroll_steps):
        logits = model(x)  # (B, L, V)
        ce = token_nll(logits.float(), ids)  # (B, L)
        ces.append((ce * counted).sum() / n_counted)
        if t == 0:
            with torch.no_grad():
                acc = ((logits.argmax(-1) == ids) & counted).sum() / n_counted
        if t + 1 < unroll_steps:  # y(t) ~ p_theta(. | y(t-1)), detached: gradients flow only through logits
            x = torch.where(keep, ids, _draw(logits, generator))
    loss = torch.stack(ces).mean()  # average over the T unroll steps
    return loss, {"ce": ces[0].detach(), "acc": acc}


@torch.inference_mode()
def sundae_sample(
    model: nn.Module,
    n: int,
    length: int,
    steps: int,
    *,
    generator: torch.Generator,
    temperature: float = 0.8,
    update_fraction: float = 0.3,
    callback: Callable[[dict], None] | None = None,
    layout: Layout | None = None,
    pad_id: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Sample (n, length) ids with at most ``steps`` parallel update steps; also return the network
    calls made. Step i redraws each free position with probability 1 - (1 - ``update_fraction``) * i /
    (steps - 1) from softmax(logits / ``temperature``) (float64). A ``layout``'s given tokens hold
    from the start and never change; its ``no_pad`` positions never take ``pad_id``."""
    if not 0.0 < update_fraction <= 1.0:
        raise SedlmError(f"update_fraction must be in (0, 1] (got {update_fraction})")
    device = next(model.parameters()).device
    V = model.cfg.vocab_size
    z = torch.randint(0, V, (n, length), generator=generator, device=device)  # (n, L) uniform noise, as alpha = 1
    given = torch.zeros(n, length, dtype=torch.bool, device=device)
    no_pad = None
    if layout is not None:
        given = layout.given.to(device).expand(n, length)
        z = torch.where(given, layout.ids.to(device).expand(n, length), z)
        if pad_id is not None and layout.no_pad.any():
            # the first step redraws every free position, so the initial noise never survives there
            no_pad = layout.no_pad.to(device)  # (L,)
    nfe = 0
    for i in range(steps):
        if given.all():  # nothing to generate
            break
        fraction = 1.0 - (1.0 - update_fraction) * i / max(steps - 1, 1)
        logits = model(z).float()  # (n, L, V)
        nfe += 1
        if no_pad is not None:
            logits[:, no_pad, pad_id] = float("-inf")
        update = ~given & (torch.rand(z.shape, generator=generator, device=device) < fraction)  # (n, L)
        new = z.clone()
        new[update] = _draw(logits[update], generator, temperature)  # draw only where updated
        changed = bool((new != z).any())
        z = new
        if callback is not None:
            callback({"i": i, "t": 1.0 - i / steps, "fraction": fraction, "z": z})
        if update.any() and not changed:  # the redrawn tokens all stayed: the sample has settled
            break
    return z, nfe


class SUNDAEFamily(Family):
    name = "sundae"
    description = "step-unrolled denoising autoencoder (SUNDAE)"
    paper = "Savinov et al. 2022, Step-unrolled Denoising Autoencoders for Text Generation (arXiv 2112.06749)"
    val_loss_kind = "unrolled denoising CE, mean over sundae.unroll_steps steps (nats/token)"
    pads = True
    frontier_knob = ("temperature", (0.6, 0.8, 1.0))
    summary_options = ("temperature", "update_fraction")
    settings = (
        Option(
            "unroll_steps",
            int,
            "unroll steps T of the training loss (1 = a plain denoising autoencoder; the paper: 2)",
            default=2,
            minimum=1,
            kind="setting",
        ),
    )
    options = (
        Option(
            "temperature",
            float,
            "softmax temperature of token draws (drawn in float64; SUNDAE's paper samples at about 0.8)",
            default=1.0,
            minimum=1e-6,
        ),
        Option(
            "update_fraction",
            float,
            "sundae: fraction of positions redrawn at the last step; it anneals "
            "linearly from 1 at the first step (in (0, 1])",
            default=0.3,
            minimum=1e-6,
        ),
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return SUNDAEModel(cfg.model)

    def loss(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> Loss:
        """Unrolled over ``sundae.unroll_steps`` steps (the paper trains with T = 2: one step on corrupted
        data and one on the model's own sample of it, the cheapest unrolling that exposes the network to
        its own errors). Seq2seq sources (``given``) are held clean and left out of the loss; padding is
        counted, so the model learns where text ends."""
        return sundae_loss(model, ids, generator, unroll_steps=self.setting(cfg, "unroll_steps"), given=given)

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A layout's given tokens are held fixed through every update."""
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        o = request.options
        ids, _ = sundae_sample(
            lm.model,
            request.n,
            request.seq_len,
            request.steps,
            generator=g,
            callback=callback,
            layout=request.layout,
            pad_id=lm.tokenizer.pad_id,
            temperature=o["temperature"],
            update_fraction=o["update_fraction"],
        )
        return ids

    def preview(self, lm: Any, info: dict[str, Any], layout: Any) -> torch.Tensor | None:
        """The current sample: every position always holds a token."""
        return info.get("z")


FAMILY = SUNDAEFamily()
