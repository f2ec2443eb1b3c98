"""The SUNDAE family (Savinov et al. 2022): unrolled denoising loss, parallel-update sampler, and a
tiny model trained, saved, loaded and sampled through the shared trainer and API."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sedlm import load_pretrained
from sedlm.config import ModelConfig
from sedlm.families import load_config
from sedlm.families.sundae import SUNDAEFamily, SUNDAEModel, sundae_loss, sundae_sample
from sedlm.sampling.templates import Layout
from sedlm.train.trainer import train

V, L = 50, 12


class Oracle(nn.Module):
    """Logits putting (almost) all mass on ``target`` (L,) or (B, L), whatever the input."""

    def __init__(self, target: torch.Tensor, vocab: int = V):
        super().__init__()
        self.cfg = SimpleNamespace(vocab_size=vocab)
        self.register_buffer("target", target)
        self.dummy = nn.Parameter(torch.zeros(()))  # samplers read the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 60.0 * F.one_hot(self.target.expand_as(x), self.cfg.vocab_size).float() + 0 * self.dummy  # (B, L, V)


class Recorder(nn.Module):
    """Wraps a model and keeps every input it is called on."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.cfg, self.inputs = model, model.cfg, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        return self.model(x)


def _model() -> SUNDAEModel:
    torch.manual_seed(0)
    return SUNDAEModel(ModelConfig(d_model=32, n_layers=1, n_heads=2, vocab_size=V))


def _ids(b: int = 4) -> torch.Tensor:
    return torch.randint(0, V, (b, L), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("unroll", [1, 2, 3])
def test_a_perfect_denoiser_has_zero_loss(unroll):
    ids = _ids()
    loss, m = sundae_loss(Oracle(ids), ids, torch.Generator().manual_seed(0), unroll_steps=unroll)
    assert loss.item() < 1e-4 and m["acc"].item() == 1.0


def test_the_unrolled_step_is_trained_on_the_models_own_detached_sample():
    model, ids = Recorder(_model()), _ids()
    one, m1 = sundae_loss(model, ids, torch.Generator().manual_seed(0), unroll_steps=1)
    model.inputs.clear()
    two, m2 = sundae_loss(model, ids, torch.Generator().manual_seed(0), unroll_steps=2)
    assert len(model.inputs) == 2
    assert torch.allclose(m2["ce"], one.detach())  # same corruption: the first step is unchanged
    assert abs(two.item() - one.item()) > 1e-4  # ... so the unrolled term moves the loss
    x1, x2 = model.inputs
    other = (_ids(1)[0] + 1) % V  # the second input is a draw from the model's own prediction on the first
    oracle = Recorder(Oracle(other))
    sundae_loss(oracle, ids, torch.Generator().manual_seed(0), unroll_steps=2)
    assert torch.equal(oracle.inputs[1], other.expand_as(ids)) and not torch.equal(oracle.inputs[0], oracle.inputs[1])
    assert x2.dtype == torch.long and not x2.requires_grad and not torch.equal(x1, x2)
    # The gradient is that of the mean of the two steps' CE on those inputs held fixed: nothing flows
    # through the sample itself.
    net = model.model
    grad = torch.autograd.grad(two, list(net.parameters()))
    ref = sum(F.cross_entropy(net(x).transpose(1, 2), ids) for x in (x1, x2)) / 2
    assert torch.allclose(two, ref, atol=1e-5)
    for a, b in zip(grad, torch.autograd.grad(ref, list(net.parameters()))):
        assert torch.allclose(a, b, atol=1e-6)


def test_given_positions_are_never_corrupted_nor_counted():
    ids = _ids()
    given = torch.zeros_like(ids, dtype=torch.bool)
    given[:, :5] = True
    model = Recorder(_model())
    sundae_loss(model, ids, torch.Generator().manual_seed(0), unroll_steps=3, given=given)
    assert all(torch.equal(x[given], ids[given]) for x in model.inputs)
    wrong_on_given = torch.where(given, (ids + 1) % V, ids)  # a denoiser right everywhere but on the source
    loss, _ = sundae_loss(Oracle(wrong_on_given), ids, torch.Generator().manual_seed(0), given=given)
    assert loss.item() < 1e-4


def _layout(target: torch.Tensor) -> Layout:
    """Given tokens at 0..2 and 8 that disagree with ``target``; positions 9..10 must not be padding."""
    given = torch.zeros(L, dtype=torch.bool)
    given[[0, 1, 2, 8]] = True
    no_pad = torch.zeros(L, dtype=torch.bool)
    no_pad[9:11] = True
    return Layout(torch.where(given, (target + 7) % V, torch.zeros_like(target)), given, no_pad)


def test_oracle_sampling_reaches_the_target_and_holds_given_tokens():
    target = torch.randint(0, V, (L,), generator=torch.Generator().manual_seed(1))
    layout, states = _layout(target), []
    ids, nfe = sundae_sample(
        Oracle(target),
        3,
        L,
        20,
        generator=torch.Generator().manual_seed(0),
        layout=layout,
        callback=lambda info: states.append(info["z"].clone()),
    )
    free = ~layout.given
    assert torch.equal(ids[:, free], target[free].expand(3, -1))
    assert torch.equal(ids[:, layout.given], layout.ids[layout.given].expand(3, -1))
    assert nfe == len(states) == 2  # the first step reaches the target, the second changes nothing: stop
    assert all(torch.equal(z[:, layout.given], layout.ids[layout.given].expand(3, -1)) for z in states)


class Chain(Oracle):
    """Predicts ``target`` at a position only once every position before it holds its target token, and
    the current token elsewhere: the sampler must feed each step's output to the next to get there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ok = (x == self.target).long().cumprod(-1)  # (B, L) 1 while the prefix is right
        ready = torch.cat([torch.ones_like(ok[:, :1]), ok[:, :-1]], dim=-1).bool()
        pred = torch.where(ready, self.target.expand_as(x), x)
        return 60.0 * F.one_hot(pred, self.cfg.vocab_size).float() + 0 * self.dummy  # (B, L, V)


def test_sampling_feeds_back_its_state_until_it_settles():
    target = torch.randint(0, V, (L,), generator=torch.Generator().manual_seed(2))
    ids, nfe = sundae_sample(
        Chain(target), 2, L, 3 * L, generator=torch.Generator().manual_seed(5), update_fraction=1.0
    )
    assert torch.equal(ids, target.expand(2, -1))
    assert nfe <= L + 1  # one more right position per step, then a step that changes nothing
    model = _model().eval()  # every draw takes the generator: the global RNG moving in between changes nothing
    runs = [sundae_sample(model, 2, L, 6, generator=torch.Generator().manual_seed(5))[0] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_the_update_fraction_anneals_from_every_position():
    fractions, moved, prev = [], [], [None]

    def callback(info):
        fractions.append(info["fraction"])
        z = info["z"].clone()
        if prev[0] is not None:
            moved.append((z != prev[0]).float().mean().item())
        prev[0] = z

    sundae_sample(
        _model().eval(), 64, L, 8, generator=torch.Generator().manual_seed(0), update_fraction=0.1, callback=callback
    )
    assert len(fractions) == 8 and fractions[0] == 1.0 and abs(fractions[-1] - 0.1) < 1e-9
    assert all(a > b for a, b in zip(fractions, fractions[1:]))
    assert moved[-1] <= 0.1 + 0.05  # at most the last step's share of positions changes


def test_no_pad_positions_never_decode_to_padding():
    pad_id = 4
    target = torch.full((L,), pad_id)  # a model that wants padding everywhere
    layout, states = _layout(target), []
    ids, _ = sundae_sample(
        Oracle(target),
        8,
        L,
        5,
        generator=torch.Generator().manual_seed(0),
        layout=layout,
        pad_id=pad_id,
        callback=lambda info: states.append(info["z"].clone()),
    )
    assert all(not (z[:, layout.no_pad] == pad_id).any() for z in states)
    free = ~layout.given & ~layout.no_pad
    assert (ids[:, free] == pad_id).all()  # elsewhere the model's padding is taken


def test_sundae_trains_saves_and_samples(tiny_overrides, tmp_path, one_thread):
    cfg = load_config(None, [*tiny_overrides, "train.max_steps=40", "train.eval_every=20", "train.lr=3e-3"])
    cfg.family = "sundae"
    result = train(cfg, tmp_path / "sundae", progress=False, log=lambda s: None)
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]
    lm = load_pretrained(tmp_path / "sundae")
    assert isinstance(lm.family, SUNDAEFamily)
    texts = lm.generate(n=3, steps=8, seed=0)
    assert len(texts) == 3 and lm.generate(n=3, steps=8, seed=0) == texts
    assert all(t.startswith("The king") for t in lm.generate(n=2, prompt="The king", steps=6, temperature=0.8))
    layout = lm.make_layout(template="The king [___:3] at the [___]")
    fractions = []
    ids = lm.generate_ids(
        n=4, steps=6, layout=layout, update_fraction=0.5, callback=lambda info: fractions.append(info["fraction"])
    )
    assert len(fractions) >= 2 and fractions[1] == pytest.approx(0.9)  # the option reaches the sampler
    assert torch.equal(ids[:, layout.given], layout.ids[layout.given].expand(4, -1))
    assert not (ids[:, layout.no_pad] == lm.tokenizer.pad_id).any()
    assert len(lm.infill("The [___:2] speaks [___]", n=2, steps=6)) == 2
