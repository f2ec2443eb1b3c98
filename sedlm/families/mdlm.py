"""Masked (absorbing-state) discrete diffusion baseline in the style of MDLM (Sahoo et al. 2024).

Forward process: token i is replaced by the mask token independently with probability m_i(t) = 1 - alpha_i(t).
The network predicts x0 from z_t with the SUBS parameterisation (the mask token is never predicted;
unmasked tokens are carried over) and has no time input (DiffusionBERT's time-agnostic decoding).

Schedules. ``linear``: m(t) = t (MDLM's log-linear alpha_t = 1 - t). ``spindle`` (DiffusionBERT, He et al.
2023, arXiv 2211.15029): m_i(t) = clip(t + lambda sin(pi t) h(x0_i), 0, 1), h the token's normalised
information (``spindle_info``; h > 0 for rare words). Informative tokens are masked EARLIER in the forward
process, so generation reveals them LATER: the frequent, easy words come first and the content words are
chosen with that scaffold in place. m(0) = 0 and m(1) = 1 for every token, and m is non-decreasing for any
lambda: with a = lambda h > 0, f = t + a sin(pi t) only decreases on some (t*, 1], where it falls to f(1) = 1,
so f >= 1 and the clip is flat there (a < 0: the mirror image at t = 0).

Continuous-time NELBO (MDLM eq. 10, each position with its own alpha_i; the sum over positions of the
single-token bound, since the forward process masks positions independently):

    NELBO = E_t [ sum_{i masked} -alpha_i'(t) / (1 - alpha_i(t)) * -log p_theta(x0_i | z_t) ] / L,
    weight  -alpha_i' / (1 - alpha_i) = m_i'(t) / m_i(t)       (= 1/t for the linear schedule).

Since P(i masked at t) = m_i(t), E[weight * 1[masked]] = int_0^1 m_i'(t) dt = m_i(1) - m_i(0) = 1 for any
valid schedule, so a model uniform over the V - 1 non-mask tokens scores log(V - 1) (up to the eps cut-off
of ``mdlm_loss``'s times). Caveat: the spindle weight depends on x0_i, which the reverse process does
not know while i is masked; for the mixture reverse process that ``mdlm_sample`` runs, the exact bound
adds E[sum_w p_theta(w | z_t) r_w - r_x0] (r = m'/m; Shi et al. 2024, GenMD4), zero when p_theta is the
true posterior and identically zero for the linear schedule. So under ``spindle`` this is DiffusionBERT's
training objective, not a strict bound.

Ancestral sampling from t = 1 (all masked) to 0: under the linear schedule a masked position is revealed
between t and s with probability (t - s) / t, its token drawn from p_theta(x0 | z_t). Under the spindle the
reveal probability (m_w(t) - m_w(s)) / m_w(t) depends on the unknown token w; we take the expectation under
the model's own prediction, i.e. the exact reverse kernel q(z_s | z_t, x0 ~ p_theta): position i becomes w
with probability p_theta(w | z_t) (m_w(t) - m_w(s)) / m_w(t). (Revealing by the linear rule instead would
hand the network partly masked inputs unlike those of training, where rare words are masked more.) With no
time input, a step that reveals nothing reuses the previous prediction and makes no network call.

The family (``FAMILY``, registered as ``mdlm``): its validation loss is the continuous-time NELBO, a
likelihood bound under the linear schedule. ``mdlm.mask_schedule=spindle`` uses DiffusionBERT's
information-dependent schedule (He et al. 2023), its token information measured on the training rows
(``init_from_data``). This module holds the whole family: network, loss, sampler, adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from sedlm.config import Config, ModelConfig
from sedlm.data.tokenizer import Tokenizer
from sedlm.families.base import STOP_AT_EOS, USE_BLOCK_CACHE, Callback, Family, Loss, Request, check_blockwise
from sedlm.losses import token_nll
from sedlm.model.transformer import TokenTransformer
from sedlm.options import Option
from sedlm.sampling.blocks import sample_blocks
from sedlm.sampling.categorical import categorical
from sedlm.sampling.templates import Layout


class MDLMModel(TokenTransformer):
    """Token embedding (tied head) + bidirectional backbone; logits never put mass on the mask.
    ``token_info`` (V,) holds the spindle schedule's h per token (zeros: linear); it is saved with the
    weights only under ``spindle``, so checkpoints of the linear schedule keep their old keys."""

    def __init__(
        self,
        cfg: ModelConfig,
        mask_id: int,
        mask_schedule: str = "linear",
        spindle_lambda: float = 0.5,
        block_size: int = 0,
    ):
        super().__init__(cfg, causal=False)
        self.mask_id = mask_id
        self.spindle_lambda = spindle_lambda if mask_schedule == "spindle" else 0.0
        self.block_size = block_size  # block diffusion (BD3-LM); 0: the whole row
        self.register_buffer("token_info", torch.zeros(cfg.vocab_size), persistent=mask_schedule == "spindle")

    def forward(self, z: torch.Tensor, cache: list[dict[str, torch.Tensor]] | None = None, **reads) -> torch.Tensor:
        """(B, L) -> (B, L, V); block diffusion's ``reads`` (``clean``, ``pending``, ``offset``) are
        ``TokenTransformer.forward``'s, with this model's block size."""
        logits = super().forward(z, cache, block_size=self.block_size, **reads)
        logits[..., self.mask_id] = float("-inf")
        return logits


def mask_rate(t: torch.Tensor, h: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The spindle masking probability m = clip(t + lam sin(pi t) h, 0, 1) and dm/dt (0 where clipped),
    broadcast over ``t`` and ``h``. lam = 0 or h = 0 gives m = t, dm = 1 exactly (the linear schedule)."""
    bump = torch.sin(torch.pi * torch.minimum(t, 1 - t))  # sin(pi t), exactly 0 at t = 0 and 1: m(1) = 1 exactly
    raw = t + lam * bump * h
    slope = 1 + (lam * torch.pi) * torch.cos(torch.pi * t) * h
    return raw.clamp(0.0, 1.0), torch.where((raw >= 0) & (raw <= 1), slope, torch.zeros_like(slope))


def spindle_info(counts: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """h (V,) from unigram counts (V,): the information -log p(w) of add-one smoothed frequencies over the
    non-special tokens, minus its mean over the data (the unigram entropy: the expected masked fraction
    stays t, only the order changes), divided by its range over the vocabulary so |h| <= 1 (DiffusionBERT
    scales log-frequencies to [0, 1] likewise). Special tokens (pad, eos, mask) get 0, the linear schedule:
    the padding rate is a data setting, not information, and the mask never occurs in data."""
    counts = counts.double()
    keep = torch.ones_like(counts, dtype=torch.bool)
    keep[list(special_ids)] = False
    smoothed = counts[keep] + 1
    info = -(smoothed / smoothed.sum()).log()  # nats
    mean = (counts[keep] * info).sum() / counts[keep].sum().clamp(min=1)
    h = torch.zeros_like(counts)
    span = info.max() - info.min() if len(info) else torch.tensor(0.0)
    if span > 0:
        h[keep] = (info - mean) / span
    return h.float()


def _schedule(model: nn.Module, spindle_lambda: float | None) -> tuple[float, torch.Tensor | None]:
    """lambda (None: the model's) and the token information (V,); a predictor without one is linear."""
    lam = getattr(model, "spindle_lambda", 0.0) if spindle_lambda is None else spindle_lambda
    return lam, getattr(model, "token_info", None)


def mdlm_loss(
    model: MDLMModel,
    ids: torch.Tensor,
    generator: torch.Generator,
    eps: float = 1e-3,
    *,
    spindle_lambda: float | None = None,
    given: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """NELBO in nats per token on one batch (module docstring; ``spindle_lambda`` None: the model's).
    Times are drawn on [eps, 1]; under the spindle that drops a bias of about m(eps) - eps. ``given``
    (B, L) bool: those tokens are never masked and not counted, so the figure is the NELBO of the
    others given them (the same process on the scored positions, conditioned on the rest), per scored token."""
    B, L = ids.shape
    lam, info = _schedule(model, spindle_lambda)
    bs = getattr(model, "block_size", 0)
    bs = bs if 0 < bs < L else 0  # block diffusion: one time per block (BD3-LM)
    nb = L // bs if bs else 1
    # Antithetic (stratified) times reduce the variance of the 1/t-weighted estimate: over rows, and over
    # every block of every row for a block model.
    u = (
        torch.rand((), generator=generator, device=ids.device) + torch.arange(B * nb, device=ids.device) / (B * nb)
    ) % 1.0
    if bs:  # the strata in random order, so no block of a row always gets the low times
        u = u[torch.randperm(B * nb, generator=generator, device=ids.device)]
    t = (eps + (1 - eps) * u).view(B, nb)  # (B, nb)
    h = info.float()[ids] if info is not None else torch.zeros((), device=ids.device)  # (B, L)
    m, dm = mask_rate(t.repeat_interleave(L // nb, dim=1), h, lam)  # (B, L) each
    masked = torch.rand(ids.shape, generator=generator, device=ids.device) < m
    if given is not None:
        masked = masked & ~given.bool()
    z = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
    logits = model(z, clean=ids) if bs else model(z)  # a block is denoised given the clean blocks before it
    ce = token_nll(logits.float(), ids)  # (B, L)
    # Weight m'/m; a masked position has m > 0, the clamp only keeps 0 * weight finite where m = 0.
    scored = B * L if given is None else (~given.bool()).sum().clamp(min=1)
    nelbo = (ce * masked * dm / m.clamp(min=torch.finfo(m.dtype).tiny)).sum() / scored
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
    spindle_lambda: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Sample (n, length) ids with ``steps`` reveal steps; also return the network calls made.
    A ``layout``'s given tokens are unmasked from the start (infilling); its ``no_pad`` positions
    never reveal ``pad_id``. Revealed tokens are drawn from softmax(logits / ``temperature``) by ``categorical``.
    ``spindle_lambda`` (None: the model's) with a non-zero ``token_info`` reveals by the spindle kernel."""
    device = next(model.parameters()).device
    lam, info = _schedule(model, spindle_lambda)
    shared = lam == 0 or info is None or not bool(info.any())  # one schedule for all tokens: the (t - s) / t rule
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
        if probs is None:  # only masked positions are drawn from: their rows alone, in row-major order
            logits = model(z).float()  # (n, L, V)
            if no_pad is not None:
                logits[:, no_pad, pad_id] = float("-inf")
            probs = torch.softmax(logits[masked].double() / temperature, dim=-1)  # (M, V), M masked positions
            nfe += 1
        if shared:
            joint, p_reveal = probs, (t - s) / t
        else:
            m_t, _ = mask_rate(torch.tensor(t, dtype=torch.float64, device=device), info.double(), lam)  # (V,)
            m_s, _ = mask_rate(torch.tensor(s, dtype=torch.float64, device=device), info.double(), lam)
            # A token whose rate is already 0 cannot still be masked: it is revealed now.
            rho = torch.where(m_t > 0, (m_t - m_s) / m_t.clamp(min=1e-300), torch.ones_like(m_t))  # (V,)
            joint = probs * rho  # (M, V): P(reveal as w) = p(w) rho_w
            p_reveal = torch.ones(z.shape, dtype=torch.float64, device=device)  # every position is revealed at s = 0
            if s > 0:
                p_reveal[masked] = joint.sum(-1)
        reveal = masked & (torch.rand(z.shape, generator=generator, device=device) < p_reveal)
        if reveal.any():
            z = z.clone()
            rows = joint[reveal[masked]]  # the revealed positions' rows of the masked ones
            z[reveal] = categorical(rows, generator)  # draw only where revealed
            probs = None  # the input changed: the next step needs a fresh prediction
        if callback is not None:
            callback({"i": i, "t": t, "z": z})
    return z, nfe


NLL_TIMES = 8  # stratified times per row of a likelihood estimate
COUNT_TOKENS = 1 << 24  # unigram frequencies are read from at most this many training tokens (evenly spread rows)


def spindle_lambda(cfg: Config) -> float:
    """The spindle's lambda; 0 (the linear schedule) unless ``mdlm.mask_schedule`` is spindle."""
    return FAMILY.setting(cfg, "spindle_lambda") if FAMILY.setting(cfg, "mask_schedule") == "spindle" else 0.0


class MDLMFamily(Family):
    name = "mdlm"
    description = "masked discrete diffusion (MDLM)"
    paper = "Sahoo et al. 2024, Simple and Effective Masked Diffusion Language Models (arXiv 2406.07524)"
    val_loss_kind = "NELBO (nats/token)"
    nll_kind = "bound"
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))
    summary_options = ("temperature",)
    settings = (
        Option(
            "mask_schedule",
            str,
            "linear (alpha_t = 1 - t) or spindle (DiffusionBERT: tokens carrying more "
            "information are masked earlier, by spindle_lambda times a sine bump)",
            default="linear",
            choices=("linear", "spindle"),
            kind="setting",
        ),
        Option(
            "spindle_lambda",
            float,
            "the spindle's amplitude lambda (mask_schedule=spindle)",
            default=0.5,
            kind="setting",
        ),
    )
    options = (
        Option(
            "temperature", float, "softmax temperature of revealed tokens (drawn in float64)", default=1.0, minimum=1e-6
        ),
        USE_BLOCK_CACHE,
        STOP_AT_EOS,
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return MDLMModel(
            cfg.model,
            tokenizer.mask_id,
            self.setting(cfg, "mask_schedule"),
            self.setting(cfg, "spindle_lambda"),
            block_size=cfg.diffusion.block_size,
        )

    def init_from_data(self, model: nn.Module, cfg: Config, rows: Any, tokenizer: Tokenizer) -> None:
        """Under the spindle schedule, fill ``model.token_info`` from the unigram counts of the training
        rows (``sedlm.families.mdlm.spindle_info``: pad, eos and mask keep the linear schedule)."""
        if self.setting(cfg, "mask_schedule") != "spindle":
            return
        data, V = rows.rows, model.token_info.numel()  # (N, L): a tensor or memory-mapped shard rows
        n = len(data)
        take = max(1, min(n, COUNT_TOKENS // max(1, data.shape[1])))
        idx = torch.linspace(0, n - 1, take).round().long().unique()  # (take,) evenly spread, in order
        counts = torch.zeros(V, dtype=torch.long)
        for chunk in idx.split(4096):  # bounded memory for shard-backed rows
            counts += torch.bincount(torch.as_tensor(data[chunk]).reshape(-1).long(), minlength=V)[:V]
        specials = {tokenizer.pad_id, tokenizer.eos_id, tokenizer.mask_id}
        model.token_info.copy_(spindle_info(counts, specials).to(model.token_info.device))

    def loss(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> Loss:
        return mdlm_loss(model, ids, generator, spindle_lambda=spindle_lambda(cfg))

    def nll_bound(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The NELBO of each row (nats/token), averaged over ``NLL_TIMES`` stratified times per row (one copy
        of the row per time, t_k = (k + u) / K); with ``given``, of the other tokens given those. Under the
        spindle it is DiffusionBERT's objective rather than a bound (``likelihood_kind``; module docstring)."""
        lam = spindle_lambda(cfg)
        L = ids.shape[1]
        rows = [
            mdlm_loss(
                model,
                row[None].expand(NLL_TIMES, L),
                generator,
                spindle_lambda=lam,
                given=None if given is None else given[i][None].expand(NLL_TIMES, L),
            )[0]
            for i, row in enumerate(ids)
        ]
        return torch.stack(rows)

    def greedy(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        given: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
    ) -> torch.Tensor:
        """With every scored position masked, each scored token is the argmax of the model's prediction."""
        keep = given.bool()
        z = torch.where(keep, ids, torch.full_like(ids, model.mask_id))
        blocks = 0 < getattr(model, "block_size", 0) < ids.shape[1]  # a block model reads the true earlier blocks
        best = (model(z, clean=ids) if blocks else model(z)).argmax(-1)  # (B, L)
        return ((best == ids) | keep).all(-1)

    def likelihood_kind(self, cfg: Config) -> str:
        """A bound under the linear schedule; under the spindle the objective omits a term of either sign."""
        return "objective (spindle: not a bound)" if spindle_lambda(cfg) else self.nll_kind

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A layout's given tokens start (and stay) unmasked; the spindle reveals by its own kernel. A block
        model (diffusion.block_size, BD3-LM) writes block by block with a KV cache, ``steps`` per block, and
        rows end at end-of-text (``sedlm.sampling.blocks``)."""
        kw = dict(
            pad_id=lm.tokenizer.pad_id,
            temperature=request.options["temperature"],
            spindle_lambda=spindle_lambda(lm.config),
        )
        bs = lm.config.diffusion.block_size
        if not 0 < bs < request.seq_len:
            g = torch.Generator(device=lm.device).manual_seed(request.seed)
            kw.update(generator=g, callback=callback, layout=request.layout)
            return mdlm_sample(lm.model, request.n, request.seq_len, request.steps, **kw)[0]
        check_blockwise(request, bs)

        def one_block(view: Any, n: int, length: int, seed: int, part: Any, step_cb: Any) -> torch.Tensor:
            g = torch.Generator(device=lm.device).manual_seed(seed)
            return mdlm_sample(view, n, length, request.steps, generator=g, callback=step_cb, layout=part, **kw)[0]

        return sample_blocks(
            lm.model,
            one_block,
            n=request.n,
            seq_len=request.seq_len,
            block_size=bs,
            seed=request.seed,
            layout=request.layout,
            pad_id=lm.tokenizer.pad_id,
            eos_id=lm.tokenizer.eos_id if request.options["stop_at_eos"] else None,
            use_cache=request.options["use_cache"],
            callback=callback,
        )

    def preview(self, lm: Any, info: dict[str, Any], layout: Any) -> torch.Tensor | None:
        """The partly revealed tokens, still-masked positions shown as nothing."""
        z = info.get("z")
        if z is None:
            return None
        shown = torch.where(z == lm.model.mask_id, torch.full_like(z, lm.tokenizer.pad_id), z)
        return torch.cat([info["prefix"], shown], dim=1) if "prefix" in info else shown  # block models: row so far


FAMILY = MDLMFamily()
