"""The model-family protocol: everything the trainer, harness, CLI, server and benchmarks need from a
family, so that none of them ever tests a family's name.

A family (``sed``, ``ar``, ``mdlm``, ...) is one module under ``sedlm/families`` holding a ``Family``
subclass instance named ``FAMILY``, plus one line in the registry (``sedlm.families.FAMILIES``). It says
how to build its network, its training and validation losses (and what the validation loss is), which
requests it can serve, which sampling options it takes (the CLI flags, API arguments and server schema
are derived from these declarations; a family running registered samplers also takes each sampler's
declared options), which settings it owns (the config section named after it, e.g. ``mdlm.mask_schedule``)
and how it generates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from sedlm.errors import SedlmError
from sedlm.options import Option

if TYPE_CHECKING:
    from sedlm.config import Config, SampleConfig
    from sedlm.data.tokenizer import Tokenizer
    from sedlm.sampling.templates import Layout

Loss = tuple[torch.Tensor, dict[str, torch.Tensor]]
Callback = Callable[[dict[str, Any]], None]

# What a generation request asks for; ``REQUEST_NAMES`` is how an error message says it.
REQUESTS = ("unconditional", "prompt", "infill", "seq2seq")
REQUEST_NAMES = {
    "unconditional": "unconditional generation",
    "prompt": "prompts",
    "infill": "infilling",
    "seq2seq": "seq2seq sources",
}


class Loaded(Protocol):
    """What a family's ``generate`` and ``preview`` use of a loaded model (``sedlm.pretrained.PretrainedLM``)."""

    config: Config
    model: nn.Module
    tokenizer: Tokenizer

    @property
    def device(self) -> torch.device: ...


@dataclass
class Request:
    """One generation request after checking: ``n`` rows of ``seq_len`` tokens, the canvas of given
    tokens (None: unconditional), and every sampling option of the family resolved to a value."""

    n: int
    seq_len: int
    steps: int
    seed: int
    layout: Layout | None
    kind: str  # one of REQUESTS
    options: dict[str, Any] = field(default_factory=dict)


class Family:
    """Base class of the families; subclasses set the class attributes and the methods marked below."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    val_loss_kind: ClassVar[str] = ""  # what its validation loss is, with units
    nll_kind: ClassVar[str] = ""  # what ``nll_bound`` returns: "exact" or "bound" (an upper bound on -log p)
    uses_embedding_table: ClassVar[bool] = False  # built over a frozen (or learned) V x d_embed table
    pads: ClassVar[bool] = True  # trains on rows with random padding (variable length through padding tokens)
    requests: ClassVar[tuple[str, ...]] = REQUESTS
    # its sampling options (a family that runs registered samplers adds theirs: ``sampler_options``)
    options: ClassVar[tuple[Option, ...]] = ()
    settings: ClassVar[tuple[Option, ...]] = ()  # the settings it owns: config section ``<name>.<setting>``
    # Settings a checkpoint written at format version <= N had implicitly, where today's default differs.
    format_settings: ClassVar[dict[int, dict[str, Any]]] = {}
    samplers: ClassVar[tuple[str, ...]] = ()  # names in sedlm.sampling.samplers.SAMPLERS it can run
    step_callbacks: ClassVar[bool] = True  # calls the callback once per denoising step (progress bars)
    # The sampling option a quality/diversity frontier sweeps, its values, and options held fixed meanwhile.
    frontier_knob: ClassVar[tuple[str, tuple[float, ...]]] = ("temperature", (1.0,))
    frontier_fixed: ClassVar[dict[str, Any]] = {}
    summary_options: ClassVar[tuple[str, ...]] = ()  # options a results row names

    # --- to implement -------------------------------------------------------------------------
    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        raise NotImplementedError

    def loss(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> Loss:
        """Training loss on a batch (B, L) of ids; ``given`` (B, L) marks seq2seq source positions."""
        raise NotImplementedError

    def generate(self, lm: Loaded, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """(n, seq_len) token ids, padding included, given tokens kept verbatim."""
        raise NotImplementedError

    # --- optional -----------------------------------------------------------------------------
    def validation_loss(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> Loss:
        """The loss reported as ``val_loss`` (kind: ``val_loss_kind``); the training loss unless overridden."""
        return self.loss(model, ids, cfg, generator, tokenizer, given)

    def nll_bound(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-row bound on (or exact) -log p(ids) in nats/token, where the family has one. ``given`` (B, L)
        bool: of -log p(the other tokens | the given ones), per scored (not given) token."""
        raise SedlmError(f"family {self.name} has no likelihood or likelihood bound")

    def ode_nll(
        self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator, steps: int
    ) -> torch.Tensor:
        """Per-row -log p(ids) in nats/token through the model's probability-flow ODE (``steps`` Euler steps),
        where the family has one."""
        raise SedlmError(f"family {self.name} has no probability-flow ODE; score it with --estimator bound")

    def greedy(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        given: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
    ) -> torch.Tensor | None:
        """(B,) bool: whether every token not ``given`` (B, L) is the model's single most likely choice there,
        where the family defines one (None: it does not)."""
        return None

    def likelihood_kind(self, cfg: Config) -> str:
        """What ``nll_bound`` returns for a model with config ``cfg``: ``nll_kind`` unless a setting changes it."""
        return self.nll_kind

    def init_from_data(self, model: nn.Module, cfg: Config, rows: Any, tokenizer: Tokenizer) -> None:
        """Called once on a freshly built model before training (not on resume), with the training rows
        (``sedlm.data.packing.PackedRows``): for statistics a family keeps as buffers (saved with the weights)."""

    def after_step(
        self,
        model: nn.Module,
        metrics: dict[str, torch.Tensor],
        step: int,
        gather: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """Called after optimiser step ``step`` with the metrics ``loss`` returned on this process, for state a
        family fits during training (time warps); ``gather`` collects a per-example metric from every process
        (so only the metrics a family uses cross processes)."""

    def frontier(self, cfg: Config) -> tuple[str, tuple[float, ...]]:
        """The option a quality/diversity frontier of a model with config ``cfg`` sweeps, and its values."""
        return self.frontier_knob

    def preview(self, lm: Loaded, info: dict[str, Any], layout: Layout | None) -> torch.Tensor | None:
        """Token ids a sampler callback's ``info`` decodes to (streaming previews); None if it has none."""
        return None

    def check_config(self, cfg: Config) -> None:
        """Checks of the shared sections that only this family makes (called after its settings and
        sampling options were checked against their declarations)."""

    # --- provided -----------------------------------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        return {
            "requests": list(self.requests),
            "samplers": list(self.samplers),
            "options": [o.name for o in self.options],
            "nll_bound": type(self).nll_bound is not Family.nll_bound,
        }

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def setting(self, cfg: Config, name: str) -> Any:
        """The value of this family's setting ``name`` in ``cfg`` (its section, else the declared default),
        checked against the declaration; a name the family does not declare is an error naming the ones it does."""
        decl = next((o for o in self.settings if o.name == name), None)
        if decl is None:
            valid = ", ".join(f"{self.name}.{o.name}" for o in self.settings) or "none"
            raise SedlmError(f"unknown config key '{self.name}.{name}'; family {self.name}'s settings: {valid}")
        section = cfg.settings.get(self.name, {})
        return decl.check(section[name], f"family {self.name}") if name in section else decl.default

    def check_settings(self, cfg: Config) -> None:
        """The config section named after this family: known settings with valid values, or a clear error."""
        for key in cfg.settings.get(self.name, {}):
            try:
                self.setting(cfg, key)
            except SedlmError as e:
                raise SedlmError(f"config key {self.name}.{key}: {e}") from None

    def check_request(self, kind: str) -> None:
        if kind not in self.requests:
            raise SedlmError(
                f"family {self.name} does not support {REQUEST_NAMES.get(kind, kind)}; "
                f"it serves {', '.join(REQUEST_NAMES[k] for k in self.requests)}"
            )

    def resolve_options(self, sample: SampleConfig, given: dict[str, Any]) -> dict[str, Any]:
        """Every declared option's value: ``given`` (checked; None means unset) over the config's
        defaults. An option the family does not declare is an error naming the ones it does."""
        unknown = [k for k, v in given.items() if v is not None and self.option(k) is None]
        if unknown:
            valid = ", ".join(o.name for o in self.options) or "none"
            raise SedlmError(
                f"family {self.name} has no sampling option {', '.join(sorted(unknown))}; its options: {valid}"
            )
        owner = f"family {self.name}"
        return {
            o.name: o.check(given[o.name], owner) if given.get(o.name) is not None else o.default_for(sample, owner)
            for o in self.options
        }

    def summary(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options a results row should name."""
        return {k: options[k] for k in self.summary_options if k in options}


# The sampling option of block diffusion models (``diffusion.block_size``) in every family that has them.
USE_BLOCK_CACHE = Option(
    "use_cache",
    bool,
    "block diffusion (diffusion.block_size): read finished blocks from a KV cache (off: recompute them at every call)",
    default=True,
)


STOP_AT_EOS = Option(
    "stop_at_eos",
    bool,
    "block diffusion: end each row at its first end-of-text token (off: write the whole row, documents "
    "joined by end-of-text, as the other families' samples are)",
    default=True,
)


def check_blockwise(request: Request, block_size: int) -> None:
    """A block model writes whole blocks left to right: the request's length must be whole blocks, and it
    can continue a prompt but not fill blanks or read a seq2seq source."""
    if request.seq_len % block_size:
        raise SedlmError(f"a block model writes whole blocks of {block_size}; ask for a length that it divides")
    if request.kind not in ("unconditional", "prompt"):
        raise SedlmError(
            "a block diffusion model writes left to right: it continues prompts and cannot fill blanks or "
            "take a seq2seq source; use a whole-row model (diffusion.block_size=0) for those"
        )


def request_kind(layout: Layout | None, src: bool = False) -> str:
    """The request a canvas stands for: no canvas is unconditional; given tokens forming a prefix are a
    prompt (or a seq2seq source when ``src``); anything else is infilling."""
    if layout is None:
        return "unconditional"
    if src:
        return "seq2seq"
    given = layout.given.reshape(-1, layout.given.shape[-1])  # (rows, L)
    k = given.sum(-1)  # (rows,)
    prefix = torch.arange(given.shape[-1], device=given.device)[None] < k[:, None]
    return "prompt" if bool((given == prefix).all()) and not bool(layout.no_pad.any()) else "infill"


def scored_count(ids: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor | int:
    """Tokens per row a conditional likelihood counts: those not ``given`` (B,), else the row length."""
    return ids.shape[1] if given is None else (~given.bool()).sum(1).clamp(min=1)


def count_parameters(model: nn.Module) -> int:
    """All parameters and buffers (a frozen embedding table counts; it is part of the model)."""
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
