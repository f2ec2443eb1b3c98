"""Distillation into few-step students (sedlm/distill.py): the round schedule, the two-step target,
students of an analytic Gaussian teacher, and the `sedlm distill` command on a tiny SED model."""

from __future__ import annotations

import json

import pytest
import torch

from sedlm.diffusion.schedules import cosine
from sedlm.distill import DistillConfig, progressive_loss, round_grids, run_distillation, two_step_target
from sedlm.errors import SedlmError
from sedlm.sampling.samplers import ddim, ddim_step

S = 0.5  # data: x0 ~ N(0, S^2) per dimension


def exact_coef(t: torch.Tensor) -> torch.Tensor:
    """E[x0 | x_t] = c(t) x_t for Gaussian data under the cosine schedule."""
    ab = cosine(t)
    return ab.sqrt() * S**2 / (ab * S**2 + 1 - ab)


class Linear(torch.nn.Module):
    """x0 = w(t) x_t with one learnable coefficient per grid time k / 64: a student that can represent any
    deterministic step map of Gaussian data. Initialised to the exact denoiser (the teacher)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(exact_coef(torch.linspace(0, 1, 65)))

    def forward(self, x, t):
        return self.w[(t * 64).round().long()][:, None, None] * x


def test_rounds_halve_the_grid():
    assert round_grids(64, 4) == [32, 16, 8, 4]
    assert round_grids(8, 1) == [4, 2, 1]
    with pytest.raises(SedlmError, match="power of two"):
        DistillConfig(nfe=3, teacher_steps=16).check()
    with pytest.raises(SedlmError, match="unknown distillation method"):
        DistillConfig(method="magic").check()


def test_two_step_target_lands_where_the_teacher_did():
    g = torch.Generator().manual_seed(0)
    x_t, x_s = torch.randn(5, 3, 2, generator=g), torch.randn(5, 3, 2, generator=g)
    for ab_t, ab_s in [(0.1, 0.5), (0.0, 0.3), (0.4, 1.0)]:
        a, b = torch.tensor(ab_t), torch.tensor(ab_s)
        assert torch.allclose(ddim_step(x_t, two_step_target(x_t, x_s, a, b), a, b), x_s, atol=1e-5)


def test_the_progressive_loss_weights_by_truncated_snr():
    """Salimans & Ho 2022 (§4): max(SNR_t, 1) ||x0 - x0_hat||^2. A teacher answering 0 makes the target 0, so a
    student answering 1 everywhere costs exactly the weight of the time it was asked at."""
    asked = []

    def student(x, t):
        asked.append(t)
        return torch.ones_like(x)

    def alpha_bar(t):
        return 0.95 - 0.6 * t  # SNR 0.54 at t = 1, 1.86 at 1/2, 19 at 0

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, 2, generator=g)
    loss = progressive_loss(student, lambda x, t: torch.zeros_like(x), x0, 2, alpha_bar, g)
    ab = alpha_bar(asked[0])
    want = (ab / (1 - ab)).clamp(min=1).mean()
    assert 0 < int((asked[0] == 0.5).sum()) < 64  # both grid times were drawn
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def _teacher_samples(x1: torch.Tensor, steps: int) -> torch.Tensor:
    return ddim(
        lambda x, t, sc: exact_coef(t)[:, None, None] * x,
        x1,
        torch.linspace(1, 0, steps + 1),
        alpha_bar=cosine,
        self_condition=False,
    )


def _distil(method: str, nfe: int, g: torch.Generator, teacher_steps: int = 8, steps: int = 400) -> Linear:
    teacher, student = Linear(), Linear()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfg = DistillConfig(
        method=method,
        nfe=nfe,
        teacher_steps=teacher_steps,
        steps_per_round=steps,
        batch_size=256,
        lr=3e-2,
        ema_decay=0.5,
    )
    rounds = run_distillation(
        student,
        teacher,
        lambda net, ctx, first: net,
        lambda step: (S * torch.randn(256, 4, 2, generator=g), None, None),
        cfg,
        cosine,
        g,
        progress=False,
        log=lambda s: None,
    )
    assert [r["student_steps"] for r in rounds] == (
        round_grids(teacher_steps, nfe) if method == "progressive" else [nfe]
    )
    return student


@pytest.mark.parametrize("method,nfe", [("progressive", 1), ("progressive", 2), ("consistency", 1)])
def test_student_of_a_gaussian_teacher_matches_its_samples(method, nfe):
    """The teacher's 8-step DDIM samples of Gaussian data are a linear map of the starting noise; the student
    must reproduce them, sample by sample, in ``nfe`` steps. The teacher's own sampler at nfe steps is far off
    (its first step from pure noise estimates x0 = 0), so passing means the student learned the map."""
    g = torch.Generator().manual_seed(1)
    student = _distil(method, nfe, g)
    x1 = torch.randn(2000, 4, 2, generator=g)
    want = _teacher_samples(x1, 8)
    got = ddim(
        lambda x, t, sc: student(x, t), x1, torch.linspace(1, 0, nfe + 1), alpha_bar=cosine, self_condition=False
    )
    naive = _teacher_samples(x1, nfe)
    err = (got - want).norm() / want.norm()
    assert err < 0.05, err
    assert (naive - want).norm() / want.norm() > 0.3


def test_multistep_consistency_sampling_of_an_exact_consistency_function():
    """With the exact consistency function of the flow (x_t -> the end of its ODE trajectory, here a linear
    map read off a 256-step DDIM run), multistep consistency sampling draws the data's distribution at any
    step count: std S in 1, 2 and 4 steps; DDIM with the same function drifts off as steps are added."""
    from sedlm.sampling.samplers import consistency

    flow_map = Linear()
    with torch.no_grad():
        for k in range(65):
            t = torch.linspace(k / 64, 0, 4 * k + 1) if k else torch.zeros(1)
            one = torch.ones(1, 1, 1)
            flow_map.w[k] = _run(one, t).item() if k else 1.0
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(4000, 4, 2, generator=g)
    for k in (1, 2, 4):
        out = consistency(
            lambda x, t, sc: flow_map(x, t),
            x1,
            torch.linspace(1, 0, k + 1),
            alpha_bar=cosine,
            generator=g,
            self_condition=False,
        )
        assert out.std().item() == pytest.approx(S, abs=0.02), k
    drift = ddim(lambda x, t, sc: flow_map(x, t), x1, torch.linspace(1, 0, 5), alpha_bar=cosine, self_condition=False)
    assert abs(drift.std().item() - S) > 0.05


def _run(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    return ddim(lambda x, t, sc: exact_coef(t)[:, None, None] * x, x, ts, alpha_bar=cosine, self_condition=False)


def test_distill_command_writes_a_few_step_student(tmp_path, corpus_file, capsys):
    from conftest import TINY

    from sedlm.api import load_pretrained
    from sedlm.cli import main

    teacher = tmp_path / "teacher"
    assert main(["train", "--out", str(teacher), *TINY, f"data.source={corpus_file}", "train.max_steps=4"]) == 0
    out = tmp_path / "student"
    assert (
        main(
            [
                "distill",
                "--ckpt",
                str(teacher),
                "--out",
                str(out),
                "--nfe",
                "2",
                "--teacher-steps",
                "8",
                "--steps-per-round",
                "3",
                "--batch-size",
                "4",
                "--save-rounds",
            ]
        )
        == 0
    )
    record = json.loads((out / "distill.json").read_text())
    assert [r["student_steps"] for r in record["rounds"]] == [4, 2] and record["student_optimizer_steps"] == 6
    assert record["teacher_sampler"].startswith("ddim, both self-conditioning passes")  # what the student copies
    assert (out / "round-4" / "model.safetensors").is_file()
    student = load_pretrained(out)
    assert student.config.sample.steps == 2 and student.config.diffusion.self_cond == "off"
    calls = []
    student.model.register_forward_pre_hook(lambda *a: calls.append(1))
    texts = student.infill("The king [___:3] in the castle.", n=2)
    assert len(calls) == 2 and all(t.startswith("The king") for t in texts)  # nfe calls, given text kept
    capsys.readouterr()
    assert main(["distill", "--ckpt", str(teacher), "--out", str(out), "--nfe", "2"]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_a_block_teacher_denoises_each_block_given_only_the_true_blocks_before_it():
    """The distillation estimate of a block model reads the clean row under the block mask: changing the
    noisy state of a later block leaves an earlier block's estimate unchanged, and changing the clean row
    after a block does too; without the clean row every block would read every other noisy block."""
    from conftest import TINY

    from sedlm.distill import sed_estimates
    from sedlm.families import load_config
    from sedlm.model.denoiser import SEDDenoiser

    cfg = load_config(None, [*TINY, "diffusion.block_size=4", "model.vocab_size=50"])
    torch.manual_seed(0)
    model = SEDDenoiser.from_config(cfg, torch.randn(50, cfg.model.d_embed)).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (2, 16), generator=g)
    x = torch.randn(2, 16, cfg.model.d_embed, generator=g)
    t = torch.full((2,), 0.6)
    zeros, m = torch.zeros_like(x), torch.zeros(2, 16)
    est = sed_estimates(model, zeros, m, two_pass=True, clean=ids)(x, t)
    later = x.clone()
    later[:, 8:] += 1.0  # blocks 2 and 3
    moved = sed_estimates(model, zeros, m, two_pass=True, clean=ids)(later, t)
    assert torch.allclose(est[:, :8], moved[:, :8], atol=1e-6) and not torch.allclose(est[:, 8:], moved[:, 8:])
    other = ids.clone()
    other[:, 8:] = (other[:, 8:] + 1) % 50  # the true text after block 1
    assert torch.allclose(
        est[:, :8], sed_estimates(model, zeros, m, two_pass=True, clean=other)(x, t)[:, :8], atol=1e-6
    )
    blind = sed_estimates(model, zeros, m, two_pass=True)(later, t)  # no clean row: the whole row at once
    assert not torch.allclose(blind[:, :8], sed_estimates(model, zeros, m, two_pass=True)(x, t)[:, :8], atol=1e-4)


def test_a_block_teacher_gives_a_per_block_student(tmp_path, corpus_file, monkeypatch):
    from conftest import TINY

    import sedlm.distill as distill_mod
    from sedlm.api import load_pretrained
    from sedlm.distill import distill
    from sedlm.families import load_config
    from sedlm.train.trainer import train

    reads = []
    real = distill_mod.sed_estimates

    def spy(*a, **kw):
        reads.append(kw.get("clean"))
        return real(*a, **kw)

    monkeypatch.setattr(distill_mod, "sed_estimates", spy)

    teacher = tmp_path / "teacher"
    cfg = load_config(None, [*TINY, f"data.source={corpus_file}", "train.max_steps=3", "diffusion.block_size=4"])
    train(cfg, teacher, progress=False, log=lambda s: None)
    dcfg = DistillConfig(nfe=1, teacher_steps=2, steps_per_round=2, batch_size=4)
    record = distill(teacher, tmp_path / "student", dcfg, progress=False, log=lambda s: None)
    assert record["per_block"] == 4 and record["student_optimizer_steps"] == 2
    assert reads and all(c is not None and c.shape == (4, 16) for c in reads)  # teacher and student read the rows
    student = load_pretrained(tmp_path / "student")
    assert student.config.diffusion.block_size == 4 and student.config.sample.steps == 1
    calls = []
    student.model.register_forward_pre_hook(lambda *a: calls.append(1))
    student.generate_ids(2, stop_at_eos=False)
    assert len(calls) == 16 // 4  # one network call per block (the cache's clean passes are not forward calls)
