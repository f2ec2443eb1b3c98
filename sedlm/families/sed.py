"""``sed``: Self-conditioned Embedding Diffusion (Strudel et al. 2022, arXiv 2211.04236).

Tokens become rows of a frozen embedding table; a bidirectional Transformer denoises them with
self-conditioning, conditioned on span-masked given positions; any registered sampler writes text from
noise, after a prompt, around blanks or from a seq2seq source.

Where SED's parts live. Unlike the baselines (one module each), SED's parts sit in the shared layers,
because they are the toolkit's continuous-diffusion machinery that every embedding-space recipe (cdcd,
diffusion-lm, difformer, analog-bits, flow-matching, ...) reuses and that tests check on their own:
    sedlm/model/embedding.py         the frozen (or learned) embedding space E and its readout
    sedlm/model/pretrained_table.py  tables taken from pretrained models
    sedlm/model/denoiser.py          the denoiser (x_t, t, self_cond, cond, mask) -> x0_hat, logits;
                                     ``SEDDenoiser.from_config`` builds it
    sedlm/diffusion/schedules.py     noise schedules and time grids; timewarp.py: CDCD/SeqDiffuSeq warps
    sedlm/diffusion/objective.py     the loss with two-pass self-conditioning and CFG dropout
    sedlm/diffusion/likelihood.py    the variational bound on -log p
    sedlm/data/masks.py              span/prefix/blank conditioning masks
    sedlm/sampling/samplers.py       samplers + registry (each entry declares its options)
    sedlm/sampling/generate.py       guidance, given positions held clean, decoding
    sedlm/train/embed.py             the masked LM / PPMI table of ``sedlm embed``
This module only ties them to the family protocol (``sedlm.families.base.Family``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sedlm.config import Config
from sedlm.data.masks import conditioning, parse_mixture
from sedlm.data.tokenizer import Tokenizer
from sedlm.diffusion.likelihood import embedding_vlb
from sedlm.diffusion.objective import sed_loss
from sedlm.diffusion.schedules import TIME_GRIDS, get_schedule
from sedlm.diffusion.timewarp import update_warps
from sedlm.errors import SedlmError
from sedlm.families.base import (
    STOP_AT_EOS,
    USE_BLOCK_CACHE,
    Callback,
    Family,
    Loss,
    Request,
    check_blockwise,
    scored_count,
)
from sedlm.model.denoiser import SEDDenoiser
from sedlm.options import Option
from sedlm.sampling.blocks import sample_blocks
from sedlm.sampling.generate import GUIDANCE_MODES, decode_ids, sample_ids
from sedlm.sampling.samplers import SAMPLERS, check_per_position, get_sampler, sampler_options

SC_WEIGHT_DEFAULT = 3.0  # ELF samples with w = 3


class SEDFamily(Family):
    name = "sed"
    description = "self-conditioned embedding diffusion"
    paper = "Strudel et al. 2022, Self-conditioned Embedding Diffusion for Text Generation (arXiv 2211.04236)"
    val_loss_kind = "SED loss (x0 MSE + CE)"
    nll_kind = "bound"
    uses_embedding_table = True
    samplers = tuple(SAMPLERS)
    frontier_knob = ("score_temp", (0.6, 0.8, 1.0))  # CDCD's score temperature of interp estimates
    summary_options = ("sampler", "guidance", "guidance_mode", "score_temp")
    options = (
        Option(
            "sampler",
            str,
            "sampler: " + ", ".join(f"{k} ({v.description})" for k, v in SAMPLERS.items()),
            "sampler",
            choices=tuple(SAMPLERS),
        ),
        Option(
            "guidance",
            float,
            "classifier-free guidance scale; 1 = none, != 1 doubles the network calls",
            "guidance",
            minimum=0.0,
        ),
        Option(
            "guidance_mode",
            str,
            "guide on the given tokens (cond; unconditional requests then run unguided) "
            "or on the self-conditioning estimate (self_cond, any request)",
            "guidance_mode",
            choices=GUIDANCE_MODES,
        ),
        Option("time_grid", str, "where the steps sit in [0, 1]", "time_grid", choices=tuple(TIME_GRIDS)),
        Option("noise_temp", float, "scale of the fresh noise of stochastic samplers", "noise_temp", minimum=0.0),
        Option("score_temp", float, "softmax temperature of interp x0 estimates", "score_temp", minimum=1e-6),
        Option("clamp", bool, "snap every x0 estimate to the nearest embedding row (Diffusion-LM)", "clamp"),
        Option(
            "sc_weight",
            float,
            "self-conditioning guidance weight fed to a model trained with it (diffusion.guidance_input, ELF): "
            "one call per step; 1 = none",
            default=SC_WEIGHT_DEFAULT,
            minimum=0.0,
        ),
        Option("compile", bool, "torch.compile the denoiser for sampling", "compile", per_request=False),
        USE_BLOCK_CACHE,
        STOP_AT_EOS,
        *sampler_options(),  # each sampler's own options, as its registry entry declares them
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        assert table is not None, "sed is built over an embedding table"
        return SEDDenoiser.from_config(cfg, table)

    def loss(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> Loss:
        """SED loss conditioned on ``given`` positions (seq2seq sources), else on positions drawn from
        the configured conditioning-mask mixture."""
        if given is None and cfg.diffusion.cond_masks != "none":
            ids, given = conditioning(cfg.diffusion.cond_masks, ids, tokenizer.pad_id, generator)
        schedule = get_schedule(cfg.diffusion.schedule, cfg.diffusion.logsnr_shift)
        return sed_loss(model, ids, cfg.diffusion, schedule, generator, cond_mask=given)

    def nll_bound(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Variational upper bound on -log p(row) per token (nats): reconstruction + diffusion + prior terms
        (``sedlm.diffusion.likelihood.embedding_vlb``), 32 log-SNR points per row; with ``given``, of the
        other tokens given those, per scored token."""
        schedule, kw = _likelihood_args(cfg)
        terms = embedding_vlb(model, ids, schedule, generator, given=given, **kw)
        return (terms["total"] / scored_count(ids, given)).float()

    def ode_nll(
        self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator, steps: int
    ) -> torch.Tensor:
        """LangFlow's estimate through the probability-flow ODE (``sedlm.diffusion.likelihood.embedding_ode_nll``),
        its Euler steps placed as the sampler places them when the model samples on its learned warp, else
        uniform in t."""
        from sedlm.diffusion.likelihood import embedding_ode_nll
        from sedlm.diffusion.schedules import time_grid

        schedule, kw = _likelihood_args(cfg)
        kind = "warped" if cfg.sample.time_grid == "warped" else "uniform"
        times = time_grid(steps, kind=kind, schedule=schedule, knots=getattr(model, "time_warp", None))
        return (embedding_ode_nll(model, ids, schedule, generator, times=times, **kw)["total"] / ids.shape[1]).float()

    def greedy(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        given: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
    ) -> torch.Tensor:
        """From pure noise at the scored positions (t = 1, the given tokens conditioning as in sampling), each
        scored token is the argmax of the first estimate's logits."""
        keep = given.bool()
        x = model.embed(ids)  # (B, L, De)
        t = torch.ones(len(ids), device=ids.device)
        ab = get_schedule(cfg.diffusion.schedule, cfg.diffusion.logsnr_shift)(t)[:, None, None]  # (B, 1, 1)
        z = ab.sqrt() * x + (1 - ab).sqrt() * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        m = keep.to(x.dtype)
        blocks = {"clean": ids} if 0 < getattr(model, "block_size", 0) < ids.shape[1] else {}  # true earlier blocks
        best = model(z, t, torch.zeros_like(x), x * m[..., None], m, **blocks)[1].argmax(-1)  # (B, L)
        return ((best == ids) | keep).all(-1)

    def check_config(self, cfg: Config) -> None:
        """The conditioning-mask mixture parses; a position-warped model samples with a sampler and grid that
        can follow per-position schedules."""
        parse_mixture(cfg.diffusion.cond_masks)
        if cfg.model.logit_skip and cfg.diffusion.x0_estimate != "interp":
            raise SedlmError(
                "model.logit_skip adds the state's token posterior to the logits of interp estimates; "
                "set diffusion.x0_estimate=interp (or drop model.logit_skip)"
            )
        d = cfg.diffusion
        if d.guidance_input and d.self_cond != "half_nograd":
            raise SedlmError(
                "diffusion.guidance_input trains guidance against a gradient-free first pass; "
                "set diffusion.self_cond=half_nograd"
            )
        if d.guidance_input and not 0 <= d.guidance_w_min <= d.guidance_w_max:
            raise SedlmError("diffusion.guidance_w_min and guidance_w_max must satisfy 0 <= min <= max")
        if cfg.diffusion.warp_fit != "isotonic" and not cfg.diffusion.time_warp:
            raise SedlmError(
                f"diffusion.warp_fit={cfg.diffusion.warp_fit} fits the time warp; set diffusion.time_warp=true"
            )
        if cfg.diffusion.position_warp:
            check_per_position(cfg.sample.sampler, cfg.sample.time_grid)

    def after_step(
        self,
        model: nn.Module,
        metrics: dict[str, torch.Tensor],
        step: int,
        gather: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        update_warps(model, metrics, step, gather)  # CDCD's time warp and SeqDiffuSeq's per-position schedules

    def frontier(self, cfg: Config) -> tuple[str, tuple[float, ...]]:
        """Interp estimates: CDCD's score temperature. Direct estimates: the noise temperature of a
        stochastic sampler; a deterministic one has no temperature to sweep (one point)."""
        if cfg.diffusion.x0_estimate == "interp":
            return self.frontier_knob
        if get_sampler(cfg.sample.sampler).stochastic:
            return ("noise_temp", (0.8, 0.9, 1.0))
        return ("noise_temp", (cfg.sample.noise_temp,))

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """The whole row at once, or block by block with a KV cache for a block model (diffusion.block_size;
        ``sedlm.sampling.blocks``), where ``steps`` are per block and rows end at end-of-text."""
        o, bs = request.options, lm.config.diffusion.block_size
        kw = self._sample_kw(lm, request, callback)
        module = _sampling_module(lm, o["compile"])
        if not 0 < bs < request.seq_len:
            return sample_ids(module, n=request.n, seq_len=request.seq_len, **kw)
        check_blockwise(request, bs)
        if kw["guidance"] != 1.0 and kw["guidance_mode"] == "cond":
            raise SedlmError(
                "a block model reads its prompt from the finished blocks, not as given tokens, so guidance on "
                "given tokens has nothing to act on; use --guidance-mode self_cond, or --guidance 1"
            )
        seed, layout, callback = kw.pop("seed"), kw.pop("layout"), kw.pop("callback")

        def one_block(view: Any, n: int, length: int, seed: int, part: Any, step_cb: Any) -> torch.Tensor:
            return sample_ids(view, n=n, seq_len=length, seed=seed, layout=part, callback=step_cb, **kw)

        return sample_blocks(
            module,
            one_block,
            n=request.n,
            seq_len=request.seq_len,
            block_size=bs,
            seed=seed,
            layout=layout,
            pad_id=lm.tokenizer.pad_id,
            eos_id=lm.tokenizer.eos_id if request.options["stop_at_eos"] else None,
            use_cache=o["use_cache"],
            callback=callback,
        )

    def _sample_kw(self, lm: Any, request: Request, callback: Callback | None) -> dict[str, Any]:
        """The arguments of ``sample_ids`` (and of each block's) that a request resolves to."""
        o, cfg = request.options, lm.config
        entry = get_sampler(o["sampler"])
        # the sampler options set away from their default (which is "no effect")
        extra = {d.name: o[d.name] for d in sampler_options() if o[d.name] != d.default}
        if bad := [k for k in extra if k not in entry.option_names]:
            raise SedlmError(
                f"sampler {o['sampler']} takes no {', '.join(bad)}; its options: "
                f"{', '.join(entry.option_names) or 'none'}"
            )
        if not cfg.diffusion.guidance_input and o["sc_weight"] != SC_WEIGHT_DEFAULT:
            raise SedlmError(
                "sc_weight feeds the guidance weight of a model trained with diffusion.guidance_input=true; this "
                "one was not: guide it with --guidance and --guidance-mode self_cond instead"
            )
        return dict(
            steps=request.steps,
            sampler=o["sampler"],
            schedule=cfg.diffusion.schedule,
            logsnr_shift=cfg.diffusion.logsnr_shift,
            time_grid=o["time_grid"],
            rho=cfg.sample.rho,
            guidance=o["guidance"],
            guidance_mode=o["guidance_mode"],
            seed=request.seed,
            score_temp=o["score_temp"],
            clamp=o["clamp"],
            callback=callback,
            layout=request.layout,
            pad_id=lm.tokenizer.pad_id,
            noise_temp=o["noise_temp"],
            self_condition=cfg.diffusion.self_cond != "off",
            sc_weight=o["sc_weight"] if cfg.diffusion.guidance_input else None,
            **extra,
        )

    def preview(self, lm: Any, info: dict[str, Any], layout: Any) -> torch.Tensor | None:
        """The argmax readout of the current x0 estimate (after the finished blocks of a block model)."""
        if "x0_hat" not in info:
            return None
        if "prefix" not in info:
            return decode_ids(lm.model, info["x0_hat"], layout, lm.tokenizer.pad_id)
        block = decode_ids(lm.model, info["x0_hat"], info["block_layout"], lm.tokenizer.pad_id)
        return torch.cat([info["prefix"], block], dim=1)


def _likelihood_args(cfg: Config) -> tuple[Any, dict[str, Any]]:
    """The schedule and the options every likelihood estimate of an SED model reads from its config."""
    schedule = get_schedule(cfg.diffusion.schedule, cfg.diffusion.logsnr_shift)
    return schedule, {"sigma0": cfg.diffusion.sigma0, "self_condition": cfg.diffusion.self_cond != "off"}


def _sampling_module(lm: Any, compile: bool) -> nn.Module:
    """The denoiser, or a cached ``torch.compile`` of it (shapes may vary between calls)."""
    if not compile:
        return lm.model
    if getattr(lm, "_compiled", None) is None:
        lm._compiled = torch.compile(lm.model, dynamic=True)
    return lm._compiled


FAMILY = SEDFamily()
