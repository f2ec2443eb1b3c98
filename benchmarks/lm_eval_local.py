"""lm-evaluation-harness on held-out text of the bundled corpus: next-line choice and line completion.

Two local tasks are built from the validation documents of the checkpoints' own data (never training
text), written as JSONL files with lm_eval task YAMLs, and run through the harness with the `sedlm` model
(docs/lm-eval.md), the same as `sedlm lm-eval --model sedlm --include_path <tasks>` would:

next_line   multiple choice: given a line of verse (and the line before it), which of four lines comes next:
            the true next line or three lines drawn from elsewhere in the held-out text. Chance is 0.25.
            acc ranks the choices' log-likelihoods (exact for AR, bounds for the diffusion families);
            acc_norm divides by the choice's length in bytes.
complete    generation: the first half of a line's words is given, the model writes until a line break;
            exact_match against the rest of the line (a hard test for models of this size; it checks that
            generation runs through the harness rather than measuring quality).

Each row is one checkpoint; the summary rows give each family's mean over training seeds and the spread
(sample standard deviation) across seeds, beside the harness's standard error over questions. All
checkpoints must share one data source and split, so they answer the same questions.

Rerun (the five-seed runs of `sedlm bench compare --seeds`, README "Training-seed spread"):
    python benchmarks/lm_eval_local.py --runs runs/seeds/sed,runs/seeds/sed-seed1,runs/seeds/sed-seed2,\
runs/seeds/ar,runs/seeds/ar-seed1,runs/seeds/ar-seed2,runs/seeds/mdlm,runs/seeds/mdlm-seed1,runs/seeds/mdlm-seed2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

from benchmarks.common import publish, run_main  # noqa: E402

COLUMNS = [
    "run",
    "family",
    "seed",
    "next_line_acc",
    "next_line_acc_stderr",
    "next_line_acc_norm",
    "complete_exact_match",
    "questions",
    "completions",
]


def held_out_lines(run: str) -> tuple[list[str], str]:
    """Lines of at least four words from the checkpoint's validation documents, and its data source."""
    from sedlm.api import load_pretrained
    from sedlm.data.dataset import prepare_data

    lm = load_pretrained(run)
    data = prepare_data(lm.config.data, tokenizer=lm.tokenizer)
    lines = [ln.strip() for doc in data.val_docs for ln in doc.splitlines() if len(ln.split()) >= 4]
    return lines, f"{lm.config.data.source} (split_seed {lm.config.data.split_seed})"


def build_tasks(lines: list[str], folder: Path, questions: int, completions: int, seed: int) -> None:
    """Write next_line and complete as JSONL + task YAML under ``folder`` (module docstring)."""
    rng = random.Random(seed)
    starts = rng.sample(range(1, len(lines) - 1), min(questions, len(lines) - 2))
    mc = []
    for i in starts:
        others = rng.sample([j for j in range(len(lines)) if abs(j - i - 1) > 1], 3)
        choices = [lines[i + 1], *(lines[j] for j in others)]
        order = list(range(4))
        rng.shuffle(order)
        mc.append(
            {
                "context": lines[i - 1] + "\n" + lines[i] + "\n",
                "choices": [choices[k] for k in order],
                "label": order.index(0),
            }
        )
    gen = []
    for i in rng.sample(range(len(lines)), min(completions, len(lines))):
        words = lines[i].split()
        half = len(words) // 2
        gen.append({"prompt": " ".join(words[:half]), "target": " " + " ".join(words[half:])})
    for name, rows in (("next_line", mc), ("complete", gen)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = "dataset_path: json\ntest_split: test\ndataset_kwargs:\n  data_files:\n    test: {}\n"
    (folder / "next_line.yaml").write_text(
        "task: sedlm_next_line\n"
        + head.format(folder / "next_line.jsonl")
        + 'output_type: multiple_choice\ndoc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\n'
        + 'doc_to_target: "{{label}}"\ntarget_delimiter: ""\n'
        + "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    (folder / "complete.yaml").write_text(
        "task: sedlm_complete\n"
        + head.format(folder / "complete.jsonl")
        + 'output_type: generate_until\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
        + 'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 16\n'
        + "metric_list:\n  - metric: exact_match\n    higher_is_better: true\n"
    )


def evaluate(run: str, tasks: Path, steps: int, seed: int) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    import sedlm.eval.lm_eval_model  # noqa: F401  registers the model

    out = lm_eval.simple_evaluate(
        model="sedlm",
        model_args=f"pretrained={run},steps={steps},seed={seed}",
        tasks=["sedlm_next_line", "sedlm_complete"],
        task_manager=TaskManager(include_path=str(tasks)),
    )
    r = out["results"]
    return {
        "next_line_acc": float(r["sedlm_next_line"]["acc,none"]),
        "next_line_acc_stderr": float(r["sedlm_next_line"]["acc_stderr,none"]),
        "next_line_acc_norm": float(r["sedlm_next_line"]["acc_norm,none"]),
        "complete_exact_match": float(r["sedlm_complete"]["exact_match,none"]),
        "questions": out["n-samples"]["sedlm_next_line"]["effective"],
        "completions": out["n-samples"]["sedlm_complete"]["effective"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated checkpoint folders")
    ap.add_argument("--questions", type=int, default=256, help="next-line questions (default: 256)")
    ap.add_argument("--completions", type=int, default=64, help="line completions (default: 64)")
    ap.add_argument("--steps", type=int, default=100, help="sampling steps of the diffusion families (default: 100)")
    ap.add_argument("--seed", type=int, default=0, help="task and bound seed (default: 0)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    ap.add_argument("--name", default="lm-eval-local", help="results name (default: lm-eval-local)")
    args = ap.parse_args()
    import torch

    from sedlm.api import load_pretrained
    from sedlm.errors import SedlmError

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    runs = [r for r in args.runs.split(",") if r]
    lines, source = held_out_lines(runs[0])
    for run in runs[1:]:
        if held_out_lines(run)[1] != source:
            raise SedlmError(f"{run} was trained on other data than {runs[0]} ({source}); give runs of one source")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_tasks(lines, Path(tmp), args.questions, args.completions, args.seed)
        for run in runs:
            cfg = load_pretrained(run).config
            row = {"run": run, "family": cfg.recipe or cfg.family, "seed": cfg.train.seed}
            row.update(evaluate(run, Path(tmp), args.steps, args.seed))
            rows.append(row)
            print(row, flush=True)
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        accs = [r["next_line_acc"] for r in mine]
        rows.append(
            {
                "run": f"mean of {len(mine)} seeds",
                "family": family,
                "seed": "seed sd " + (f"{statistics.stdev(accs):.4f}" if len(accs) > 1 else "-"),
                "next_line_acc": round(statistics.mean(accs), 4),
                "next_line_acc_stderr": round(statistics.mean(r["next_line_acc_stderr"] for r in mine), 4),
                "next_line_acc_norm": round(statistics.mean(r["next_line_acc_norm"] for r in mine), 4),
                "complete_exact_match": round(statistics.mean(r["complete_exact_match"] for r in mine), 4),
                "questions": mine[0]["questions"],
                "completions": mine[0]["completions"],
            }
        )
    publish(args.name, "lm_eval_local.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
