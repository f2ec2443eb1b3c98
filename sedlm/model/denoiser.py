"""The SED denoiser (Strudel et al. 2022, "Self-conditioned Embedding Diffusion for Text Generation", §3).

    h_in   = W_in [x_t ; x0_sc ; c ; m]              per position, -> d_model
    h      = Transformer(h_in + MLP(sin(t)))        ("add", the paper) or adaLN(MLP(sin(t))) (DiT)
    x0_hat = W_out h                                (B, L, d_embed)
    logits = R x0_hat,  R initialised to E^T        (B, L, V)

LangFlow's pieces (Chen et al. 2026, arXiv 2604.11748; its released model code) as options:
``self_cond_init="zero"`` starts the x0_sc block of W_in at zero, and ``logit_skip`` adds to interp
logits the exact token posterior of the state alone, c_skip(t) <x_t, E_v> with c_skip = alpha_t / sigma_t^2:
log N(x_t; alpha_t E_v, sigma_t^2 I) = c_skip <x_t, E_v> + const(v) when every row has the same norm.

With ``x0_estimate="interp"`` (CDCD's score interpolation, Dieleman et al. 2022) the estimate is
instead the expected embedding under the predicted token distribution,
    logits = W_logits h,  x0_hat = softmax(logits / tau) E,
with logits read from the d_model features directly (a full-rank head, as in CDCD: going through
the d_embed-wide x0 first would cap the logits at rank d_embed),
so every estimate lies in the convex hull of the embedding rows; tau is the score temperature.

``c`` is the clean embedding of given (conditioning) positions and ``m`` marks them; both are
zero for unconditional generation. ``t`` is one time per row (B,) or one per position (B, L); a
denoiser built with ``position_warp`` (SeqDiffuSeq's adaptive per-position schedule, see
``sedlm.diffusion.timewarp``) reads a shared time u (B,) as t_i = F_i^-1(u) at each position i.
Inputs x_t are variance-preserving states; with ``path="flow"`` (flow matching) the network is fed the
straight path's state instead, x_t * path_scale(abar_t) = (1 - t') x0 + t' eps at the same log-SNR, so
samplers and objective stay those of the VP process (``sedlm.diffusion.schedules.flow``).
No loss, device or autocast logic lives here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from sedlm.config import Config, ModelConfig
from sedlm.diffusion.schedules import get_schedule, path_scale
from sedlm.diffusion.timewarp import BINS as WARP_BINS
from sedlm.diffusion.timewarp import unwarp_rows
from sedlm.model.embedding import EmbeddingSpace
from sedlm.model.transformer import Transformer, clean_side

W_SCALE = 10.0  # guidance weights (~0.5 to 5) enter the sinusoidal features as w / 10, times near [0, 1]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000 as in DDPM). (...,) -> (..., dim)"""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class SEDDenoiser(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        embedding: EmbeddingSpace,
        x0_estimate: str = "direct",
        time_warp: bool = False,
        position_warp: int = 0,
        path: str = "vp",
        schedule: Callable[[torch.Tensor], torch.Tensor] | None = None,
        block_size: int = 0,
        warp_fit: str = "isotonic",
        guidance_input: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        if path not in ("vp", "flow") or (path == "flow" and schedule is None):
            raise ValueError("path is 'vp' or 'flow' (which needs the schedule)")
        self.path, self.schedule = path, schedule
        self.x0_estimate = x0_estimate
        if time_warp:  # CDCD time warping state (sedlm/diffusion/timewarp.py); saved with the weights
            self.register_buffer("time_warp", torch.linspace(0, 1, WARP_BINS + 1))
            self.register_buffer("warp_sums", torch.zeros(WARP_BINS))
            self.register_buffer("warp_counts", torch.zeros(WARP_BINS))
            if warp_fit == "gumbel":  # LangFlow's proposal: the fitted (mu, beta, H), for the record
                self.register_buffer("warp_gumbel", torch.tensor([0.0, 1.0, 0.0]))
        else:
            self.time_warp = None
        if position_warp:  # SeqDiffuSeq: one warp per position (position_warp = the training row length)
            self.register_buffer("position_knots", torch.linspace(0, 1, WARP_BINS + 1).repeat(position_warp, 1))
            self.register_buffer("position_sums", torch.zeros(position_warp, WARP_BINS))
            self.register_buffer("position_counts", torch.zeros(position_warp, WARP_BINS))
        else:
            self.position_knots = None
        self.block_size = block_size  # 0: the whole row
        d, de = cfg.d_model, cfg.d_embed
        self.embedding = embedding
        self.inp = nn.Linear(3 * de + 1, d)
        if cfg.self_cond_init == "zero":
            with torch.no_grad():
                self.inp.weight[:, de : 2 * de].zero_()  # columns reading x0_sc
        if cfg.logit_skip and (x0_estimate != "interp" or schedule is None):
            raise ValueError("logit_skip needs x0_estimate='interp' and the schedule")
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        # ELF: the self-conditioning guidance weight w, embedded like t and added to its embedding
        self.w_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if guidance_input else None
        self.backbone = Transformer(
            d, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, causal=False, adaln=cfg.time_cond == "adaln"
        )
        if x0_estimate == "direct":
            self.out = nn.Linear(d, de)
            self.readout = nn.Linear(de, cfg.vocab_size)
            with torch.no_grad():
                self.readout.weight.copy_(embedding.weight)  # R = E^T: logits_i = <x0_hat, E_i>
                self.readout.bias.zero_()
        else:
            self.logits_head = nn.Linear(d, cfg.vocab_size)  # (d_model -> V), full rank

    @classmethod
    def from_config(cls, cfg: Config, table: torch.Tensor) -> SEDDenoiser:
        """The denoiser a config describes, over the embedding ``table`` (V, d_embed); the table is frozen
        unless embed.kind=learned."""
        return cls(
            cfg.model,
            EmbeddingSpace(table, learned=cfg.embed.kind == "learned"),
            cfg.diffusion.x0_estimate,
            time_warp=cfg.diffusion.time_warp,
            position_warp=cfg.data.seq_len if cfg.diffusion.position_warp else 0,
            path=cfg.diffusion.path,
            schedule=get_schedule(cfg.diffusion.schedule, cfg.diffusion.logsnr_shift),
            block_size=cfg.diffusion.block_size,
            warp_fit=cfg.diffusion.warp_fit,
            guidance_input=cfg.diffusion.guidance_input,
        )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)  # (B, L) -> (B, L, d_embed)

    def interpolate(self, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Expected embedding softmax(logits / temperature) E. (B, L, V) -> (B, L, De)"""
        scaled = logits.float() if temperature == 1 else logits.float() / temperature  # no (B, L, V) pass at tau = 1
        return torch.softmax(scaled, dim=-1).to(logits.dtype) @ self.embedding.weight

    def position_times(self, u: torch.Tensor, L: int) -> torch.Tensor:
        """Each position's time t_i = F_i^-1(u) under the per-position warp (positions past the trained
        row length use the last one's). (...,) -> (..., L)"""
        assert self.position_knots is not None, "built without position_warp"
        P = len(self.position_knots)
        knots = self.position_knots[torch.arange(L, device=u.device).clamp(max=P - 1)]  # (L, B + 1)
        return unwarp_rows(knots, u)

    def decode_logits(self, x0: torch.Tensor) -> torch.Tensor:
        """Token scores of a final estimate: the readout for direct estimates; for interpolated ones
        the nearest embedding row (rows have equal norms, so <x0, E_i> ranks by distance). (B, L, V)"""
        return self.readout(x0) if self.x0_estimate == "direct" else x0 @ self.embedding.weight.t()

    def forward(
        self,
        x_t: torch.Tensor,  # (B, L, De)
        t: torch.Tensor,  # (B,) or (B, L) in [0, 1]
        self_cond: torch.Tensor | None = None,  # (B, L, De) previous x0 estimate, or zeros
        cond: torch.Tensor | None = None,  # (B, L, De) clean embeddings of given positions
        cond_mask: torch.Tensor | None = None,  # (B, L) 1 where the position is given
        score_temp: float = 1.0,  # tau of interpolated estimates (ignored for direct ones)
        *,
        clean: torch.Tensor | None = None,  # (B, P) ids, block diffusion: the clean blocks, read without a cache
        offset: int = 0,  # the row position of x_t's first token (block diffusion)
        cache: list[dict[str, torch.Tensor]] | None = None,  # block diffusion: the clean blocks' keys and values
        pending: torch.Tensor | None = None,  # (B, P) ids, with cache: finished blocks not in it yet
        w: torch.Tensor | float | None = None,  # (B,) self-conditioning guidance weight (guidance_input); None: 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat (B, L, De), logits (B, L, V)). Block diffusion (``block_size``) reads the clean blocks
        before x_t's in one of two equal ways: ``clean`` runs them beside x_t under the block mask
        (``block_attention_mask``; training feeds the whole clean row), ``cache`` reads their keys and
        values. ``pending`` blocks (the last finished ones, at row positions offset - P..offset - 1) run
        beside x_t under the same mask and this call appends their keys and values to ``cache``: one pass
        writes a finished block and denoises the next."""
        h, temb = self._features(x_t, t, self_cond, cond, cond_mask)
        if self.w_mlp is not None:  # w = 1 is the plain self-conditioned estimate
            w = torch.as_tensor(1.0 if w is None else w, device=x_t.device, dtype=torch.float32).expand(x_t.shape[0])
            wemb = self.w_mlp(timestep_embedding(w / W_SCALE, self.cfg.d_model).to(h.dtype))  # (B, D)
            temb = temb + (wemb if temb.dim() == 2 else wemb[:, None])
        L = x_t.shape[1]
        side = clean_side(clean, pending, L, x_t.shape[0], self.block_size, offset)
        if side is not None:  # [noisy ; clean] under the block mask, both with their row positions
            hc, tc = self._clean_features(self.embed(side.ids))
            h = torch.cat([h, hc], dim=1)  # (B, L + P, D)
            temb = torch.cat([temb[:, None].expand(-1, L, -1) if temb.dim() == 2 else temb, tc], dim=1)
            h = self._backbone(
                h,
                temb,
                cache=None if side.tail is None else cache,
                mask=side.mask,
                positions=side.positions,
                append=False,
                tail=side.tail,
            )[:, :L]
        elif cache is not None:
            h = self._backbone(h, temb, cache=cache, append=False)
        else:
            h = self._backbone(h, temb)
        return self._head(h, score_temp, x_t, t)

    def new_cache(self) -> list[dict[str, torch.Tensor]]:
        return [{} for _ in self.backbone.blocks]

    def _features(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        self_cond: torch.Tensor | None,
        cond: torch.Tensor | None,
        cond_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_in = W_in [x_t ; x0_sc ; c ; m] (B, L, D) and the time embedding (B, D) or (B, L, D)."""
        B, L, _ = x_t.shape
        zeros = torch.zeros_like(x_t)
        self_cond = zeros if self_cond is None else self_cond
        cond = zeros if cond is None else cond
        mask = x_t.new_zeros(B, L, 1) if cond_mask is None else cond_mask[..., None].to(x_t.dtype)
        if self.position_knots is not None and t.dim() == 1:
            t = self.position_times(t, L)  # (B, L)
        if self.path == "flow":  # the straight path's state at this noise level
            scale = path_scale(self.schedule(t.float()))
            x_t = x_t * (scale[:, None, None] if t.dim() == 1 else scale[..., None]).to(x_t.dtype)
        h = self.inp(torch.cat([x_t, self_cond, cond, mask], dim=-1))  # (B, L, D)
        return h, self.time_mlp(timestep_embedding(t, self.cfg.d_model).to(h.dtype))

    def _clean_features(self, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A finished block as the network reads it: every position given (its clean embedding as state,
        estimate and condition) at t = 0. (B, P, De) -> (B, P, D), (B, P, D)"""
        t = clean.new_zeros(clean.shape[:2])  # (B, P)
        return self._features(clean, t, clean, clean, torch.ones_like(t))

    def _backbone(self, h: torch.Tensor, temb: torch.Tensor, **kw) -> torch.Tensor:
        if self.cfg.time_cond == "add":
            return self.backbone(h + (temb[:, None] if temb.dim() == 2 else temb), **kw)
        return self.backbone(h, cond=temb, **kw)

    def logit_skip(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """c_skip(t) <x_t, E_v>, c_skip = alpha_t / sigma_t^2 (LangFlow), in fp32. (B, L, De) -> (B, L, V)"""
        if self.position_knots is not None and t.dim() == 1:
            t = self.position_times(t, x_t.shape[1])  # (B, L)
        abar = self.schedule(t.float())
        c = abar.sqrt() / (1 - abar).clamp(min=1e-6)  # sigma_t^2 -> 0 at t = 0: a sharp but finite posterior
        c = c[:, None, None] if c.dim() == 1 else c[..., None]
        return c * (x_t.float() @ self.embedding.weight.float().t())

    def _head(
        self, h: torch.Tensor, score_temp: float, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.x0_estimate == "interp":
            logits = self.logits_head(h)  # (B, L, V)
            if self.cfg.logit_skip:
                logits = (logits.float() + self.logit_skip(x_t, t)).to(logits.dtype)
            return self.interpolate(logits, score_temp), logits
        x0_hat = self.out(h)  # (B, L, De)
        return x0_hat, self.readout(x0_hat)  # (B, L, V)
