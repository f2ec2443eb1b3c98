"""Property-based tests (hypothesis): the template parser and config overrides on arbitrary input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.sampling.templates import parse_template

TEXT = st.text(alphabet=st.characters(blacklist_characters="[]"), min_size=1, max_size=20)
BLANK = st.one_of(st.none(), st.integers(min_value=1, max_value=500))


def render(parts: list) -> str:
    return "".join(p if isinstance(p, str) else "[___]" if p is None else f"[___:{p}]" for p in parts)


@st.composite
def templates(draw) -> list:
    """Text pieces and blanks, never two text pieces in a row (they would merge)."""
    parts: list = []
    for _ in range(draw(st.integers(1, 6))):
        if parts and isinstance(parts[-1], str):
            parts.append(draw(BLANK))
        else:
            parts.append(draw(st.one_of(TEXT, BLANK)))
    return parts


@given(templates())
def test_template_parsing_inverts_rendering(parts):
    assert parse_template(render(parts)) == parts


@given(st.text(max_size=40))
@settings(max_examples=200)
def test_parser_never_crashes_on_arbitrary_text(text):
    try:
        parts = parse_template(text)
    except SedlmError:
        return
    assert render(parts) == text or "[___:0" in text  # what parses renders back to the same template


@given(
    st.sampled_from(
        [
            "train.max_steps",
            "train.lr",
            "model.d_model",
            "data.seq_len",
            "sample.guidance",
            "diffusion.self_cond",
            "embed.kind",
            "train.seed",
            "nope.key",
            "train.nope",
        ]
    ),
    st.text(max_size=12),
)
@settings(max_examples=300, deadline=None)
def test_overrides_either_apply_or_give_a_clear_error(key, value):
    try:
        cfg = load_config(None, [f"{key}={value}"])
    except SedlmError as e:
        assert "\n" not in str(e) and len(str(e)) < 600  # one line (a key error lists the valid keys)
        return
    section, name = key.split(".")
    assert str(getattr(getattr(cfg, section), name)).lower().strip() in (
        value.lower().strip(),
        str(float(value)) if _is_number(value) else "",
        str(int(float(value))) if _is_number(value) else "",
    )


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
