"""Generation precision (``sample.precision``): bf16 autocast on CUDA by default, fp32 elsewhere, applied by
every generation path (the API, the server's runner, the lm-eval adapter) through ``PretrainedLM.run``."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sedlm.devices import generation_autocast
from sedlm.errors import SedlmError


def test_cpu_generation_runs_in_fp32_and_refuses_bf16():
    cpu = torch.device("cpu")
    for precision in ("auto", "fp32"):
        assert isinstance(generation_autocast(cpu, precision), contextlib.nullcontext)
    with pytest.raises(SedlmError, match="needs a CUDA device"):
        generation_autocast(cpu, "bf16")
    with pytest.raises(SedlmError, match="auto, bf16, fp32"):
        generation_autocast(cpu, "half")


def test_cuda_generation_autocasts_to_bf16_unless_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx = generation_autocast(cuda, "auto")  # built, not entered: no CUDA needed
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16
    assert isinstance(generation_autocast(cuda, "fp32"), contextlib.nullcontext)


@pytest.mark.parametrize("method", ["sed", "ar"])
def test_every_generation_runs_inside_the_configured_precision(tmp_path, monkeypatch, method):
    """The network's calls happen inside the context that ``sample.precision`` selects (a CPU bf16 autocast
    stands in for the CUDA one here), with the checkpoint's precision passed on."""
    from tiny_runs import tiny_checkpoint

    import sedlm.pretrained
    from sedlm.api import load_pretrained

    asked, seen = [], []
    monkeypatch.setattr(
        sedlm.pretrained,
        "generation_autocast",
        lambda device, precision: asked.append(precision) or torch.autocast("cpu", dtype=torch.bfloat16),
    )
    model = load_pretrained(tiny_checkpoint(tmp_path / method, method, ("sample.precision=fp32",)))
    model.model.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    ids = model.generate_ids(n=2, steps=2, seq_len=8)
    assert ids.shape == (2, 8) and asked == ["fp32"] and seen and all(seen)


def test_sample_cli_bf16_on_cpu_is_a_one_line_error(tmp_path, capsys):
    from tiny_runs import tiny_checkpoint

    from sedlm.cli import main

    ckpt = tiny_checkpoint(tmp_path / "sed")
    code = main(["sample", "--ckpt", str(ckpt), "--n", "1", "--steps", "2", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert code != 0 and "needs a CUDA device" in err and "Traceback" not in err


def test_precision_is_a_checked_config_key():
    from sedlm.config import load_config

    assert load_config(None, []).sample.precision == "auto"
    with pytest.raises(SedlmError, match="precision"):
        load_config(None, ["sample.precision=half"])
