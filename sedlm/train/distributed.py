"""Running the training loop on one process or many, through Hugging Face Accelerate.

Accelerate reads the launcher's environment (``accelerate launch``, ``torchrun``, SLURM ...), sets up
torch.distributed (NCCL on GPUs, gloo on CPUs), picks this process's device and autocast
(bf16 on CUDA, fp32 on CPU). The model is then wrapped for the configured strategy:

    ddp   every process holds the whole model; gradients are averaged (DistributedDataParallel)
    fsdp  parameters, gradients and optimizer state are sharded over the processes (PyTorch
          FSDP2, ``fully_shard`` per Transformer block, then the root); state dicts are gathered
          to full tensors for checkpoints and re-sharded on resume

Batches: the configured ``train.batch_size`` rows is the *global* batch. Each process takes a
contiguous, disjoint slice of it and splits that into micro-batches of ``train.micro_batch_size``
rows; micro-batch ``k`` of the global batch draws its noise from a generator seeded by
(seed, step, k). The loss curve therefore depends on the global and micro batch sizes only, not
on how many processes share the work.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from sedlm.config import Config
from sedlm.devices import resolve_device
from sedlm.errors import SedlmError


def trackers(cfg: Config) -> list[str]:
    """The experiment trackers ``train.report_to`` names (none: an empty list)."""
    return [t.strip() for t in cfg.train.report_to.split(",") if t.strip() and t.strip() != "none"]


def make_accelerator(cfg: Config, project_dir: str | None = None):
    """An ``Accelerator`` for ``train.device`` and ``train.precision`` (bf16 autocast only on CUDA), logging to
    the trackers of ``train.report_to`` (files under ``project_dir``); a tracker whose package is missing is an
    error naming what to install."""
    from accelerate import Accelerator
    from accelerate.utils import is_tensorboard_available

    kind = resolve_device(cfg.train.device).type
    if cfg.train.precision == "bf16" and kind != "cuda":
        raise SedlmError("train.precision=bf16 needs a CUDA device; CPU runs use fp32 (train.precision=auto)")
    bf16 = kind == "cuda" and cfg.train.precision != "fp32" and torch.cuda.is_bf16_supported()
    log_with = trackers(cfg)
    if "tensorboard" in log_with and not is_tensorboard_available():
        raise SedlmError("train.report_to=tensorboard needs TensorBoard: pip install 'sedlm[trackers]' (tensorboardX)")
    return Accelerator(
        cpu=kind == "cpu",
        mixed_precision="bf16" if bf16 else "no",
        log_with=log_with or None,
        project_dir=project_dir,
    )


def tracker_config(cfg: Config) -> dict[str, Any]:
    """The config as flat ``section.key`` scalars, the shape trackers' hyperparameter tables take."""
    flat: dict[str, Any] = {}
    for section, value in cfg.to_dict().items():
        for key, v in value.items() if isinstance(value, dict) else [("", value)]:
            name = f"{section}.{key}" if key else section
            flat[name] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


def micro_batches(cfg: Config, world: int) -> tuple[int, int]:
    """(rows per micro-batch, micro-batches per process and step) for the global ``train.batch_size``."""
    B = cfg.train.batch_size
    if B % world:
        raise SedlmError(
            f"train.batch_size={B} (the global batch) does not split over {world} processes; use a multiple of {world}"
        )
    per_process = B // world
    micro = cfg.train.micro_batch_size or per_process
    if per_process % micro:
        raise SedlmError(
            f"train.micro_batch_size={micro} does not divide the {per_process} rows each of {world} "
            f"processes gets from train.batch_size={B}; pick a divisor of {per_process}"
        )
    return micro, per_process // micro


class Forward:
    """What the loss functions see as "the model": calls go through the distributed (and compiled)
    wrapper, so gradient synchronisation hooks run; attributes come from the plain module."""

    def __init__(self, wrapped: nn.Module, plain: nn.Module):
        self._wrapped, self._plain = wrapped, plain

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self._wrapped(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plain, name)


@dataclass
class Engine:
    accelerator: Any
    model: nn.Module  # the plain module (sharded in place under fsdp): attributes, state dicts
    wrapped: nn.Module  # what forward passes go through
    strategy: str

    @property
    def forward(self) -> Forward:
        return Forward(self.wrapped, self.model)

    @contextlib.contextmanager
    def sync_gradients(self, sync: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.accelerator.num_processes == 1 or sync:
            yield
        elif self.strategy == "fsdp":
            self.model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.model.set_requires_gradient_sync(True)
        else:
            with self.accelerator.no_sync(self.wrapped):
                yield


def wrap_model(
    model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], accelerator, cfg: Config
) -> tuple[Engine, torch.optim.Optimizer]:
    """Shard (fsdp) or replicate (ddp) ``model`` over the processes, optionally ``torch.compile`` it.
    The optimizer is built after sharding, which replaces the parameters."""
    strategy = cfg.train.strategy
    if strategy == "fsdp" and accelerator.num_processes > 1:
        from torch.distributed.fsdp import fully_shard

        # Linear layers return views; the loss never modifies the model's outputs in place.
        warnings.filterwarnings("ignore", message=".*returned a view tensor.*")
        for block in _blocks(model):
            fully_shard(block)
        fully_shard(model)
        optimizer = accelerator.prepare_optimizer(make_optimizer(model))
        wrapped = model
    else:
        wrapped, optimizer = accelerator.prepare(model, make_optimizer(model))
    if cfg.train.compile:
        wrapped = torch.compile(wrapped)
    return Engine(accelerator, model, wrapped, strategy), optimizer


def _blocks(model: nn.Module) -> list[nn.Module]:
    from sedlm.model.transformer import Block

    return [m for m in model.modules() if isinstance(m, Block)]


def full_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """Gather sharded (DTensor) entries to full tensors; a collective under fsdp: every process calls it."""
    return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}


def _place_like(full: torch.Tensor, ref: Any) -> Any:
    """A full tensor laid out as ``ref``: sharded the same way if ``ref`` is a DTensor, else on its device."""
    if isinstance(ref, DTensor):
        return distribute_tensor(full.to(ref.device_mesh.device_type), ref.device_mesh, ref.placements)
    return full.to(ref.device) if torch.is_tensor(ref) else full


def shard_like(full: dict[str, torch.Tensor], like: dict[str, Any]) -> dict[str, Any]:
    """Full tensors laid out as the (possibly sharded) tensors of ``like``, on their devices."""
    return {k: _place_like(v, like.get(k)) for k, v in full.items()}


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state dict with full tensors (a collective under fsdp)."""
    sd = optimizer.state_dict()
    return {"state": {i: full_tensors(s) for i, s in sd["state"].items()}, "param_groups": sd["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, sd: dict[str, Any]) -> None:
    """Load a full optimizer state, laying out each parameter's moment tensors like the parameter."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for i, s in sd["state"].items():
        p = params[int(i)]
        state[int(i)] = {k: _place_like(v, p) if torch.is_tensor(v) and v.shape == p.shape else v for k, v in s.items()}
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
