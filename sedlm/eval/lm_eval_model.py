"""A sedlm checkpoint of any family as a model of EleutherAI's lm-evaluation-harness (``lm_eval``).

Importing this module registers the model name ``sedlm``; ``sedlm lm-eval`` is lm_eval's own command line
with it registered (lm_eval has no plugin hook that would find an outside package's model by itself):

    sedlm lm-eval --model sedlm --model_args pretrained=RUN_DIR --tasks hellaswag

The three request kinds, on rows of the model's ``data.seq_len`` tokens:

loglikelihood (context, continuation)
    The row holds the context's last tokens, then the continuation (its last ``seq_len`` tokens if longer),
    then padding. The figure is the family's ``nll_bound`` with every position but the continuation's
    given: for AR the exact -log p(continuation | context) (padding after it is never read); for the
    diffusion families a bound on -log p(continuation | context, the text stops after it), since a
    fixed canvas also fixes where the text ends. The output's ``is_greedy`` is the family's ``greedy``:
    AR's greedy decoding; one prediction with the whole continuation unknown for the diffusion families.
loglikelihood_rolling (text)
    The text's tokens in consecutive windows of ``seq_len``, each scored with nothing given (the rows of
    ``sedlm eval --nll``); a last, shorter window is scored given the tokens just before it (the end of the
    window before), or given padding after it when the whole text is shorter than a window.
generate_until (context, gen_kwargs)
    The family's sampler continues the context's last tokens on a full canvas (leaving ``max_gen_toks``
    positions, at most half the canvas); the text is cut at the first stop string of ``until``.

Multiple-choice accuracy from a bound compares upper bounds, not likelihoods: a choice wins when its bound
is lowest, which ranks choices as their likelihoods would only as far as the bounds' gaps to the truth are
alike (docs/lm-eval.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch

from sedlm.errors import SedlmError

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - the extra is installed with the dev tools
    raise SedlmError("lm-evaluation-harness is not installed; pip install 'sedlm[lm-eval]'") from e

from sedlm.api import load_pretrained
from sedlm.sampling.templates import Layout

log = logging.getLogger(__name__)
MODEL_NAME = "sedlm"
# lm_eval passes these to every model; ``max_batch_size`` and ``device`` as it parsed them.
HARNESS_ARGS = ("batch_size", "max_batch_size", "device")


def _parse_batch_size(value: Any) -> int:
    """lm_eval's ``--batch_size``: a number (``auto`` picks the default of 16)."""
    if value is None or str(value).startswith("auto"):
        return 16
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise SedlmError(f"batch_size takes a whole number or auto (got {value!r})") from None
    if size < 1:
        raise SedlmError(f"batch_size must be at least 1 (got {size})")
    return size


@register_model(MODEL_NAME)
class SedlmLM(LM):
    """``--model_args pretrained=RUN_DIR[,steps=N][,seed=N][,<the family's sampling options>]``."""

    def __init__(
        self,
        pretrained: str | None = None,
        steps: int | None = None,
        seed: int = 0,
        batch_size: Any = 16,
        max_batch_size: Any = None,
        device: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if pretrained is None:
            raise SedlmError("the sedlm model needs its checkpoint: --model_args pretrained=RUN_DIR")
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "auto"  # lm_eval's configuration defaults to cuda:0; like its hf model, use what there is
        self.lm = load_pretrained(str(pretrained), device)
        family = self.lm.family
        unknown = sorted(k for k in options if family.option(k) is None)
        if unknown:
            valid = ", ".join(["pretrained", "steps", "seed", *(o.name for o in family.options)])
            raise SedlmError(
                f"unknown model argument {', '.join(unknown)} for a {family.name} checkpoint; valid: {valid}"
            )
        self.request_args = self.lm.request(steps=None if steps is None else int(steps), seed=int(seed), **options)
        self.seed = int(seed)
        self.batch = _parse_batch_size(batch_size)
        self.L = self.lm.config.data.seq_len
        self._warned: set[str] = set()

    # --- helpers ----------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.lm.tokenizer

    def _note(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens; trailing spaces of the context move to the continuation, and
        the pair is tokenised as one text then split, as lm_eval does for causal models."""
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        ctx = self.tokenizer.encode(context) if context else []
        return ctx, whole[len(ctx) :]

    def _row(self, tokens: list[int], scored_from: int) -> tuple[list[int], list[bool]]:
        """A row of L: ``tokens`` (at most L), padding after; scored positions are [scored_from, len(tokens))."""
        pad = self.L - len(tokens)
        given = [i < scored_from for i in range(len(tokens))] + [True] * pad
        return tokens + [self.tokenizer.pad_id] * pad, given

    @torch.no_grad()
    def _score(self, rows: list[tuple[list[int], list[bool]]], greedy: bool = False) -> list[tuple[float, bool]]:
        """-log p of each row's scored tokens, in nats (a sum), and whether they are the greedy choice."""
        fam, lm = self.lm.family, self.lm
        if not fam.capabilities()["nll_bound"]:
            raise SedlmError(
                f"family {fam.name} has no likelihood or likelihood bound; run generation tasks (generate_until) only"
            )
        g = torch.Generator(device=lm.device).manual_seed(self.seed)
        out: list[tuple[float, bool]] = []
        for i in range(0, len(rows), self.batch):
            chunk = rows[i : i + self.batch]
            ids = torch.tensor([r for r, _ in chunk], dtype=torch.long, device=lm.device)  # (b, L)
            given = torch.tensor([m for _, m in chunk], dtype=torch.bool, device=lm.device)  # (b, L)
            per_token = fam.nll_bound(lm.model, ids, lm.config, g, lm.tokenizer, given=given).double()  # (b,)
            total = per_token * (~given).sum(-1).double()
            best = fam.greedy(lm.model, ids, given, lm.config, g, lm.tokenizer) if greedy else None
            flags = [False] * len(chunk) if best is None else best.tolist()
            out.extend(zip(total.tolist(), flags))
        return out

    # --- the harness's three requests -------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        rows = []
        for req in requests:
            ctx, cont = self._encode_pair(*req.args)
            if not cont:
                raise SedlmError(f"an empty continuation cannot be scored (context {req.args[0][-40:]!r})")
            if len(cont) > self.L:
                self._note("cut", f"continuations longer than {self.L} tokens are scored on their last {self.L}")
                cont = cont[-self.L :]
            tokens = (ctx + cont)[-self.L :]
            rows.append(self._row(tokens, len(tokens) - len(cont)))
        return [(-nll, best) for nll, best in self._score(rows, greedy=True)]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        rows, owner = [], []
        for k, req in enumerate(requests):
            for row in rolling_rows(self.tokenizer.encode(req.args[0]), self.L, self.tokenizer.pad_id):
                rows.append(row)
                owner.append(k)
        totals = [0.0] * len(requests)
        for k, (nll, _) in zip(owner, self._score(rows)):
            totals[k] -= nll
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out: list[str] = []
        for i in range(0, len(requests), self.batch):
            out.extend(self._generate([r.args for r in requests[i : i + self.batch]]))
        return out

    def _generate(self, batch: list[tuple[str, dict[str, Any]]]) -> list[str]:
        lm, L, pad = self.lm, self.L, self.tokenizer.pad_id
        rows, lengths, stops, budgets = [], [], [], []
        for context, kwargs in batch:
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            budget = max(1, min(int(kwargs.pop("max_gen_toks", L // 2)), L // 2))
            if kwargs:  # do_sample, temperature, ...: sampling follows --model_args
                self._note("gen", f"generation arguments left to --model_args: {', '.join(sorted(kwargs))}")
            ctx = self.tokenizer.encode(context)[-(L - budget) :] if context else []
            rows.append(ctx + [pad] * (L - len(ctx)))
            lengths.append(len(ctx))
            stops.append(until)
            budgets.append(budget)
        ids = torch.tensor(rows, dtype=torch.long)  # (b, L)
        given = torch.arange(L)[None] < torch.tensor(lengths)[:, None]  # (b, L)
        layout = Layout(ids, given, torch.zeros(L, dtype=torch.bool)) if any(lengths) else None
        r = self.request_args
        request = lm.request(len(batch), r.steps, r.seed, L, layout, **r.options)
        generated = lm.run(request).cpu()
        texts = []
        for row, k, until, budget in zip(generated.tolist(), lengths, stops, budgets):
            new = []
            for tok in row[k : k + budget]:
                if tok in self.tokenizer.special_ids:  # the text stops at padding or end-of-text
                    break
                new.append(tok)
            texts.append(cut_at(self.tokenizer.decode(new), until))
        return texts


def rolling_rows(tokens: list[int], L: int, pad_id: int) -> Iterable[tuple[list[int], list[bool]]]:
    """The rows scoring a whole text (module docstring): consecutive windows of L tokens with nothing
    given; a last shorter window given the tokens before it, or padding after it in a text shorter than L."""
    T = len(tokens)
    for start in range(0, T, L):
        window = tokens[start : start + L]
        if len(window) == L:
            yield window, [False] * L
        elif T >= L:  # the last L tokens, the part already scored given
            yield tokens[T - L :], [i < L - len(window) for i in range(L)]
        else:
            yield window + [pad_id] * (L - T), [i >= T for i in range(L)]


def cut_at(text: str, until: list[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    cut = min((i for s in until if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]
