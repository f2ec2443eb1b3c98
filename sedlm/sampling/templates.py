"""Lay out prompts, infilling templates and seq2seq sources on the model's fixed-length canvas.

A layout says, for each of the L positions, which token is given (``ids`` where ``given``) and
which positions are generated; ``no_pad`` marks generated positions that must decode to a real
token (fixed-length blanks), so their length is exact.

Templates write blanks as ``[___]`` (the model chooses the length) or ``[___:N]`` (exactly N tokens).
A free blank gets an equal share of the positions left over; the model was trained on windows that
hold some text followed by padding (the ``blank`` conditioning kind), so it writes the blank's text
and pads the rest of the window, and the padding is stripped on decoding. Training windows always have
given text on both sides, so a ``[___]`` that opens the template or ends it is filled to the canvas's
edge, as a prompt's continuation is.
Spaces just before a blank belong to the blank: byte-level BPE spells a word with its leading space
("Ġking"), so "The [___]" is laid out as "The" + blank, never with a lone space token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError

BLANK = re.compile(r"\[___(?::(\d+))?\]")


@dataclass
class Layout:
    """One canvas for every sample, or one per sample: ``ids`` and ``given`` may be (n, L)."""

    ids: torch.Tensor  # (L,) or (n, L) token ids at given positions (pad elsewhere)
    given: torch.Tensor  # (L,) or (n, L) bool
    no_pad: torch.Tensor  # (L,) bool


def parse_template(template: str) -> list[str | int | None]:
    """Split into text pieces (str) and blanks: None for ``[___]``, N for ``[___:N]``."""
    parts: list[str | int | None] = []
    pos = 0
    for m in BLANK.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()])
        if m.group(1) is not None and int(m.group(1)) <= 0:
            raise SedlmError(f"blank '{m.group(0)}' asks for {m.group(1)} tokens; use [___:N] with N >= 1")
        parts.append(None if m.group(1) is None else int(m.group(1)))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])
    return parts


def _new(L: int, pad_id: int) -> Layout:
    return Layout(
        torch.full((L,), pad_id, dtype=torch.long), torch.zeros(L, dtype=torch.bool), torch.zeros(L, dtype=torch.bool)
    )


def layout_template(template: str, tok: Tokenizer, seq_len: int) -> Layout:
    """Place the template's text and blanks on a canvas of ``seq_len`` positions."""
    if not template.strip():
        raise SedlmError("the template is empty; write text with blanks, e.g. 'The [___] of Denmark [___:12] revenge.'")
    parts = parse_template(template)
    if all(isinstance(p, str) for p in parts):
        raise SedlmError("the template has no blanks; mark what to generate with [___] or [___:N]")
    pieces = [
        tok.encode(p.rstrip(" ") if i + 1 < len(parts) and not isinstance(parts[i + 1], str) else p)
        if isinstance(p, str)
        else p
        for i, p in enumerate(parts)
    ]
    n_given = sum(len(p) for p in pieces if isinstance(p, list))
    n_fixed = sum(p for p in pieces if isinstance(p, int))
    n_free_blanks = sum(p is None for p in pieces)
    spare = seq_len - n_given - n_fixed
    if spare < n_free_blanks:
        raise SedlmError(
            f"the template needs {n_given} given + {n_fixed} fixed-blank tokens (+1 per [___]) but the "
            f"model's sequence length is {seq_len}; shorten the text or the [___:N] blanks"
        )
    free = [spare // n_free_blanks + (i < spare % n_free_blanks) for i in range(n_free_blanks)] if n_free_blanks else []
    out, pos, k = _new(seq_len, tok.pad_id), 0, 0
    for p in pieces:
        if isinstance(p, list):
            out.ids[pos : pos + len(p)] = torch.tensor(p, dtype=torch.long)
            out.given[pos : pos + len(p)] = True
            pos += len(p)
        elif isinstance(p, int):
            out.no_pad[pos : pos + p] = True
            pos += p
        else:
            pos += free[k]
            k += 1
    out.given[pos:] = True  # no free blank: the unused tail is given padding
    return out


def layout_prompt(prompt: str, tok: Tokenizer, seq_len: int) -> Layout:
    """The prompt's tokens first, the rest generated."""
    ids = tok.encode(prompt)
    if not ids:
        raise SedlmError("the prompt is empty; pass some text with --prompt")
    if len(ids) >= seq_len:
        raise SedlmError(
            f"the prompt is {len(ids)} tokens but the model's sequence length is {seq_len}; "
            "shorten the prompt so that something is left to generate"
        )
    out = _new(seq_len, tok.pad_id)
    out.ids[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    out.given[: len(ids)] = True
    return out


def layout_source(src: str, tok: Tokenizer, seq_len: int) -> Layout:
    """seq2seq: the source and an end-of-document token are given, the target is generated."""
    ids = tok.encode(src)
    if not ids:
        raise SedlmError("the source text is empty; pass some text with --src")
    if len(ids) + 1 >= seq_len:
        raise SedlmError(f"the source is {len(ids)} tokens but the model's sequence length is {seq_len}; shorten it")
    out = _new(seq_len, tok.pad_id)
    out.ids[: len(ids) + 1] = torch.tensor([*ids, tok.eos_id], dtype=torch.long)
    out.given[: len(ids) + 1] = True
    return out
