"""``sedlm lm-eval``: EleutherAI's lm-evaluation-harness command line with the ``sedlm`` model registered."""

from __future__ import annotations

import argparse
import sys

from sedlm.errors import SedlmError

HELP = """\
usage: sedlm lm-eval --model sedlm --model_args pretrained=RUN_DIR[,KEY=VALUE...] --tasks TASKS [lm_eval options]

Run lm-evaluation-harness tasks on a sedlm checkpoint of any family. Every argument goes to lm_eval's own
command line (`sedlm lm-eval run --help` lists them: --tasks, --include_path, --limit, --num_fewshot,
--output_path, --log_samples, ...); this command only registers the model first.

model arguments (--model_args, comma-separated KEY=VALUE):
  pretrained=RUN_DIR   the checkpoint folder (required)
  steps=N              sampling steps of generation tasks (default: the checkpoint's sample.steps)
  seed=N               seed of Monte Carlo likelihood bounds and of sampling (default: 0)
  any sampling option of the checkpoint's family (`sedlm recipes -v` lists them), e.g. temperature=0.8

What the figures are: loglikelihood is exact for AR and an upper bound on -log p(continuation | context)
for the diffusion families; loglikelihood_rolling scores consecutive windows of the model's row length;
generate_until samples with the family's sampler and cuts at the stop strings (docs/lm-eval.md).
"""


def add_lm_eval_parser(sub: argparse._SubParsersAction) -> None:
    """Lists the command in ``sedlm --help``; ``run_lm_eval`` handles it before argparse (its arguments are
    lm_eval's)."""
    sub.add_parser(
        "lm-eval", help="run lm-evaluation-harness tasks on a checkpoint (lm_eval's options)", add_help=False
    )


def run_lm_eval(argv: list[str]) -> int:
    """Hand ``argv`` to lm_eval's command line with the sedlm model registered; 0 on success."""
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        raise SystemExit(0)  # as argparse's --help
    try:
        import lm_eval.models  # noqa: F401  the harness's own models stay available
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        raise SedlmError("lm-evaluation-harness is not installed; pip install 'sedlm[lm-eval]'") from None
    import sedlm.eval.lm_eval_model  # noqa: F401  registers --model sedlm

    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0
