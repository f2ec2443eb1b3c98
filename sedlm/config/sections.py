"""The sections of the configuration as nested dataclasses: every default lives here and only here."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 2  # 2: autoregressive rows start at a row-start token (ar.row_start)


@dataclass
class ModelConfig:
    """Denoiser backbone (Strudel et al. 2022, §3)."""

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    d_embed: int = 64
    dropout: float = 0.0
    time_cond: str = "add"  # "add" (paper: sinusoidal -> MLP added to the input) or "adaln" (DiT)
    # "zero": the self-conditioning estimate's input weights start at zero, so it enters as a residual
    # learned from nothing (LangFlow's zero-initialised projection of [x_t ; x0_sc]); "default": as the rest
    self_cond_init: str = "default"
    # LangFlow's skip term (interp estimates): logits += alpha_t / sigma_t^2 <x_t, E_v>, the exact token
    # posterior of the noisy state for independent tokens over equal-norm rows; the network learns the rest
    logit_skip: bool = False
    vocab_size: int = 0  # filled from the tokenizer when 0


@dataclass
class EmbedConfig:
    """The frozen embedding space E (Strudel et al. 2022, §3.1) and the masked LM that learns it."""

    # "mlm" (masked LM of `sedlm embed`, the paper), "ppmi" (truncated SVD of the training text's PPMI
    # co-occurrence matrix: seconds, no training), "random" (frozen random), "learned" (joint, normalised),
    # "bits" (Analog Bits: the token id's binary code as +-1 values; d_embed becomes ceil(log2 V)),
    # "pretrained" (the paper's choice: PCA of a pretrained model's input embeddings, see `pretrained`)
    kind: str = "mlm"
    # kind=pretrained: "minilm" (bundled all-MiniLM-L6-v2), "smollm2" (bundled SmolLM2-135M), or a local
    # model folder / Hugging Face hub name; the run then uses that model's tokenizer (data.tokenizer and
    # data.vocab_size are ignored). See sedlm/model/pretrained_table.py
    pretrained: str = ""
    path: str = ""  # an embeddings.safetensors written by `sedlm embed`; built on the fly if empty
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    mask_prob: float = 0.15
    max_minutes: float = 0.0  # wall-clock cap for the masked LM stage; 0 means no cap
    seed: int = 1
    window: int = 4  # ppmi: co-occurrence window (tokens on each side)


@dataclass
class DiffusionConfig:
    """Forward process and SED objective (Strudel et al. 2022, §3)."""

    schedule: str = "cosine"
    logsnr_shift: float = 0.0  # added to the schedule's log-SNR; negative = more time at high noise
    # CDCD time warping: fit the loss as a function of t during training, draw t where it changes fastest,
    # and offer the fitted warp as a sampling grid (sample.time_grid=warped); stored in the checkpoint
    time_warp: bool = False
    # how the warp is fitted: "isotonic" (CDCD: monotone piecewise-linear in t) or "gumbel" (LangFlow: the loss
    # as H times a Gumbel CDF in -log SNR, so noise levels are drawn from that Gumbel and steps sit at its quantiles)
    warp_fit: str = "isotonic"
    # SeqDiffuSeq's adaptive noise schedule: one warp per position, fitted so that each position's loss
    # rises linearly along a shared time u (training draws u, samplers step uniformly in u); ddpm/ddim only
    position_warp: bool = False
    # block diffusion (BD3-LM, Arriola et al. 2025): rows are cut into blocks of this many tokens, each
    # denoised given the clean blocks before it (a KV cache when sampling); 0 = the whole row (plain SED)
    block_size: int = 0
    sigma0: float = 1e-2
    # "vp": the network sees the variance-preserving state; "flow": flow matching's straight path
    # x_t = (1 - t) x0 + t eps (use with schedule=flow; sedlm/diffusion/schedules.py)
    path: str = "vp"
    # training times: "uniform" t ~ U[0, 1], or "logit_normal" t = sigmoid(time_mean + time_std * n)
    # (Esser et al. 2024), which spends more steps at middle noise levels
    time_dist: str = "uniform"
    time_mean: float = 0.0
    time_std: float = 1.0
    # weight of the x0 MSE: "x0" (1) or "velocity" (1 / t'^2 with t' the straight path's time at that noise
    # level, capped at 100: the flow-matching velocity loss ||v - v_hat||^2 written for an x0 estimate)
    mse_weighting: str = "x0"
    self_cond: str = "both"  # "both" (paper), "half_nograd" (Analog Bits), "off"
    # "direct": x0_hat is regressed (the paper); "interp": x0_hat = softmax(logits) E, the expected
    # embedding under the model's token distribution (CDCD score interpolation; train with mse_weight=0)
    x0_estimate: str = "direct"
    mse_weight: float = 1.0
    ce_weight: float = 1.0
    # Diffusion-LM's rounding term: CE of the readout applied to the clean x0 itself (not to x0_hat),
    # which keeps learned embeddings decodable (Li et al. 2022, eq. 2's L_round)
    round_weight: float = 0.0
    p_uncond: float = 0.1
    # ELF's self-conditioning guidance trained into the network: a guidance weight w is an input (embedded like
    # t), drawn per example with log(1 + w) uniform on [log(1 + w_min), log(1 + w_max)]; on self-conditioned
    # examples the regression target is x0 + (1 - 1/w)(x0_c - x0_u), x0_u the estimate without
    # self-conditioning and x0_c with it (both without gradient), so the output at w is
    # x0_u + w (x0 - x0_u): guidance in one call (sample with the family option sc_weight). Needs
    # self_cond=half_nograd
    guidance_input: bool = False
    guidance_w_min: float = 0.5
    guidance_w_max: float = 5.0
    # Conditioning kinds trained on (sedlm/data/masks.py): SED's span masking (which includes
    # unconditional rows, n = 1), prompt prefixes, and free-length blanks (text then padding inside a
    # window, so that `[___]` blanks get text of a fitting length); "none" trains unconditional only.
    cond_masks: str = "span:0.6,prefix:0.2,blank:0.2"


@dataclass
class DataConfig:
    """Text source, tokenizer and packing."""

    source: str = "corpus:shakespeare"
    task: str = "lm"  # "lm" (packed text) or "seq2seq" (a .jsonl of {"src", "tgt"} pairs, one per row)
    # "bpe" (train a byte-level BPE), "word" (train a word-level tokenizer with an unknown token),
    # "gpt2" (bundled GPT-2 BPE), or a tokenizer.json / folder; embed.kind=pretrained
    # overrides it with the pretrained model's tokenizer
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    seq_len: int = 64
    # seq2seq only (on by default there, TASK_DEFAULTS): rows hold one pair and then padding, so while every
    # pair fits in half a row the rows are halved and train.batch_size doubled (a step sees as many tokens);
    # the run's config records the resulting data.seq_len and train.batch_size
    fit_rows: bool = False
    pad_fraction: float = 0.1
    val_fraction: float = 0.05
    split_seed: int = 0
    max_chars: int = 0  # use at most this many characters of training text; 0 means all


@dataclass
class TrainConfig:
    """Optimisation loop."""

    max_steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 500
    max_minutes: float = 0.0  # wall-clock budget; 0 means run max_steps
    device: str = "auto"
    # batch_size is the global batch (rows of data.seq_len tokens) whatever the process count; each
    # process splits its share into micro-batches of this many rows (gradient accumulation); 0 = no split
    micro_batch_size: int = 0
    strategy: str = "ddp"  # several processes: "ddp" (replicated model) or "fsdp" (sharded, for large models)
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16", "fp32"
    compile: bool = False  # torch.compile the model for training
    # experiment trackers, comma-separated, through Accelerate (metrics.jsonl is always written): "none",
    # tensorboard (event files in <out>/sedlm; extra sedlm[trackers]), wandb, mlflow, comet_ml, aim,
    # clearml, dvclive (each needs its own package and account)
    report_to: str = "none"


TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")


@dataclass
class SampleConfig:
    """Defaults for `sedlm sample` and `SED.generate`. Sampling options that one family or one sampler
    declares (e.g. ``temperature``, ``top_p``, ``eta``, ``churn``, ``time_delta``) are set here too, as
    ``sample.NAME=value``; they are kept in ``options`` and checked against their declarations."""

    sampler: str = "ddpm"
    steps: int = 1000
    time_grid: str = "uniform"  # uniform | karras | cosine: where the steps sit in [0, 1]
    rho: float = 7.0  # karras grid: higher rho puts more steps at low noise
    n: int = 4
    guidance: float = 1.0
    # "cond": guidance on the given tokens (prompt, template, source); unconditional requests then run
    # unguided. "self_cond": guidance on the self-conditioning estimate, for any request (2 calls/step)
    guidance_mode: str = "cond"
    seed: int = 0
    noise_temp: float = 1.0  # scale of the fresh noise of stochastic samplers (< 1 trades diversity for NLL)
    score_temp: float = 1.0  # softmax temperature of interp x0 estimates (diffusion.x0_estimate=interp)
    clamp: bool = False  # snap every x0 estimate to its nearest embedding row (Diffusion-LM clamping)
    compile: bool = False  # torch.compile the denoiser for sampling (pays off for long runs on a GPU)
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16" (CUDA only), "fp32"
    options: dict[str, Any] = field(default_factory=dict)  # declared options of a family or sampler (see above)


@dataclass
class Config:
    """The shared sections, plus ``settings``: the sections of settings a family owns (``mdlm.mask_schedule``),
    keyed by the family's name, declared and checked by the family (``sedlm.families.check_config``)."""

    family: str = "sed"
    recipe: str = ""  # the named recipe (sedlm recipes) this config was made with, if any
    model: ModelConfig = field(default_factory=ModelConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Nested dict: the sample section's options sit among its keys, each family's settings form a
        section named after the family (the shape ``from_dict`` and YAML files use)."""
        d = dataclasses.asdict(self)
        d["sample"].update(d["sample"].pop("options"))
        settings = d.pop("settings")
        version = d.pop("format_version")
        return {**d, **settings, "format_version": version}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def copy(self) -> Config:
        return copy.deepcopy(self)
