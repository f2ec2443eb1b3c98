"""Request and response bodies of the HTTP API.

The sampling options of a request are those the served model's family declares
(``sedlm.family.SamplingOption``): ``request_models(family)`` derives the request bodies, and so the
OpenAPI schema, from the declarations. Unknown fields (a misspelt option, or one the family does not
take) are rejected (422) so that they never silently fall back to a default. Fields left out take the
checkpoint's ``config.sample`` defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from sedlm.family import Family


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleOptions(_Strict):
    """Options shared by every sampling endpoint (the family's own options are added to these)."""

    n: int = Field(1, ge=1, description="number of samples")
    steps: int | None = Field(None, ge=1, description="denoising steps (default: the checkpoint's sample.steps)")
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


class Span(BaseModel):
    text: str
    generated: bool = Field(description="true where the model wrote the text, false for the request's given text")


class GenerateResponse(BaseModel):
    texts: list[str]
    spans: list[list[Span]] = Field(description="each text as consecutive given and generated pieces")
    method: str
    n: int
    steps: int
    options: dict[str, Any] = Field(description="the family's sampling options as used (defaults filled in)")
    seed: int
    seq_len: int
    tokens: int = Field(description="tokens produced: n x seq_len canvas positions")
    seconds: float = Field(description="time spent sampling, queueing excluded")


class StepEvent(BaseModel):
    step: int = Field(description="denoising steps done so far, 1-based")
    steps: int
    texts: list[str]
    spans: list[list[Span]]


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
    options: list[dict[str, Any]] = Field(description="the family's sampling options: name, type, help, choices, minimum")
    requests: list[str] = Field(description="what the family serves: unconditional, prompt, infill, seq2seq")
    defaults: dict[str, object]
    limits: dict[str, int]


def _option_fields(family: Family) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for o in family.options:
        kind: Any = Literal[o.choices] if o.choices else o.type  # type: ignore[valid-type]
        limits = {"ge": o.minimum} if o.minimum is not None else {}
        fields[o.name] = (kind | None, Field(None, description=f"{o.help} (default: the checkpoint's "
                                              f"{'sample.' + o.config_key if o.config_key else repr(o.default)})", **limits))
    return fields


def request_models(family: Family) -> tuple[type[GenerateRequest], type[InfillRequest], type[StreamRequest]]:
    """The request bodies for a model of ``family``: the shared fields plus its declared sampling options."""
    fields = _option_fields(family)
    return tuple(create_model(base.__name__, __base__=base, __doc__=base.__doc__, **fields)  # type: ignore[return-value]
                 for base in (GenerateRequest, InfillRequest, StreamRequest))
