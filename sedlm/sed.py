"""The user-facing SED object: a trained denoiser, its tokenizer and config.

    from sedlm import SED
    model = SED.from_pretrained("runs/quickstart")
    texts = model.generate(n=4, steps=200, sampler="ddpm", seed=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sedlm.config import Config
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.model.denoiser import SEDDenoiser
from sedlm.model.embedding import EmbeddingSpace
from sedlm.sampling.generate import decode_rows, sample_ids
from sedlm.sampling.samplers import Callback
from sedlm.train.checkpoint import load_checkpoint, save_checkpoint


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SedlmError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


def build_denoiser(cfg: Config, table: torch.Tensor) -> SEDDenoiser:
    """A denoiser over the embedding ``table`` (V, d_embed); frozen unless embed.kind=learned."""
    return SEDDenoiser(cfg.model, EmbeddingSpace(table, learned=cfg.embed.kind == "learned"))


class SED:
    """A self-conditioned embedding diffusion LM ready to generate text."""

    def __init__(self, config: Config, denoiser: SEDDenoiser, tokenizer: Tokenizer):
        self.config = config
        self.denoiser = denoiser.eval()
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "SED":
        """Load a checkpoint folder written by training or ``save_pretrained``."""
        config, weights, tokenizer = load_checkpoint(path)
        table = weights.get("embedding.table")
        if table is None:
            raise SedlmError(f"'{path}/model.safetensors' holds no SED embedding table; is it an SED checkpoint?")
        denoiser = build_denoiser(config, table)
        missing, unexpected = denoiser.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise SedlmError(f"'{path}' does not match the SED model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return cls(config, denoiser.to(resolve_device(str(device))), tokenizer)

    def save_pretrained(self, path: str | Path) -> None:
        """Write config, weights and tokenizer as a checkpoint folder (atomically)."""
        save_checkpoint(path, self.config, self.denoiser.state_dict(), self.tokenizer)

    def to(self, device: str | torch.device) -> "SED":
        self.denoiser.to(device)
        return self

    def generate_ids(
        self,
        n: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        guidance: float | None = None,
        seq_len: int | None = None,
        callback: Callback | None = None,
        **sampler_kw: Any,
    ) -> torch.Tensor:
        """Token ids (n, seq_len) including padding; unset options come from ``config.sample``."""
        s = self.config.sample
        n, steps = n or s.n, steps or s.steps
        if n <= 0 or steps <= 0:
            raise SedlmError(f"n and steps must be positive (got n={n}, steps={steps})")
        return sample_ids(
            self.denoiser,
            n=n,
            seq_len=seq_len or self.config.data.seq_len,
            steps=steps,
            sampler=sampler or s.sampler,
            schedule=self.config.diffusion.schedule,
            guidance=s.guidance if guidance is None else guidance,
            seed=s.seed if seed is None else seed,
            callback=callback,
            **sampler_kw,
        )

    def generate(self, n: int | None = None, **kw: Any) -> list[str]:
        """Generate ``n`` texts; see ``generate_ids`` for the options."""
        return decode_rows(self.generate_ids(n, **kw), self.tokenizer.decode)
