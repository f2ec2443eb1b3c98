"""Wrong inputs across every subcommand: each gets exit code 2, a message of at most 3 lines naming the
problem (never a traceback), and leaves nothing behind."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY

from sedlm.cli import main


@pytest.fixture(scope="module")
def env(tmp_path_factory, corpus_file):
    """Files the cases point at: a trained tiny checkpoint, damaged copies of it, and bad text files."""
    root = tmp_path_factory.mktemp("bad")
    ckpt = root / "ckpt"
    assert main(["train", "--out", str(ckpt), *TINY, f"data.source={corpus_file}", "train.max_steps=2"]) == 0
    (root / "latin1.txt").write_bytes(
        "".join(f"Caf\xe9 {i} cr\xe8me, na\xefve.\n\n" for i in range(50)).encode("latin-1")
    )
    (root / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (root / "empty.txt").write_text("\n\n")
    (root / "a_file").write_text("not a folder")
    (root / "bad.yaml").write_text("model: [unclosed\n")
    (root / "list.yaml").write_text("- a\n- b\n")
    for name, damage in {
        "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
        "garbage": lambda p: p.write_bytes(b"\x00" * 4096),
    }.items():
        shutil.copytree(ckpt, root / name)
        damage(root / name / "model.safetensors")
    shutil.copytree(ckpt, root / "badjson")
    (root / "badjson" / "config.json").write_text("{ not json")
    shutil.copytree(ckpt, root / "badmethod")
    cfg = json.loads((ckpt / "config.json").read_text())
    (root / "badmethod" / "config.json").write_text(json.dumps({**cfg, "method": "nope"}))
    shutil.copytree(ckpt, root / "resized")
    (root / "resized" / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "d_model": 64}}))
    for name, text in {  # config.json files that are not a config, or describe an impossible model
        "listcfg": "[1, 2]",
        "zeroheads": json.dumps({**cfg, "model": {**cfg["model"], "n_heads": 0}}),
        "badversion": json.dumps({**cfg, "format_version": "two"}),
    }.items():
        shutil.copytree(ckpt, root / name)
        (root / name / "config.json").write_text(text)
    (root / "prepared").mkdir()
    (root / "prepared" / "x").write_text("taken")
    return root


S = ["sample", "--ckpt", "{ckpt}", "--n", "1", "--steps", "2"]


def T(*extra: str) -> list[str]:
    """A tiny training command with ``extra`` options or overrides."""
    return ["train", *TINY, "data.source={corpus}", "train.max_steps=2", *extra, "--out", "{new}"]


CASES = [
    # train: data, paths, configs, numbers
    (["train", *TINY, "--data", "{root}/latin1.txt", "--out", "{new}"], "UTF-8"),
    (["train", *TINY, "--data", "{root}/binary.txt", "--out", "{new}"], "binary"),
    (["train", *TINY, "--data", "{root}/missing.txt", "--out", "{new}"], "not found"),
    (["train", *TINY, "--data", "{root}/empty.txt", "--out", "{new}"], "contains no text"),
    (["train", *TINY, "--data", "corpus:nope", "--out", "{new}"], "corpus"),
    ([*T()[:-1], "{root}/a_file"], "is a file"),
    ([*T()[:-1], "/proc/sedlm-run"], "cannot be created"),
    (T("--config", "{root}/missing.yaml"), "not found"),
    (T("--config", "{root}/bad.yaml"), "YAML"),
    (T("--config", "{root}/list.yaml"), "mapping"),
    (T("foo"), "section.key=value"),
    (T("foo.bar=1"), "unknown config section"),
    (T("train.foo=1"), "train.foo"),
    (T("train.max_steps=abc"), "train.max_steps"),
    (T("train.max_steps=0"), "train.max_steps"),
    (T("train.lr=-1"), "train.lr"),
    (T("train.batch_size=0"), "train.batch_size"),
    (T("train.device=bogus"), "train.device"),
    (T("model.d_model=30"), "model.d_model"),
    (T("data.seq_len=1"), "data.seq_len"),
    (T("data.val_fraction=1.5"), "data.val_fraction"),
    (T("data.vocab_size=10"), "data.vocab_size"),
    (T(f"train.seed={2**70}"), "train.seed"),
    (T("train.seed=-1"), "train.seed"),
    (T("sample.guidance=nan"), "sample.guidance"),
    (T("sample.noise_temp=-1"), "sample.noise_temp"),
    (T("model.n_heads=0"), "model.n_heads"),
    (T("sundae.unroll_steps=1.5"), "sundae.unroll_steps"),
    (T("sample.top_p=abc"), "sample.top_p"),
    (T("--method", "bogus"), "invalid choice"),
    (T("--recipe", "bogus"), "valid recipes"),
    (T("--recipe", "diffusionbert", "--method", "sed"), "mdlm recipe"),
    (T("--resume"), "not a sedlm checkpoint"),
    (["train", "--out", "{root}/resized", "--resume"], "does not fit"),
    (["train", "--init", "{root}/missing", "--out", "{new}"], "missing"),
    (["train", "--init", "{ckpt}", "--out", "{new}", "model.d_model=64"], "do not fit"),
    # sample / infill
    (["sample", "--ckpt", "{root}/missing"], "missing"),
    (["sample", "--ckpt", "{root}/a_file"], "a_file"),
    (["sample", "--ckpt", "{root}/truncated"], "model.safetensors"),
    (["sample", "--ckpt", "{root}/garbage"], "model.safetensors"),
    (["sample", "--ckpt", "{root}/badjson"], "config.json"),
    (["sample", "--ckpt", "{root}/badmethod"], "nope"),
    (["sample", "--ckpt", "{root}/listcfg"], "not an object"),
    (["sample", "--ckpt", "{root}/zeroheads"], "model.n_heads"),
    (["sample", "--ckpt", "{root}/badversion"], "format_version"),
    (["sample", "--ckpt", "{root}/resized"], "do not fit"),
    (["eval", "--ckpt", "{root}/resized", "--n", "4"], "do not fit"),
    (["serve", "--ckpt", "{root}/zeroheads"], "model.n_heads"),
    ([*S, "--src", "a source line"], "data.task=seq2seq"),
    ([*S, "--n", "0"], "n"),
    ([*S, "--n", "-1"], "n"),
    ([*S, "--steps", "0"], "steps"),
    ([*S, "--guidance", "-1"], "guidance"),
    ([*S, "--guidance", "nan"], "guidance"),
    ([*S, "--guidance", "inf"], "guidance"),
    ([*S, "--noise-temp", "-1"], "--noise-temp"),
    ([*S, "--score-temp", "0"], "--score-temp"),
    ([*S, "--seed", "-1"], "seed"),
    ([*S, "--seed", str(2**70)], "seed"),
    ([*S, "--sampler", "bogus"], "valid values"),
    ([*S, "--temperature", "0.5"], "no sampling option temperature"),
    ([*S, "--device", "bogus"], "device"),
    ([*S, "--prompt", "the king speaks " * 40], "prompt"),
    (["infill", "--ckpt", "{ckpt}", "no blanks here"], "no blanks"),
    (["infill", "--ckpt", "{ckpt}", ""], "template is empty"),
    (["infill", "--ckpt", "{ckpt}", "the king [___:0] speaks"], "[___:0]"),
    (["infill", "--ckpt", "{ckpt}", "the king [___:999]"], "sequence length"),
    # eval and bench
    (["eval", "--ckpt", "{ckpt}", "--n", "0"], "n"),
    (["eval", "--ckpt", "{ckpt}", "--steps", "0"], "--steps"),
    (["eval", "--ckpt", "{ckpt}", "--out", "{root}/a_file/x.json"], "is a file"),
    (["eval", "--ckpt", "{ckpt}", "--out", "{root}"], "is a folder"),
    (["eval", "--ckpt", "{root}/missing"], "missing"),
    (["eval", "--ckpt", "{ckpt}", "--judge", "{root}/missing-judge", "--n", "4"], "missing-judge"),
    (["bench", "steps", "--ckpt", "{ckpt}", "--nfe", "abc"], "--nfe"),
    (["bench", "steps", "--ckpt", "{ckpt}", "--nfe", "0"], "--nfe"),
    (["bench", "ablate", "--variants", "bogus"], "valid variants"),
    (["bench", "compare", "--methods", "bogus", "--runs-dir", "{new}"], "unknown system"),
    (["bench", "compare", "--train-steps", "0", "--runs-dir", "{new}"], "--train-steps"),
    (["bench", "compare", "--budget-minutes", "-1", "--runs-dir", "{new}"], "--budget-minutes"),
    (["bench", "compare", "--runs-dir", "{root}/a_file"], "is a file"),
    (["bench", "ablate", "--minutes", "-1", "--runs-dir", "{new}"], "--minutes"),
    (["bench", "likelihood", "--results-dir", "{root}/a_file"], "is a file"),
    # serve, quickstart, embed, prepare
    (["serve", "--ckpt", "{ckpt}", "--port", "99999"], "--port"),
    (["serve", "--ckpt", "{ckpt}", "--port", "-1"], "--port"),
    (["serve", "--ckpt", "{ckpt}", "--max-n", "0"], "--max-n"),
    (["serve", "--ckpt", "{root}/missing"], "missing"),
    (["quickstart", "--steps", "0", "--out", "{new}"], "--steps"),
    (["embed", "--data", "{root}/missing.txt", "--out", "{new}", *TINY], "not found"),
    (["embed", "--data", "corpus:shakespeare", "--out", "{root}/a_file", *TINY], "is a file"),
    (["prepare", "--data", "corpus:shakespeare", "--out", "{root}/a_file"], "is a file"),
    (["distill", "--ckpt", "{ckpt}", "--out", "{root}/a_file"], "is a file"),
    (["prepare", "--data", "corpus:shakespeare", "--out", "{root}/prepared"], "prepared"),
]


@pytest.mark.parametrize("argv, fragment", CASES, ids=[f"{i:02d}-{' '.join(a[:2])}" for i, (a, _) in enumerate(CASES)])
def test_wrong_input_gets_a_short_clear_error_and_leaves_nothing(argv, fragment, env, corpus_file, tmp_path, capsys):
    new = tmp_path / "new-run"
    args = [a.format(root=env, ckpt=env / "ckpt", new=new, corpus=corpus_file) for a in argv]
    before = sorted(p.name for p in env.iterdir())
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and 1 <= len(lines) <= 3, err
    assert fragment in err, err
    assert not new.exists() or not any(new.iterdir()), f"left {list(new.iterdir())}"
    assert sorted(p.name for p in env.iterdir()) == before


def test_a_busy_port_is_one_line(env, capsys):
    """Another server holds the port: one line naming it, before the model is loaded."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code = main(["serve", "--ckpt", str(env / "ckpt"), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"127.0.0.1:{port}" in err and "--port" in err


def test_the_table_is_large():
    assert len(CASES) >= 80
