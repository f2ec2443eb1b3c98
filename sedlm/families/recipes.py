"""Recipes: named option sets over a model family that reproduce a paper's choices.

A recipe composes with a size config (``sedlm train --config tiny --recipe cdcd``): the size config
sets widths, depths, batch and steps; the recipe sets the method's own choices, and is recorded in the
checkpoint's ``config.recipe``. ``sedlm recipes`` lists them with their paper and what they leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sedlm.config import Config, apply_overrides
from sedlm.errors import SedlmError
from sedlm.families import check_config


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    overrides: tuple[str, ...]
    paper: str
    keeps: str  # what of the paper the recipe reproduces
    leaves_out: str  # what it does not, and how it differs


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "sed-paper",
            "sed",
            (
                "embed.kind=mlm",
                "model.d_embed=64",
                "diffusion.schedule=cosine",
                "diffusion.logsnr_shift=0",
                "diffusion.self_cond=both",
                "diffusion.x0_estimate=direct",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=1",
                "diffusion.round_weight=0",
                "sample.noise_temp=1",
                "sample.score_temp=1",
                "sample.clamp=false",
                "sample.guidance=1",
                "sample.sampler=ddpm",
            ),
            "Strudel et al. 2022, Self-conditioned Embedding Diffusion for Text Generation (arXiv 2211.04236)",
            "frozen masked-LM embedding table (d=64), cosine VP schedule, both self-conditioning passes optimised, "
            "x0 MSE + readout CE, span masking with CFG dropout, ancestral sampling",
            "the paper's table comes from a large pretrained masked LM; "
            "here it is a small one trained on the same text",
        ),
        Recipe(
            "cdcd",
            "sed",
            (
                "embed.kind=learned",
                "diffusion.schedule=ve",
                "diffusion.logsnr_shift=0",
                "diffusion.x0_estimate=interp",
                "diffusion.mse_weight=0",
                "diffusion.ce_weight=1",
                "diffusion.time_warp=true",
                "diffusion.self_cond=both",
                "sample.sampler=euler",
                "sample.time_grid=warped",
            ),
            "Dieleman et al. 2022, Continuous diffusion for categorical data (CDCD, arXiv 2211.15089)",
            "embeddings learned jointly and L2-normalised, score interpolation trained with CE only, the "
            "variance-exploding process with sigma in [t_min, t_max] = [1, 300] (diffusion.schedule=ve, log-SNR "
            "0 to -11.4), time warping (a fitted CDF of the loss over t) for training times and the sampling grid, "
            "the probability-flow ODE integrated with Euler steps, self-conditioning",
            "the network sees the VP-scaled state x / sqrt(1 + sigma^2) (CDCD's input scaling) and t rather than "
            "sigma; the warp is an isotonic fit of binned losses mixed with the identity (10%), not the paper's "
            "piecewise-linear CDF learned by gradient descent; sample.steps comes "
            "from the size config (the paper samples with 200 steps); no span-masking ablations of the paper",
        ),
        Recipe(
            "diffusion-lm",
            "sed",
            (
                "embed.kind=learned",
                "diffusion.schedule=sqrt",
                "diffusion.self_cond=off",
                "diffusion.x0_estimate=direct",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=0",
                "diffusion.round_weight=1",
                "diffusion.p_uncond=0",
                "sample.clamp=true",
            ),
            "Li et al. 2022, Diffusion-LM Improves Controllable Text Generation (arXiv 2205.14217)",
            "embeddings learned end to end with the rounding term -log p(w | x0), the sqrt noise schedule, x0 "
            "prediction, no self-conditioning, the clamping trick during sampling",
            "Diffusion-LM's embeddings are unnormalised (here rows keep norm sqrt(d), which prevents the collapse the "
            "paper's rounding term fights); its classifier-guided control is not reproduced",
        ),
        Recipe(
            "difformer",
            "sed",
            (
                "embed.kind=learned",
                "diffusion.schedule=sqrt",
                "diffusion.logsnr_shift=-2.773",
                "diffusion.x0_estimate=direct",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=1",
                "diffusion.self_cond=half_nograd",
                "sample.sampler=ddpm",
            ),
            "Gao et al. 2022, Difformer: Empowering Diffusion Models on the Embedding Space for Text Generation "
            "(arXiv 2212.09412)",
            "the anchor loss (readout CE on x0_hat) against embedding collapse, normalised learned embeddings, the "
            "sqrt noise schedule of the reference scripts, and their noise factor F = 4: x_t = sqrt(abar) x0 + "
            "F sqrt(1 - abar) eps, which after rescaling the input to unit variance is the VP process with log-SNR "
            "shifted by -2 ln F = -2.773; self-conditioning with a gradient-free first pass half of the time (the "
            "scripts' --self-cond); ancestral sampling",
            "embedding normalisation is an L2 row normalisation, not LayerNorm (no centring); the CE has no label "
            "smoothing (the scripts use 0.1); F is 4 as in the QQP, Wiki-Auto and IWSLT scripts (3.5 for WMT14); its "
            "length predictor and encoder-decoder layout are not reproduced",
        ),
        Recipe(
            "analog-bits",
            "sed",
            (
                "embed.kind=bits",
                "diffusion.x0_estimate=direct",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=0",
                "diffusion.self_cond=half_nograd",
                "sample.time_delta=1",
                "sample.x0_clip=1",
                "sample.sampler=ddim",
            ),
            "Chen et al. 2023, Analog Bits: Generating Discrete Data using Diffusion Models with Self-Conditioning "
            "(arXiv 2208.04202)",
            "tokens as +-1 bit vectors (d = ceil(log2 V)), L2 loss on the bits, self-conditioning with a gradient-free "
            "first pass half of the time, asymmetric time intervals (time_delta = 1 step: the network and the step's "
            "eps both at the later time t_now, as Alg. 2) with DDIM, x0_hat clipped to [-1, 1] inside each step "
            "(the bit scale b = 1), decoding by the nearest code (equal to thresholding the bits)",
            "the paper's bit scale and time_delta were tuned for images; ids beyond V decode to the nearest valid code",
        ),
        Recipe(
            "seqdiffuseq",
            "sed",
            (
                "embed.kind=learned",
                "diffusion.schedule=sqrt",
                "diffusion.position_warp=true",
                "diffusion.time_warp=false",
                "diffusion.self_cond=half_nograd",
                "diffusion.x0_estimate=direct",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=0",
                "diffusion.round_weight=1",
                "sample.time_grid=uniform",
                "sample.sampler=ddpm",
            ),
            "Yuan et al. 2022, SeqDiffuSeq: Text Diffusion with Encoder-Decoder Transformers (arXiv 2212.10325)",
            "the adaptive noise schedule: one schedule per position, refitted during training so that each position's "
            "loss rises linearly along the diffusion time, used both to noise training rows and to step the sampler; "
            "self-conditioning (Analog Bits style); DiffuSeq's learned embeddings with the sqrt schedule as the base "
            "and the rounding term; seq2seq with the source given (data.task=seq2seq)",
            "SeqDiffuSeq is an encoder-decoder; here the source is given positions of one bidirectional Transformer "
            "(SED's conditioning channel), and the network is told each position's own time instead of the shared "
            "step; on language-model data the recipe trains on the size config's conditioning masks",
        ),
        Recipe(
            "flow-matching",
            "sed",
            (
                "diffusion.path=flow",
                "diffusion.schedule=flow",
                "diffusion.logsnr_shift=0",
                "diffusion.time_dist=logit_normal",
                "diffusion.time_mean=0",
                "diffusion.time_std=1",
                "diffusion.mse_weighting=velocity",
                "diffusion.x0_estimate=direct",
                "diffusion.self_cond=both",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=1",
                "sample.sampler=ddim",
                "sample.time_grid=uniform",
            ),
            "Lipman et al. 2023, Flow Matching for Generative Modeling (arXiv 2210.02747), in a frozen embedding space "
            "with x-prediction and self-conditioning as ELF and LangFlow (2025) do",
            "the straight path x_t = (1 - t) x0 + t eps fed to the network, x0-prediction trained with the velocity "
            "loss ||v - v_hat||^2 = ||x0 - x0_hat||^2 / t^2 (Lipman et al.'s objective, as ELF's code computes it) "
            "plus the readout CE, self-conditioning, logit-normal training times (Esser et al. 2024), and the flow ODE "
            "integrated by DDIM (exactly Euler's method in t on this path) or any other sampler",
            "LangFlow learns its noise schedule and ELF embeds with a large frozen encoder; here the time distribution "
            "is fixed (diffusion.time_mean / time_std / logsnr_shift move it) and the table is the size config's; the "
            "velocity weight 1 / t^2 is capped at 100 (t >= 0.1) where ELF's code clamps t at 0.05 (a cap of 400)",
        ),
        Recipe(
            "elf",
            "sed",
            (
                "diffusion.path=flow",
                "diffusion.schedule=flow",
                "diffusion.logsnr_shift=-1.386",
                "diffusion.time_dist=logit_normal",
                "diffusion.time_mean=1.5",
                "diffusion.time_std=0.8",
                "diffusion.mse_weighting=velocity",
                "diffusion.x0_estimate=direct",
                "diffusion.self_cond=half_nograd",
                "diffusion.guidance_input=true",
                "diffusion.guidance_w_min=0.5",
                "diffusion.guidance_w_max=5",
                "diffusion.mse_weight=1",
                "diffusion.ce_weight=1",
                "sample.sampler=ddim",
                "sample.time_grid=uniform",
                "sample.sc_weight=3",
            ),
            "ELF (arXiv 2605.10938): flow matching in a frozen embedding space with clean-data prediction and "
            "self-conditioning guidance trained in; checked against its released code (lillian039/ELF)",
            "the straight path with noise twice the data's scale (x_t = t x + (1 - t) 2 eps in ELF's time, here a "
            "log-SNR shift of -2 ln 2), x-prediction with the velocity loss ||x - x_hat||^2 / (1 - t)^2, logit-normal "
            "times (mean -1.5, std 0.8 toward the noise end; mean +1.5 in this project's t, where t = 1 is noise), "
            "self-conditioning half the time behind a gradient-free first pass, and the guidance weight w as a "
            "network input (log(1 + w) uniform, w in [0.5, 5]) with the target x + (1 - 1/w)(x_c - x_u) on "
            "self-conditioned examples, sampled with w = 3 in one call per step",
            "ELF's table is a frozen T5 encoder's output (the offline packages carry none): here it is the size "
            "config's table; tokens are read out by the readout's CE on every step, not by a separate decode mode "
            "(t = 1, per-token noised inputs, 20% of steps) with mode tokens; t and w are added to the input, not "
            "prefix tokens; self-conditioning is drawn per batch, not per example; the sampler is DDIM (Euler) on a "
            "uniform grid, not ELF's stochastic steps (churn 1.5) on a random logit-normal grid; the velocity "
            "weight is capped at 100 (ELF clamps 1 - t at 0.05, a cap of 400); rows keep the size config's random "
            "padding (data.pad_fraction), which ELF's packed rows do not have",
        ),
        Recipe(
            "langflow",
            "sed",
            (
                "embed.kind=learned",
                "diffusion.schedule=cosine",
                "diffusion.logsnr_shift=0",
                "diffusion.x0_estimate=interp",
                "diffusion.mse_weight=0",
                "diffusion.ce_weight=1",
                "diffusion.time_warp=true",
                "diffusion.warp_fit=gumbel",
                "diffusion.self_cond=half_nograd",
                "model.self_cond_init=zero",
                "model.logit_skip=true",
                "model.time_cond=adaln",
                "sample.sampler=ddim",
                "sample.time_grid=warped",
            ),
            "Chen et al. 2026, LangFlow: continuous diffusion for language in embedding space (arXiv 2604.11748); "
            "checked against its released model and inference code (nealchen2003/LangFlow)",
            "a learned embedding table renormalised to norm sqrt(d) at every use; the variance-preserving process; "
            "the clean-token distribution trained with cross-entropy only and the estimate E^T softmax(logits); the "
            "logit skip term alpha/sigma^2 <z, E_v> (the state's exact token posterior) under a learned residual; "
            "self-conditioning on the expected embedding through a zero-initialised input, first pass without "
            "gradient; adaLN time conditioning; a Gumbel proposal over -log SNR fitted to the loss curve (H times "
            "the Gumbel CDF) that draws the training noise levels and places the sampling steps at its quantiles; "
            "the deterministic DDIM step (LangFlow's Euler step in the EDM variable)",
            "the training code is unreleased: the Gumbel is fitted by least squares to binned cross-entropy every 50 "
            "steps from step 100 (uniform times before), with a 0.1% identity floor, not clamped at LangFlow's 1e-5 "
            "quantiles; the self-conditioning rate is 50% (LangFlow's is unpublished); d_embed comes from the size "
            "config (LangFlow's table is as wide as the network) and the network reads the state through its input "
            "projection; the schedule's time t enters the network, not gamma; the grid ends at t = 0, not at the "
            "Gumbel's lowest quantile; the likelihood tables give the VDM bound (the three terms of LangFlow's "
            "released evaluator in its sde mode) and, with --estimator ode, the probability-flow ODE estimate of "
            "its flow mode (Euler steps at the Gumbel's quantiles, one Hutchinson probe a step, Rademacher where "
            "LangFlow's is Gaussian); sedlm's prompt/span conditioning mixture is kept",
        ),
        Recipe(
            "diffusionbert",
            "mdlm",
            ("mdlm.mask_schedule=spindle", "mdlm.spindle_lambda=0.5"),
            "He et al. 2023, DiffusionBERT: Improving Generative Masked Language Models with Diffusion Models "
            "(arXiv 2211.15029)",
            "absorbing-state diffusion with the spindle schedule (informative tokens are masked earlier, by their "
            "unigram information) and time-agnostic decoding (the network has no time input)",
            "DiffusionBERT starts from a pretrained BERT; here the network is trained from scratch at the size config",
        ),
        Recipe(
            "bd3lm",
            "mdlm",
            ("diffusion.block_size=4", "mdlm.mask_schedule=linear"),
            "Arriola et al. 2025, Block Diffusion: Interpolating Between Autoregressive and Diffusion Language "
            "Models (arXiv 2503.09573)",
            "blocks of 4 tokens, each an absorbing-state (MDLM, log-linear) diffusion given the clean blocks before "
            "it; the vectorised training pass (noisy and clean rows under one block mask), one time per block with "
            "antithetic times across blocks and rows, no time input, the NELBO summed over blocks; block-by-block "
            "sampling with a KV cache, ending at end-of-text",
            "the data-driven clipped mask rates (the per-block range [beta, omega] searched during training to "
            "lower the loss variance, with masked fractions resampled into it) are not searched: times span "
            "[1e-3, 1] as in its default config; the reference runs fine-tune from a full-length MDLM, here the "
            "model trains from scratch; each block is sampled with MDLM's ancestral steps (sample.steps per "
            "block), not the first-hitting sampler",
        ),
    ]
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise SedlmError(
            f"unknown recipe '{name}'; valid recipes: {', '.join(RECIPES)} (list them with `sedlm recipes`)"
        )
    return RECIPES[name]


def apply_recipe(cfg: Config, name: str) -> Config:
    """Set ``cfg``'s family and the recipe's options, record the recipe's name, and validate."""
    recipe = get_recipe(name)
    cfg.family = recipe.family
    apply_overrides(cfg, list(recipe.overrides))
    cfg.recipe = recipe.name
    check_config(cfg)
    return cfg
