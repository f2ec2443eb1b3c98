"""Schedules, samplers on a dummy denoiser, and the two-pass self-conditioning objective."""

import pytest
import torch

from sedlm.diffusion.objective import sed_loss
from sedlm.diffusion.schedules import SCHEDULES, get_schedule, log_snr, time_grid
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.model.denoiser import SEDDenoiser
from sedlm.sampling.samplers import SAMPLERS, get_sampler, nfe

# Where each schedule starts: clean, except CDCD's variance-exploding range, which stops at sigma_min = 1
# (abar = 1 / (1 + 1^2)) and leaves the last step to the model's readout.
CLEAN_END = {name: 0.99 for name in SCHEDULES} | {"ve": 0.5}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_is_monotone_with_clean_and_noisy_ends(name):
    ab = get_schedule(name)(torch.linspace(0, 1, 1001))
    assert ab[0] >= CLEAN_END[name] and ab[-1] < 0.01
    assert torch.all(ab[1:] <= ab[:-1])
    assert torch.all(log_snr(ab)[1:] <= log_snr(ab)[:-1])


def test_time_grid():
    ts = time_grid(4)
    assert ts.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_unknown_names_list_valid_ones():
    with pytest.raises(SedlmError, match="valid samplers: ddpm, ddim"):
        get_sampler("euler_typo")
    with pytest.raises(SedlmError, match="valid schedules"):
        get_schedule("nope")


class Oracle:
    """A denoiser that knows x0 and records what it was called with."""

    def __init__(self, x0):
        self.x0, self.calls = x0, []

    def __call__(self, x, t, sc):
        self.calls.append((t.clone(), sc.clone()))
        return self.x0.expand_as(x)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_converges_to_known_x0(name):
    x0 = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1))
    oracle = Oracle(x0)
    distances = []
    out = get_sampler(name)(
        oracle,
        x,
        time_grid(50),
        alpha_bar=get_schedule("cosine"),
        generator=torch.Generator().manual_seed(2),
        callback=lambda info: distances.append((info["x"] - x0).norm().item()),
    )
    assert torch.allclose(out, x0.expand_as(out))
    assert len(oracle.calls) == nfe(name, 50, time_grid(50), get_schedule("cosine"))  # network calls as reported
    assert distances[-2] < distances[0]  # the trajectory approaches x0
    # self-conditioning: each call after the first receives the previous estimate
    assert torch.all(oracle.calls[0][1] == 0) and torch.allclose(oracle.calls[1][1], x0.expand_as(x))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_is_deterministic_under_a_generator(name):
    net = torch.nn.Linear(4, 4)
    fn = lambda x, t, sc: net(x) * (1 - t[:, None, None]) + 0.1 * sc  # noqa: E731
    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    kw = dict(alpha_bar=get_schedule("cosine"))
    runs = [
        get_sampler(name)(fn, x, time_grid(10), generator=torch.Generator().manual_seed(s), **kw) for s in (7, 7, 8)
    ]
    assert torch.equal(runs[0], runs[1])
    if name == "ddpm":  # the others draw no noise by default
        assert not torch.equal(runs[0], runs[2])


def _tiny_model(*overrides: str):
    cfg = load_config(
        None,
        [
            "model.d_model=32",
            "model.n_layers=1",
            "model.n_heads=2",
            "model.d_embed=8",
            "model.vocab_size=20",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    return cfg, SEDDenoiser.from_config(cfg, torch.randn(20, 8))


def test_second_pass_gets_detached_first_estimate():
    cfg, model = _tiny_model()
    cfg.diffusion.p_uncond = 0.0
    seen = []
    model.register_forward_hook(lambda m, inp, out: seen.append((inp[2], out[0])))
    ids = torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(0))
    loss, _ = sed_loss(model, ids, cfg.diffusion, get_schedule("cosine"), torch.Generator().manual_seed(0))
    assert len(seen) == 2
    (sc1, first), (sc2, _) = seen
    assert torch.all(sc1 == 0)
    assert torch.allclose(sc2, first) and not sc2.requires_grad and first.requires_grad
    loss.backward()  # both passes are optimised: gradients reach the input layer through pass 1 too
    assert model.inp.weight.grad is not None


@pytest.mark.parametrize("mode, passes", [("off", 1), ("both", 2)])
def test_self_conditioning_modes(mode, passes):
    cfg, model = _tiny_model()
    cfg.diffusion.self_cond = mode
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    sed_loss(model, torch.zeros(2, 4, dtype=torch.long), cfg.diffusion, get_schedule("cosine"), torch.Generator())
    assert len(calls) == passes


@pytest.mark.parametrize("block_size", [0, 4])  # 4: block diffusion, each block given the clean ones before it
def test_loss_falls_when_overfitting_a_few_rows(block_size):
    cfg, model = _tiny_model("data.seq_len=8", f"diffusion.block_size={block_size}")
    ids = torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = get_schedule("cosine")

    def eval_loss():
        return sed_loss(model, ids, cfg.diffusion, sched, torch.Generator().manual_seed(99))[0].item()

    before = eval_loss()
    for step in range(150):
        loss, _ = sed_loss(model, ids, cfg.diffusion, sched, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.5 * before


def test_loss_counts_only_generated_positions():
    cfg, model = _tiny_model()
    cfg.diffusion.p_uncond = 0.0
    outputs = []

    def keep(module, inp, out):
        out[0].retain_grad()
        out[1].retain_grad()
        outputs.append(out)

    model.register_forward_hook(keep)
    ids = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :3] = True
    loss, _ = sed_loss(
        model, ids, cfg.diffusion, get_schedule("cosine"), torch.Generator().manual_seed(0), cond_mask=mask
    )
    loss.backward()
    for x0_hat, logits in outputs:
        assert torch.all(logits.grad[mask] == 0) and torch.all(x0_hat.grad[mask] == 0)
        assert logits.grad[~mask].abs().sum() > 0
