import json
import os

import pytest
import torch

from sedlm import SED
from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.train import checkpoint as ckpt
from sedlm.train.trainer import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_file):
    from conftest import TINY

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = load_config(None, [*TINY, f"data.source={corpus_file}"])
    result = train(cfg, out, progress=False, log=lambda s: None)
    return out, result


def test_run_folder_layout(trained):
    out, result = trained
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.jsonl",
        "training_state/model.safetensors",
        "training_state/optimizer.safetensors",
        "training_state/state.json",
    ]:
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["format_version"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all({"step", "loss", "lr", "tokens_per_s"} <= set(r) for r in rows)
    assert any("val_loss" in r for r in rows)
    assert not list(out.glob(".pending-*")) and not (out / ".ready").exists()


def test_round_trip_gives_bit_identical_samples(trained, tmp_path):
    out, _ = trained
    model = SED.from_pretrained(out)
    a = model.generate_ids(n=2, steps=8, seed=3)
    model.save_pretrained(tmp_path / "copy")
    b = SED.from_pretrained(tmp_path / "copy").generate_ids(n=2, steps=8, seed=3)
    assert torch.equal(a, b)
    assert torch.equal(a, SED.from_pretrained(out).generate_ids(n=2, steps=8, seed=3))
    assert not torch.equal(a, model.generate_ids(n=2, steps=8, seed=4))
    texts = model.generate(n=2, steps=8, seed=3)
    assert len(texts) == 2 and all("<pad>" not in t for t in texts)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(SedlmError, match="not a sedlm checkpoint folder"):
        SED.from_pretrained(tmp_path)


def test_failed_save_keeps_previous_checkpoint(trained, tmp_path, monkeypatch):
    out, _ = trained
    model = SED.from_pretrained(out)
    target = tmp_path / "c"
    model.save_pretrained(target)
    before = (target / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(model.tokenizer, "save", boom)
    with pytest.raises(OSError):
        model.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert not list(target.glob(".pending-*"))


def test_committed_save_is_rolled_forward(trained, tmp_path):
    out, _ = trained
    model = SED.from_pretrained(out)
    target = tmp_path / "c"
    model.save_pretrained(target)
    # Simulate a crash right after the commit point: entries still in .ready
    ready = target / ".ready"
    ready.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        os.replace(target / name, ready / name)
    again = SED.from_pretrained(target)
    assert torch.equal(again.generate_ids(n=1, steps=4), model.generate_ids(n=1, steps=4))
    assert not ready.exists()


def test_resume_continues_with_the_same_losses(corpus_file, tmp_path):
    from conftest import TINY

    over = [*TINY, f"data.source={corpus_file}", "train.log_every=1", "train.eval_every=100"]
    full = train(load_config(None, over), tmp_path / "full", progress=False, log=lambda s: None)
    part_cfg = load_config(None, [*over, "train.max_steps=3"])
    train(part_cfg, tmp_path / "part", progress=False, log=lambda s: None)
    resumed_cfg = ckpt.load_checkpoint(tmp_path / "part")[0]
    logged = []
    train(resumed_cfg, tmp_path / "part", resume=True, progress=False, log=logged.append)
    assert any("already reached train.max_steps=3" in m and "nothing to train" in m for m in logged), logged
    # a killed run logged steps 4 and 5 (and half a line) after its last checkpoint: they are redone, not repeated
    with (tmp_path / "part" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "loss": 9.0}\n{"step": 5, "loss": 9.0}\n{"step": 6, "lo')
    resumed_cfg.train.max_steps = 6
    logged.clear()
    resumed = train(resumed_cfg, tmp_path / "part", resume=True, progress=False, log=logged.append)
    assert any(
        "resuming from the checkpoint at step 3, training to step 6; steps 4-5 ran after that checkpoint and "
        "are redone" in m
        for m in logged
    ), logged
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history[3:]]
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and 9.0 not in [r["loss"] for r in rows]
    with pytest.raises(SedlmError, match="already holds a run"):
        train(load_config(None, over), tmp_path / "full", progress=False, log=lambda s: None)


def test_leftover_temporary_folders_are_cleared_on_load(trained, tmp_path):
    import shutil

    from sedlm.train.checkpoint import load_checkpoint

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained[0], ckpt)
    for name in (".pending-abc", ".old-training_state"):  # what a kill between two renames leaves
        (ckpt / name).mkdir()
        (ckpt / name / "x").write_text("stale")
    load_checkpoint(ckpt)
    assert not list(ckpt.glob(".pending-*")) and not list(ckpt.glob(".old-*"))


def test_every_checkpoint_carries_a_model_card_that_loading_ignores(tmp_path):
    """README.md with Hugging Face model-card metadata, written with the checkpoint; an evaluation adds its
    figures; a damaged card does not stop loading."""
    import yaml

    from sedlm.data.tokenizer import train_word_level
    from sedlm.families.ar import ARModel
    from sedlm.train.card import refresh_card
    from sedlm.train.checkpoint import load_checkpoint, save_checkpoint

    cfg = load_config(None, ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.vocab_size=40"])
    cfg.family, cfg.recipe = "ar", ""
    tok = train_word_level(["a b c d e f"] * 4, vocab_size=40)
    weights = ARModel(cfg.model).state_dict()
    meta = {"step": 7}
    save_checkpoint(
        tmp_path,
        cfg,
        weights,
        tok,
        {"model": weights, "optimizer": {"state": {}, "param_groups": []}, "rng": {}, "meta": meta},
    )
    text = (tmp_path / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "sedlm" and "ar" in front["tags"]
    n = sum(t.numel() for t in weights.values())
    assert f"| parameters | {n:,}" in text and "| training steps | 7 |" in text
    refresh_card(tmp_path, {"model": {"judge_nll": 6.25, "unigram_entropy": 4.5}, "data": {"judge_nll": 4.75}})
    text = (tmp_path / "README.md").read_text()
    assert "## Evaluation" in text and "| judge NLL (nats/token) | 6.25 | 4.75 |" in text
    (tmp_path / "README.md").write_text("---\n[broken yaml")
    assert load_checkpoint(tmp_path)[0].family == "ar"


def _event_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TensorBoard event files under ``folder``: each record is a length (uint64), its CRC,
    an Event protobuf and its CRC."""
    import struct

    from tensorboardX.proto import event_pb2

    found: dict[str, list[tuple[int, float]]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + n])
            at += 12 + n + 4
            for v in event.summary.value:
                found.setdefault(v.tag, []).append((event.step, v.simple_value))
    return found


def test_training_reports_to_tensorboard_and_keeps_metrics_jsonl(tmp_path, tiny_overrides):
    from sedlm.cli import main

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *tiny_overrides, "train.max_steps=4", "train.report_to=tensorboard"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _event_scalars(out / "sedlm")
    assert [s for s, _ in scalars["loss"]] == [r["step"] for r in rows]
    assert [v for _, v in scalars["loss"]] == pytest.approx([r["loss"] for r in rows], rel=1e-5)
    assert "val_loss" in scalars
    with pytest.raises(SedlmError, match="train.report_to"):
        load_config(None, ["train.report_to=tensorbored"])
