import json
import subprocess
import sys

import pytest
import torch

from sedlm.cli import build_parser, main

SUBCOMMANDS = [
    "quickstart",
    "corpora",
    "embed",
    "train",
    "prepare",
    "recipes",
    "sample",
    "infill",
    "distill",
    "serve",
    "lm-eval",
    "eval",
    "bench",
]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_subcommand_has_help(capsys):
    names = set(build_parser()._subparsers._group_actions[0].choices)
    assert names == set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: sedlm " + name in capsys.readouterr().out


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "sedlm", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "quickstart" in res.stdout


def test_corpora_lists_bundled(capsys):
    code, out, _ = run(["corpora", "--no-stats"], capsys)
    assert code == 0 and "shakespeare" in out and "wiki" in out and "(default)" in out


def test_train_then_sample_end_to_end(tmp_path, tiny_overrides, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(["train", "--out", str(out), *tiny_overrides], capsys)
    assert code == 0 and "checkpoint in" in stdout
    code, stdout, _ = run(["sample", "--ckpt", str(out), "--n", "3", "--steps", "6", "--seed", "1", "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert len(result["samples"]) == 3 and result["steps"] == 6 and result["sampler"] == "ddpm"
    code, again, _ = run(["sample", "--ckpt", str(out), "--n", "3", "--steps", "6", "--seed", "1", "--json"], capsys)
    assert json.loads(again)["samples"] == result["samples"]
    code, text, _ = run(["sample", "--ckpt", str(out), "--n", "2", "--steps", "4", "--sampler", "ddim"], capsys)
    assert code == 0 and text.count("--- sample") == 2
    # resume: continue the same run to more steps
    code, stdout, _ = run(["train", "--out", str(out), "--resume", "train.max_steps=8"], capsys)
    assert code == 0 and "step 8" in stdout


def test_embed_then_train_with_the_table(tmp_path, tiny_overrides, capsys):
    emb = tmp_path / "emb"
    over = [o for o in tiny_overrides if not o.startswith("embed.kind")] + [
        "embed.steps=3",
        "embed.d_model=16",
        "embed.n_layers=1",
    ]
    code, stdout, _ = run(["embed", "--out", str(emb), *over], capsys)
    assert code == 0 and (emb / "embeddings.safetensors").is_file() and (emb / "tokenizer.json").is_file()
    code, stdout, _ = run(["train", "--out", str(tmp_path / "run"), *over, f"embed.path={emb}"], capsys)
    assert code == 0


def _one_line_error(code, err, fragment):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--data", "/nonexistent/file.txt"], "not found"),
        (["train", "--data", "corpus:nope"], "unknown corpus 'nope'"),
        (["train", "--config", "/nonexistent.yaml"], "config file"),
        (["train", "train.bogus=1"], "unknown config key 'train.bogus'"),
        (["train", "train.max_steps=many"], "expects int"),
        (["sample", "--ckpt", "/tmp"], "not a sedlm checkpoint folder"),
    ],
)
def test_user_errors_are_one_line(args, fragment, capsys, tmp_path):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "out")]
    code, _, err = run(args, capsys)
    _one_line_error(code, err, fragment)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_empty_data_and_unknown_sampler(tmp_path, tiny_overrides, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run(["train", "--out", str(tmp_path / "o"), *tiny_overrides, "--data", str(empty)], capsys)
    _one_line_error(code, err, "contains no text")
    assert not (tmp_path / "o").exists()
    out = tmp_path / "run"
    assert run(["train", "--out", str(out), *tiny_overrides], capsys)[0] == 0
    code, _, err = run(["sample", "--ckpt", str(out), "--sampler", "nope"], capsys)
    _one_line_error(code, err, "valid values: ddpm")
    code, _, err = run(["sample", "--ckpt", str(out), "--temperature", "0.5"], capsys)  # an option of other families
    _one_line_error(code, err, "family sed has no sampling option temperature")
    code, _, err = run(["train", "--out", str(out), *tiny_overrides], capsys)
    _one_line_error(code, err, "already holds a run")


def test_console_script_reports_errors_without_traceback(tmp_path):
    exe = [sys.executable, "-m", "sedlm"]
    res = subprocess.run([*exe, "sample", "--ckpt", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "checkpoint" in res.stderr


def test_ctrl_c_saves_and_exits_cleanly(tmp_path, tiny_overrides):
    import os
    import signal
    import time

    out = tmp_path / "run"
    over = [o for o in tiny_overrides if not o.startswith(("train.max_steps", "train.checkpoint_every"))]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sedlm",
            "train",
            "--out",
            str(out),
            *over,
            "train.max_steps=100000",
            "train.checkpoint_every=100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stdout
    state = json.loads((out / "training_state" / "state.json").read_text())
    assert state["step"] >= 2
    assert not list(out.glob(".pending-*"))


def test_guidance_without_given_tokens_is_a_one_line_note(tmp_path, capsys):
    from tiny_runs import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "sed")
    code, out, err = run(
        ["sample", "--ckpt", str(ckpt), "--n", "1", "--steps", "2", "--guidance", "2", "--json"], capsys
    )
    assert code == 0 and json.loads(out)
    assert err.strip().count("\n") == 0 and "note: guidance 2 in mode 'cond'" in err and "runs unguided" in err
    code, out, err = run(
        ["sample", "--ckpt", str(ckpt), "--n", "1", "--steps", "2", "--guidance", "2", "--guidance-mode", "self_cond"],
        capsys,
    )
    assert code == 0 and "note" not in err


def test_fine_tune_from_a_checkpoint_keeps_its_tokenizer_and_table(tmp_path, tiny_overrides, capsys):
    from safetensors.torch import load_file

    base = tmp_path / "base"
    assert run(["train", "--out", str(base), *tiny_overrides], capsys)[0] == 0
    book = tmp_path / "book.txt"
    book.write_text(
        "\n\n".join(f"Chapter {i}. The whale rose from the grey sea and the sailors cried out." for i in range(60))
    )
    tuned = tmp_path / "tuned"
    code, _, err = run(
        ["train", "--init", str(base), "--data", str(book), "--out", str(tuned), "train.max_steps=3"], capsys
    )
    assert code == 0, err
    assert (tuned / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    a, b = load_file(str(base / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    assert torch.equal(a["embedding.table"], b["embedding.table"])  # the frozen table travels with the model
    assert not torch.equal(a["inp.weight"], b["inp.weight"])  # and the denoiser was trained further
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["data"]["source"] == str(book) and cfg["train"]["max_steps"] == 3
    code, _, err = run(["train", "--init", str(base), "--out", str(tmp_path / "x"), "model.d_model=64"], capsys)
    _one_line_error(code, err, "do not fit the model")
    assert not (tmp_path / "x").exists()
    code, _, err = run(["train", "--init", str(base), "--method", "ar", "--out", str(tmp_path / "y")], capsys)
    _one_line_error(code, err, "drop --config, --recipe")


def test_sample_precision_choices_are_the_librarys():
    """`sedlm sample --precision` keeps its choices literal too; they must be the config's list."""
    from sedlm.devices import PRECISIONS

    for command in ("sample", "infill"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        action = next(a for a in sub._actions if "--precision" in a.option_strings)
        assert tuple(action.choices) == PRECISIONS


def test_eval_estimator_choices_are_the_librarys():
    """`sedlm eval --estimator` keeps its choices literal (the CLI imports no torch to print --help); they must
    be the library's list."""
    from sedlm.eval.likelihood import ESTIMATORS

    sub = build_parser()._subparsers._group_actions[0].choices["eval"]
    action = next(a for a in sub._actions if "--estimator" in a.option_strings)
    assert tuple(action.choices) == ESTIMATORS
