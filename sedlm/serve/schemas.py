"""Request and response bodies of the HTTP API.

Unknown fields are rejected (422) so that a misspelt option never silently falls back to a default.
Fields left out take the checkpoint's ``config.sample`` defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleOptions(_Strict):
    """Options shared by every sampling endpoint."""

    n: int = Field(1, ge=1, description="number of samples")
    steps: int | None = Field(None, ge=1, description="denoising steps (default: the checkpoint's sample.steps)")
    sampler: str | None = Field(None, description="sed only: ddpm, ddim, euler, heun, dpmpp_2m ...")
    guidance: float | None = Field(None, ge=0.0, le=20.0, description="sed only: classifier-free guidance scale; 1 = none")
    seed: int | None = Field(None, ge=0, description="random seed (default: the checkpoint's sample.seed)")
    seq_len: int | None = Field(None, ge=2, description="canvas length in tokens (default: the checkpoint's data.seq_len)")


class GenerateRequest(SampleOptions):
    """Unconditional (neither field), after a ``prompt``, or from a seq2seq source ``src``."""

    prompt: str | None = Field(None, description="text the samples continue (kept verbatim at their start)")
    src: str | None = Field(None, description="seq2seq source text (only the target is returned)")


class InfillRequest(SampleOptions):
    template: str = Field(description="text with blanks: [___] (the model picks the length) or [___:N] (N tokens)")


class StreamRequest(GenerateRequest):
    """As ``GenerateRequest``, or a ``template`` to infill."""

    template: str | None = Field(None, description="text with [___] / [___:N] blanks (infilling)")


class GenerateResponse(BaseModel):
    texts: list[str]
    method: str
    n: int
    steps: int
    sampler: str | None
    guidance: float | None
    seed: int
    seq_len: int
    tokens: int = Field(description="tokens produced: n x seq_len canvas positions")
    seconds: float = Field(description="time spent sampling, queueing excluded")


class StepEvent(BaseModel):
    step: int = Field(description="denoising steps done so far, 1-based")
    steps: int
    texts: list[str]


class ModelInfo(BaseModel):
    method: str
    params: int
    seq_len: int
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_embed: int | None
    samplers: list[str]
    defaults: dict[str, object]
    limits: dict[str, int]
