"""A whole model family in one small module: a unigram LM (README's example of adding a family)."""

import torch
from torch import nn

from sedlm.families.base import Family, Request
from sedlm.options import Option


class Unigram(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(vocab_size))  # (V,)


class UnigramFamily(Family):
    name = "unigram"
    description = "unigram LM: every token drawn independently"
    paper = "Shannon 1948"
    val_loss_kind = "unigram NLL (nats/token)"
    options = (Option("temperature", float, "softmax temperature", default=1.0, minimum=1e-6),)
    summary_options = ("temperature",)

    def build(self, cfg, tokenizer, table):
        return Unigram(cfg.model.vocab_size)

    def loss(self, model, ids, cfg, generator, tokenizer, given=None):
        nll = nn.functional.cross_entropy(model.logits.expand(ids.numel(), -1), ids.flatten())
        return nll, {"ce": nll.detach()}

    def generate(self, lm, request: Request, callback=None):
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        probs = torch.softmax(lm.model.logits.double() / request.options["temperature"], -1)
        ids = torch.multinomial(probs, request.n * request.seq_len, replacement=True, generator=g)
        ids = ids.view(request.n, request.seq_len)  # (n, L)
        if request.layout is not None:  # given tokens are kept verbatim
            ids = torch.where(request.layout.given, request.layout.ids, ids)
        return ids


FAMILY = UnigramFamily()
