"""Autoregressive baseline: a causal Transformer on the shared backbone, with KV-cache decoding.

Loss: next-token cross-entropy  L = -1/(BL) sum_i log p(w_i | w_<i), the first token of a row
predicted from a row-start token (``ar.row_start=window``: the pad id, as T5's decoder start), so rows,
samples and scored text are all windows of the packed text stream, the same kind of text the diffusion
families model. ``ar.row_start=document`` (checkpoints of format 1) starts at end-of-text instead: the first
token of a row is not trained and samples open a fresh document.
Generation: temperature and nucleus (top-p) sampling (Holtzman et al. 2020), one position per
network call; with the KV cache each call processes only the new position.

The family (``FAMILY``, registered as ``ar``) continues a prefix (a prompt or a seq2seq source) and cannot
infill. This module holds the whole family: network, loss, sampler, adapter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sedlm.config import Config, ModelConfig
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.families.base import Callback, Family, Loss, Request, scored_count
from sedlm.losses import token_nll
from sedlm.model.transformer import TokenTransformer
from sedlm.options import Option
from sedlm.sampling.categorical import categorical


class ARModel(TokenTransformer):
    """Token embedding (tied with the output head) + causal backbone. (B, L) -> (B, L, V)"""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, causal=True)


def ar_loss(
    model: ARModel, ids: torch.Tensor, pad_id: int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean next-token cross-entropy in nats (targets equal to ``pad_id`` are ignored)."""
    logits = model(ids[:, :-1])  # (B, L-1, V)
    target = ids[:, 1:]
    ignore = -100 if pad_id is None else pad_id
    loss = token_nll(logits.float(), target, ignore).sum() / (target != ignore).sum().clamp(min=1)
    with torch.no_grad():
        acc = (logits.argmax(-1) == target).float().mean()
    return loss, {"ce": loss.detach(), "acc": acc}


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw one token per row from logits (B, V): greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return categorical(probs, generator)


@torch.inference_mode()
def ar_generate(
    model: ARModel,
    prefix: torch.Tensor,  # (B, P) ids to continue, P >= 1 (e.g. the end-of-document id)
    new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 0.95,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Append ``new_tokens`` sampled tokens to ``prefix``. (B, P) -> (B, P + new_tokens)"""
    ids = prefix
    cache = model.new_cache() if use_cache else None
    logits = model(ids, cache=cache)[:, -1]  # prefill
    for i in range(new_tokens):
        nxt = sample_next(logits, temperature, top_p, generator)[:, None]  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
        if i == new_tokens - 1:
            break
        logits = (model(nxt, cache=cache) if use_cache else model(ids))[:, -1]
    return ids


class ARFamily(Family):
    name = "ar"
    description = "autoregressive causal Transformer"
    paper = "Radford et al. 2019 (GPT-2 style decoder); nucleus sampling, Holtzman et al. 2020"
    val_loss_kind = "next-token NLL (nats/token)"
    nll_kind = "exact"
    pads = False  # text ends with EOS instead
    requests = ("unconditional", "prompt", "seq2seq")
    step_callbacks = False  # one network call per token
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))
    frontier_fixed = {"top_p": 1.0}  # pure temperature sampling along the frontier
    summary_options = ("temperature", "top_p")
    options = (
        Option("temperature", float, "softmax temperature of token draws; 0 = greedy", default=1.0, minimum=0.0),
        Option("top_p", float, "nucleus sampling mass", default=0.95, minimum=0.0),
        Option("use_cache", bool, "decode with the KV cache (off: recompute the prefix every token)", default=True),
    )

    settings = (
        Option(
            "row_start",
            str,
            "what a row's first token follows: window = a row-start token (the pad id), so the model learns "
            "where rows begin and its samples are windows of the text stream like the data rows; "
            "document = end-of-text, samples open a fresh document (as checkpoints of format 1 did)",
            default="window",
            choices=("window", "document"),
            kind="setting",
        ),
    )
    format_settings = {1: {"row_start": "document"}}

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return ARModel(cfg.model)

    def start_ids(self, cfg: Config, tokenizer: Tokenizer) -> list[int]:
        """What precedes a row: nothing for seq2seq pairs (a row starts with its source), else the
        row-start token of ``ar.row_start``."""
        if cfg.data.task == "seq2seq":
            return []
        return [tokenizer.pad_id if self.setting(cfg, "row_start") == "window" else tokenizer.eos_id]

    def loss(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> Loss:
        if cfg.data.task != "seq2seq" and self.setting(cfg, "row_start") == "window":
            # (B, 1 + L): the row's first token is a target too (with end-of-text before it, a row would
            # teach that documents start mid-sentence, so the document start leaves it untrained)
            ids = torch.cat([torch.full_like(ids[:, :1], tokenizer.pad_id), ids], dim=1)
        return ar_loss(model, ids)

    def nll_bound(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact -log p(row) per token (nats), every one of the L tokens counted: the row is read after
        its start token, as training and generation see it, so the first token is paid for like the others
        (the diffusion families' bounds cover all L tokens too). With ``given``, only the other tokens are
        counted, each read after everything before it: exact -log p(scored | given) when the given tokens
        come first (a context); given tokens after the scored ones are not read."""
        nll = token_nll(self._row_logits(model, ids, cfg, tokenizer).float(), ids)  # (B, L)
        if given is None:
            return nll.mean(-1)
        return (nll * ~given.bool()).sum(-1) / scored_count(ids, given)

    def greedy(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        given: torch.Tensor,
        cfg: Config,
        generator: torch.Generator,
        tokenizer: Tokenizer,
    ) -> torch.Tensor:
        """Greedy decoding would write the scored tokens: each is the argmax after the tokens before it."""
        best = self._row_logits(model, ids, cfg, tokenizer).argmax(-1)  # (B, L)
        return ((best == ids) | given.bool()).all(-1)

    def _row_logits(self, model: nn.Module, ids: torch.Tensor, cfg: Config, tokenizer: Tokenizer) -> torch.Tensor:
        """Next-token logits for every token of the rows, each read after its start token. (B, L) -> (B, L, V)"""
        start = torch.full_like(ids[:, :1], (self.start_ids(cfg, tokenizer) or [tokenizer.eos_id])[0])  # (B, 1)
        return model(torch.cat([start, ids[:, :-1]], dim=1))

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A ``layout`` gives one prefix per row (a prompt or a seq2seq source): the model continues
        each. Text models start from their row-start token (``ar.row_start``), as their rows do; seq2seq
        models (data.task=seq2seq) start from the source itself."""
        n, length, layout, o = request.n, request.seq_len, request.layout, request.options
        start = self.start_ids(lm.config, lm.tokenizer)
        prefixes: list[list[int]] = [[] for _ in range(n)]
        if layout is not None:
            ids, given = layout.ids.expand(n, -1), layout.given.expand(n, -1)  # (n, L)
            prefixes = [row[: int(g.sum())].tolist() for row, g in zip(ids, given)]
        if not start and any(not p for p in prefixes):
            raise SedlmError("this autoregressive model was trained on seq2seq pairs; give it a source (--src)")
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        out = torch.full((n, length), lm.tokenizer.pad_id, dtype=torch.long, device=lm.device)
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(prefixes):
            by_len.setdefault(len(p), []).append(i)
        for k, rows in sorted(by_len.items()):  # rows with equal prefix length share one KV-cached batch
            prefix = torch.tensor([start + prefixes[i] for i in rows], device=lm.device)  # (b, len(start) + k)
            ids = ar_generate(
                lm.model,
                prefix,
                length - k,
                temperature=o["temperature"],
                top_p=o["top_p"],
                generator=g,
                use_cache=o["use_cache"],
            )
            out[rows] = ids[:, len(start) :]
        return out


FAMILY = ARFamily()
