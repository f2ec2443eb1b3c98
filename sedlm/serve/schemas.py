"""Request and response bodies of the HTTP API.

The sampling options of a request are those the served model's family declares
(``sedlm.families.base.Option``): ``request_models(family)`` derives the request bodies, and so the
OpenAPI schema, from the declarations. Unknown fields (a misspelt option, or one the family does not
take) are rejected (422) so that they never silently fall back to a default. Fields left out take the
checkpoint's ``config.sample`` defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from sedlm.families.base import Family

MAX_SEED = 2**53 - 1  # exact as a JSON number in every client (JavaScript included); a torch.Generator takes it


def _json_integer(value: Any) -> Any:
    """JSON integers only: 3 and 3.0 (JSON Schema counts both as integers), never true, "3" or 3.5."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be a JSON integer")
    return value


Int = Annotated[int, BeforeValidator(_json_integer)]


def _int(ge: int | None = None, le: int | None = None) -> Any:
    """A JSON integer with bounds (inside the type, so that ``X | None`` publishes minimum/maximum)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_json_integer)]  # bounds first: they reach the schema


MAX_TOKENS_HELP = (
    "at most this many tokens written after the prompt or source, instead of seq_len; a block model rounds "
    "its canvas up to whole blocks and cuts there (and also ends at end-of-text)"
)


class ErrorBody(BaseModel):
    """The body of a 400 (a user error: no blanks, text too long for the model, a request the family
    cannot serve), 413 (body or text over a limit) and 503 (queue full, or over the time limit)."""

    detail: str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleOptions(_Strict):
    """Options shared by every sampling endpoint (the family's own options are added to these)."""

    n: _int(1) = Field(1, description="number of samples")  # type: ignore[valid-type]
    steps: _int(1) | None = Field(None, description="denoising steps (default: the checkpoint's sample.steps)")  # type: ignore[valid-type]
    seed: _int(0, MAX_SEED) | None = Field(None, description="random seed (default: the checkpoint's sample.seed)")  # type: ignore[valid-type]
    seq_len: _int(2) | None = Field(
        None, description="canvas length in tokens (default: the checkpoint's data.seq_len)"
    )
    max_tokens: _int(1) | None = Field(None, description=MAX_TOKENS_HELP)  # type: ignore[valid-type]


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
    family: str
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
    family: str
    params: int
    seq_len: int
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_embed: int | None
    samplers: list[str]
    options: list[dict[str, Any]] = Field(
        description="the family's sampling options: name, type, help, choices, minimum"
    )
    requests: list[str] = Field(description="what the family serves: unconditional, prompt, infill, seq2seq")
    defaults: dict[str, object]
    limits: dict[str, int]


def _option_fields(family: Family) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for o in family.options:
        if not o.per_request:  # set by whoever runs the server (the checkpoint's config), not by clients
            continue
        if o.choices:
            kind: Any = Literal[o.choices]  # type: ignore[valid-type]
        elif o.type is int:
            kind = _int(None if o.minimum is None else int(o.minimum))
        elif o.type is float:  # no strings, bools, inf or nan
            kind = Annotated[float, Field(ge=o.minimum, allow_inf_nan=False, strict=True)]
        else:
            kind = Annotated[o.type, Field(strict=True)]
        default = f"sample.{o.config_key}" if o.config_key else repr(o.default)
        fields[o.name] = (kind | None, Field(None, description=f"{o.help} (default: the checkpoint's {default})"))
    return fields


def request_models(
    family: Family,
    max_n: int | None = None,
    max_steps: int | None = None,
    max_seq_len: int | None = None,
    max_text_chars: int | None = None,
) -> tuple[type[GenerateRequest], type[InfillRequest], type[StreamRequest]]:
    """The request bodies for a model of ``family`` behind a server with these limits: the shared fields
    (bounded by the limits, so the published schema says what the server accepts) plus the family's
    declared sampling options."""
    fields = _option_fields(family)
    bounded = {
        "n": (_int(1, max_n), Field(1, description="number of samples")),
        "steps": (
            _int(1, max_steps) | None,
            Field(None, description="denoising steps (default: the checkpoint's sample.steps, capped by the limit)"),
        ),
        "seq_len": (
            _int(2, max_seq_len) | None,
            Field(None, description="canvas length in tokens (default: the checkpoint's data.seq_len)"),
        ),
        "max_tokens": (_int(1, max_seq_len) | None, Field(None, description=MAX_TOKENS_HELP)),
    }
    text = {
        name: (
            str | None,
            Field(None, max_length=max_text_chars, description=GenerateRequest.model_fields[name].description),
        )
        for name in ("prompt", "src")
    }
    template = Field(max_length=max_text_chars, description=InfillRequest.model_fields["template"].description)
    return (  # type: ignore[return-value]
        create_model(
            "GenerateRequest", __base__=GenerateRequest, __doc__=GenerateRequest.__doc__, **fields, **bounded, **text
        ),
        create_model(
            "InfillRequest",
            __base__=InfillRequest,
            __doc__=InfillRequest.__doc__,
            **fields,
            **bounded,
            template=(str, template),
        ),
        create_model(
            "StreamRequest",
            __base__=StreamRequest,
            __doc__=StreamRequest.__doc__,
            **fields,
            **bounded,
            **text,
            template=(
                str | None,
                Field(None, max_length=max_text_chars, description=StreamRequest.model_fields["template"].description),
            ),
        ),
    )
