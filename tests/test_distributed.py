"""Training on several processes, exact resume after SIGKILL, crash-safe checkpoints, token shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, make_documents

from sedlm.data.corpora import iter_documents
from sedlm.data.packing import PackedRows, pack_rows, tokenize_documents
from sedlm.data.shards import in_validation, load_prepared, prepare_shards, token_dtype
from sedlm.data.tokenizer import train_bpe
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.train import checkpoint as ckpt
from sedlm.train.distributed import micro_batches

BIN = Path(sys.executable).parent
# Two micro-batches of 4 rows per step: one process accumulates both, two processes take one each.
SPLIT = [*TINY, "train.batch_size=8", "train.micro_batch_size=4", "train.log_every=1", "train.device=cpu"]


def _env() -> dict[str, str]:
    # One thread per process in both runs, as torchrun sets it, so the arithmetic is the same.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def _train_cmd(launcher: list[str], corpus: Path, out: Path, extra: list[str]) -> list[str]:
    flags = [a for a in extra if a.startswith("--")]  # options before the positional overrides
    return [
        *launcher,
        "-m",
        "sedlm",
        "train",
        "--data",
        str(corpus),
        "--out",
        str(out),
        *flags,
        *SPLIT,
        *[a for a in extra if not a.startswith("--")],
    ]


TORCHRUN = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]


@pytest.mark.parametrize("method,strategy", [("sed", "ddp"), ("ar", "ddp"), ("mdlm", "ddp"), ("sed", "fsdp")])
def test_two_processes_follow_the_one_process_loss_curve(corpus_file, tmp_path, method, strategy):
    extra = [f"--method={method}", f"train.strategy={strategy}"]
    one = subprocess.run(
        _train_cmd([sys.executable], corpus_file, tmp_path / "one", extra),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        _train_cmd(TORCHRUN, corpus_file, tmp_path / "two", extra),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 process(es) x 1 micro-batch(es) x 4" in two.stdout + two.stderr
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-4)
    # the main process alone wrote the checkpoint, and it loads
    assert ckpt.load_checkpoint(tmp_path / "two")[0].family == method
    assert ckpt.load_training_state(tmp_path / "two")["meta"]["processes"] == 2


def test_sigkill_then_resume_repeats_the_uninterrupted_losses(corpus_file, tmp_path):
    extra = ["train.max_steps=40", "train.checkpoint_every=5", "train.eval_every=10"]
    full = subprocess.run(
        _train_cmd([sys.executable], corpus_file, tmp_path / "full", extra),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd([sys.executable], corpus_file, run, extra),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        log = run / "metrics.jsonl"
        if log.is_file() and log.read_text().count("\n") >= 13:  # past two checkpoints, mid-run
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = ckpt.load_training_state(run)["meta"]["step"]
    assert 10 <= saved_step < 40

    resumed = subprocess.run(
        [sys.executable, "-m", "sedlm", "train", "--out", str(run), "--resume"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _losses(run) == _losses(tmp_path / "full")
    # the EMA weights (what inference loads) are bit-identical too
    for k, v in ckpt.load_checkpoint(tmp_path / "full")[1].items():
        assert torch.equal(v, ckpt.load_checkpoint(run)[1][k]), k


CRASH = """
import os, signal, sys
from sedlm.train import checkpoint as ckpt
config, weights, tok = ckpt.load_checkpoint(sys.argv[1])
real = ckpt.save_file
def dying(tensors, path, *a, **k):
    real(tensors, path, *a, **k)
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-save, after the first file is written
ckpt.save_file = dying
ckpt.save_checkpoint(sys.argv[1], config, {k: v + 1 for k, v in weights.items()}, tok)
"""


def test_a_process_killed_while_saving_leaves_the_previous_checkpoint(corpus_file, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run(
        _train_cmd([sys.executable], corpus_file, run, []), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before = ckpt.load_checkpoint(run)[1]
    crash = subprocess.run([sys.executable, "-c", CRASH, str(run)], env=_env(), capture_output=True, timeout=120)
    assert crash.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".pending-") for p in run.iterdir())  # the half-written save is there
    after = ckpt.load_checkpoint(run)[1]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.name.startswith(".pending-") for p in run.iterdir())  # and cleared on load
    assert ckpt.load_training_state(run)["meta"]["step"] == 6


def _corpus(tmp_path: Path, n_docs: int) -> tuple[Path, list[str]]:
    docs = make_documents(n_docs=n_docs, sentences=12, seed=3)
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path, docs


def test_prepare_round_trips_text_to_shards_to_rows_under_a_memory_cap(tmp_path):
    src, docs = _corpus(tmp_path, 200)
    tok = train_bpe(docs, 300)
    expected = {
        s: tokenize_documents(tok, [d for d in docs if in_validation(d, 0.1, 0) == (s == "val")])
        for s in ("train", "val")
    }
    cap_mb = 0.01  # a 2,621-token buffer for a corpus of ~37,000 tokens
    r = prepare_shards(
        lambda: iter_documents(str(src)),
        tmp_path / "prep",
        tok,
        val_fraction=0.1,
        shard_tokens=4000,
        max_memory_mb=cap_mb,
        progress=False,
    )
    assert sum(r.tokens.values()) > 10 * cap_mb * 2**20 / 2 / 2  # the corpus is far larger than the cap
    longest_doc = max(len(ids) + 1 for ids in tok.encode_batch(docs))
    assert r.peak_buffered_tokens <= cap_mb * 2**20 / 2 / 2 + longest_doc
    assert r.dtype == "uint16" and r.shards["train"] >= 5
    index = json.loads((tmp_path / "prep" / "index.json").read_text())
    for split in ("train", "val"):
        files = [tmp_path / "prep" / s["file"] for s in index["splits"][split]["shards"]]
        stream = np.concatenate([np.fromfile(f, dtype=np.uint16) for f in files])
        assert np.array_equal(stream.astype(np.int64), expected[split])  # text -> shards, exactly
    loaded_tok, train_rows, val_rows = load_prepared(tmp_path / "prep", seq_len=16)
    assert loaded_tok.vocab_size == tok.vocab_size
    want = pack_rows(expected["train"], 16)
    assert train_rows.shape == want.shape
    assert torch.equal(train_rows[list(range(len(train_rows)))], want)  # shards -> rows, across shard borders
    assert torch.equal(train_rows[5:9], want[5:9]) and torch.equal(val_rows[[0]], pack_rows(expected["val"], 16)[:1])


def test_prepared_folder_trains_and_processes_read_disjoint_parts(tmp_path, tiny_overrides):
    src, docs = _corpus(tmp_path, 80)
    prepare_shards(lambda: iter_documents(str(src)), tmp_path / "prep", lambda d: train_bpe(d, 300), progress=False)
    cfg = load_config(None, [*tiny_overrides, f"data.source={tmp_path / 'prep'}"])
    from sedlm.train.trainer import train

    result = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert result.step == 6 and result.val_loss is not None
    _, rows, _ = load_prepared(tmp_path / "prep", 16)
    packed = PackedRows(rows, pad_id=0, pad_fraction=0.1)
    whole = packed.batch(3, 8, seed=0)
    parts = [packed.batch(3, 8, seed=0, part=slice(r * 4, (r + 1) * 4)) for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)  # two processes' shares make up the global batch, padding included
    idx = packed._indices(3, 8, 0)
    assert len(set(idx[:4]) & set(idx[4:])) == 0


def test_prepare_leaves_nothing_on_failure_and_rejects_bad_input(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(SedlmError, match="no training documents"):
        prepare_shards(
            lambda: iter_documents(str(empty)), tmp_path / "out", lambda d: train_bpe(d, 300), progress=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SedlmError, match="not empty"):
        prepare_shards(lambda: iter(["a b"]), tmp_path / "full", lambda d: train_bpe(d, 300), progress=False)
    assert token_dtype(50_257) == np.uint16 and token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32


def test_hf_sources_stream_from_local_files(tmp_path):
    src, docs = _corpus(tmp_path, 5)
    stream = iter_documents(f"hf:json?data_files={src}")
    assert next(stream) == docs[0] and list(stream) == docs[1:]


def test_global_batch_must_split_over_processes_and_micro_batches():
    cfg = load_config(None, ["train.batch_size=8", "train.micro_batch_size=3"])
    with pytest.raises(SedlmError, match="micro_batch_size=3"):
        micro_batches(cfg, 1)
    cfg.train.micro_batch_size = 2
    assert micro_batches(cfg, 2) == (2, 2)
    with pytest.raises(SedlmError, match="does not split over 3 processes"):
        micro_batches(cfg, 3)


def test_prepare_cli_writes_a_folder_train_reads(tmp_path, corpus_file):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "sedlm",
            "prepare",
            "--data",
            str(corpus_file),
            "--out",
            str(tmp_path / "p"),
            "data.vocab_size=300",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "train:" in res.stdout and (tmp_path / "p" / "index.json").is_file()
    again = subprocess.run(
        [sys.executable, "-m", "sedlm", "prepare", "--data", str(corpus_file), "--out", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode != 0 and "not empty" in again.stderr and "Traceback" not in again.stderr
    shutil.rmtree(tmp_path / "p")


def test_gpu_throughput_benchmark_runs_on_cpu(tmp_path):
    name = tmp_path / "gt"
    res = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_throughput.py",
            "--device",
            "cpu",
            "--config",
            "tiny",
            "--compile",
            "off",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--batch-size",
            "2",
            "--vocab-size",
            "300",
            "--peak-tflops",
            "1",
            "--name",
            str(name),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["method"]: r for r in json.loads(name.with_suffix(".json").read_text())["rows"]}
    assert set(rows) == {"sed", "ar"} and all(r["tokens_per_s"] > 0 and r["mfu"] > 0 for r in rows.values())
    # both self-conditioning passes carry gradients: SED does about twice the AR model's work per token
    assert 1.5 < rows["sed"]["gflops_per_token"] / rows["ar"]["gflops_per_token"] < 2.5


def test_paper_config_trains_its_global_batch_through_accumulation(tmp_path, corpus_file):
    from sedlm.config import resolve_config_path
    from sedlm.train.trainer import train

    small = [
        "model.d_model=32",
        "model.n_layers=1",
        "model.n_heads=2",
        "model.d_embed=8",
        "data.vocab_size=300",
        "embed.kind=random",
        "train.max_steps=1",
        "train.device=cpu",
        "data.val_fraction=0",
        f"data.source={corpus_file}",
    ]
    cfg = load_config(resolve_config_path("sed-s"), small)
    assert cfg.train.batch_size * cfg.data.seq_len == 256 * 256  # the paper's 65,536 tokens per step
    lines: list[str] = []
    result = train(cfg, tmp_path / "run", progress=False, log=lines.append)
    assert result.step == 1 and any(
        "global batch 256 rows = 1 process(es) x 8 micro-batch(es) x 32" in s for s in lines
    )


def test_gpu_generation_benchmark_runs_each_point_with_its_own_network_calls(tmp_path):
    """Every point runs through the family's generate with its own sampler and steps: one untimed warm-up
    call and ``--repeats`` timed ones, each costing ``steps`` SED calls or L AR calls (prefill + L - 1)."""
    from benchmarks import gpu_generation
    from sedlm.families.ar import ARModel
    from sedlm.model.denoiser import SEDDenoiser

    calls = {"sed": 0, "ar": 0}

    def count(module, args):
        if isinstance(module, SEDDenoiser):
            calls["sed"] += 1
        elif isinstance(module, ARModel):
            calls["ar"] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        argv = ["--device", "cpu", "--config", "tiny", "--compile", "off", "--sed", "ddim:3", "--batch-sizes", "1", "2"]
        argv += ["--repeats", "2", "--vocab-size", "300", "--name", str(tmp_path / "gg")]
        assert gpu_generation.main([*argv, "model.n_layers=1", "data.seq_len=8"]) == 0
    finally:
        handle.remove()
    L, runs = 8, 2 * (1 + 2)  # two batch sizes, each warm-up + 2 timed calls
    assert calls == {"sed": runs * 3, "ar": runs * L}
    rows = json.loads((tmp_path / "gg.json").read_text())["rows"]
    assert [(r["method"], r["batch_size"], r["nfe"]) for r in rows] == [
        ("ar", 1, L),
        ("ar", 2, L),
        ("sed ddim 3", 1, 3),
        ("sed ddim 3", 2, 3),
    ]
    ar = {r["batch_size"]: r["seconds_per_batch"] for r in rows if r["method"] == "ar"}
    for r in rows:  # the ratio is taken before rounding: compare loosely
        assert r["tokens_per_s"] > 0
        assert r["sed_over_ar_latency"] == pytest.approx(r["seconds_per_batch"] / ar[r["batch_size"]], rel=0.02)
