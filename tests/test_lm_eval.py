"""The lm-evaluation-harness model: `sedlm lm-eval --model sedlm` on local tasks, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_documents
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_runs import tiny_checkpoint

pytest.importorskip("lm_eval")

MC = [
    {"context": "To be, or not to be, that is the", "choices": [" question", " answer", " king"], "label": 0},
    {"context": "The quality of mercy is not", "choices": [" strained", " bright"], "label": 0},
    {"context": "All the world's a", "choices": [" stage", " house", " sea"], "label": 1},
    {"context": "", "choices": [" Friends, Romans", " countrymen"], "label": 0},
]
GEN = [
    {"prompt": "To be, or not to be,", "target": " that is the question"},
    {"prompt": "Now is the winter of our", "target": " discontent"},
    {"prompt": "", "target": " anything"},
]


class _Req:
    def __init__(self, *args):
        self.args = args


def _tasks(folder: Path) -> Path:
    """A multiple-choice and a generation task over local JSONL files, as lm_eval task YAMLs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("mc", MC), ("gen", GEN)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = f"dataset_path: json\ntest_split: test\ndataset_kwargs:\n  data_files:\n    test: {folder}/{{}}.jsonl\n"
    (folder / "mc.yaml").write_text(
        "task: local_mc\n"
        + common.format("mc")
        + 'output_type: multiple_choice\ndoc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\n'
        + 'doc_to_target: "{{label}}"\ntarget_delimiter: ""\nmetric_list:\n  - metric: acc\n'
    )
    (folder / "gen.yaml").write_text(
        "task: local_gen\n"
        + common.format("gen")
        + 'output_type: generate_until\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
        + 'generation_kwargs:\n  until: ["\\n", "."]\n  max_gen_toks: 6\n'
        + "metric_list:\n  - metric: exact_match\n    higher_is_better: true\n"
    )
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm_eval_ckpts")
    return {m: tiny_checkpoint(root / m, m) for m in ("sed", "ar", "mdlm", "sundae")}


def _env() -> dict[str, str]:
    return {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_the_lm_eval_command_runs_local_tasks_on_a_checkpoint(checkpoints, tmp_path):
    """The harness's own command line, with the sedlm model registered, runs a multiple-choice and a
    generation task and writes its results file."""
    tasks = _tasks(tmp_path / "tasks")
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "sedlm", "lm-eval", "--model", "sedlm"]
    cmd += ["--model_args", f"pretrained={checkpoints['ar']}", "--tasks", "local_mc,local_gen"]
    cmd += ["--include_path", str(tasks), "--output_path", str(out), "--log_samples"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    assert 0 <= results["local_mc"]["acc,none"] <= 1
    assert 0 <= results["local_gen"]["exact_match,none"] <= 1
    samples = [json.loads(line) for line in next(out.rglob("samples_local_mc_*.jsonl")).read_text().splitlines()]
    assert len(samples) == len(MC)
    assert all(len(s["resps"]) == len(MC[s["doc_id"]]["choices"]) for s in samples)


def test_a_wrong_model_argument_is_one_line(checkpoints, tmp_path):
    tasks = _tasks(tmp_path / "tasks")
    cmd = [sys.executable, "-m", "sedlm", "lm-eval", "--model", "sedlm", "--tasks", "local_mc"]
    cmd += ["--model_args", f"pretrained={checkpoints['mdlm']},tempreature=0.5", "--include_path", str(tasks)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("sedlm lm-eval: error: unknown model argument tempreature") and "temperature" in last
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("method", ["sed", "mdlm", "sundae"])
def test_every_family_runs_the_harness(checkpoints, tmp_path, method):
    """In-process `simple_evaluate` over the same local tasks: diffusion families score choices with their
    conditional bound; a family with no likelihood (SUNDAE) runs generation and refuses choices in one line."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import sedlm.eval.lm_eval_model  # noqa: F401  registers the model
    from sedlm.errors import SedlmError

    manager = TaskManager(include_path=str(_tasks(tmp_path / "tasks")))
    args = f"pretrained={checkpoints[method]},steps=4"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    gen = lm_eval.simple_evaluate(model="sedlm", model_args=args, tasks=["local_gen"], task_manager=manager)
    assert 0 <= gen["results"]["local_gen"]["exact_match,none"] <= 1
    if method == "sundae":
        with pytest.raises(SedlmError, match="no likelihood"):
            lm_eval.simple_evaluate(model="sedlm", model_args=args, tasks=["local_mc"], task_manager=manager)
        return
    mc = lm_eval.simple_evaluate(model="sedlm", model_args=args, tasks=["local_mc"], task_manager=manager)
    assert 0 <= mc["results"]["local_mc"]["acc,none"] <= 1


def test_ar_loglikelihood_agrees_with_sedlm_eval_nll(checkpoints):
    """AR is exact: a text of one row through `loglikelihood_rolling` is that row's `sedlm eval --nll` figure
    (the same rows `likelihood` scores), and the chain rule holds between loglikelihood and rolling."""
    from sedlm.api import load_pretrained
    from sedlm.eval.likelihood import text_rows
    from sedlm.eval.lm_eval_model import SedlmLM

    harness = SedlmLM(pretrained=str(checkpoints["ar"]))
    lm, tok = harness.lm, harness.tokenizer
    rows = text_rows(load_pretrained(checkpoints["ar"]), "docs", 64, documents=make_documents(6))
    kept = [r for r in rows.tolist() if tok.encode(tok.decode(r)) == r]  # rows whose text tokenises back to them
    assert len(kept) >= 32
    ref = lm.family.nll_bound(lm.model, torch.tensor(kept), lm.config, torch.Generator(), tok) * rows.shape[1]
    got = harness.loglikelihood_rolling([_Req(tok.decode(r)) for r in kept])
    assert max(abs(a + b) for a, b in zip(got, ref.tolist())) < 1e-4
    # log p(text) = log p(context) + log p(continuation | context), when the split tokenises cleanly
    ctx, cont = tok.decode(kept[0][:6]), tok.decode(kept[0][6:])
    assert tok.encode(ctx) == kept[0][:6]
    [(pair, _)] = harness.loglikelihood([_Req(ctx, cont)])
    whole, first = harness.loglikelihood_rolling([_Req(ctx + cont), _Req(ctx)])
    assert pair + first == pytest.approx(whole, abs=1e-4)


def test_ar_is_greedy_when_each_continuation_token_is_the_argmax(checkpoints):
    from sedlm.eval.lm_eval_model import SedlmLM

    harness = SedlmLM(pretrained=str(checkpoints["ar"]))
    lm, tok = harness.lm, harness.tokenizer
    start = [tok.pad_id]  # ar.row_start=window
    ids = tok.encode("To be, or not")
    with torch.no_grad():
        for _ in range(4):  # extend greedily: the continuation is the model's greedy choice
            ids.append(int(lm.model(torch.tensor([start + ids]))[0, -1].argmax()))
    ctx, cont = ids[:-4], ids[-4:]
    rows = [harness._row(ctx + cont, len(ctx))]
    assert harness._score(rows, greedy=True)[0][1] is True
    wrong = cont[:-1] + [(cont[-1] + 1) % tok.vocab_size]
    assert harness._score([harness._row(ctx + wrong, len(ctx))], greedy=True)[0][1] is False


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 70), L=st.integers(1, 16))
def test_rolling_rows_score_every_token_once(T, L):
    from sedlm.eval.lm_eval_model import rolling_rows

    tokens = list(range(100, 100 + T))
    scored = []
    for row, held in rolling_rows(tokens, L, pad_id=0):
        assert len(row) == len(held) == L
        scored += [t for t, g in zip(row, held) if not g]
        assert all(t != 0 for t, g in zip(row, held) if not g)  # padding is never scored
    assert scored == tokens


def test_cut_at_the_first_stop_string():
    from sedlm.eval.lm_eval_model import cut_at

    assert cut_at("a line.\nnext", ["\n", "."]) == "a line"
    assert cut_at("no stop", ["\n"]) == "no stop"
    assert cut_at("x", []) == "x"
