"""`sedlm sample` and `sedlm infill`: their options and the thin wrapper over the model's ``generate``,
``infill`` and ``stream``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sedlm.cli.flags import add_option_flags, count, options_from_args, seed
from sedlm.errors import SedlmError


def add_sample_parsers(sub: Any) -> None:
    """Add the `sample` and `infill` subcommands."""
    s = sub.add_parser(
        "sample", help="generate text from a checkpoint", description="Generate text from a checkpoint folder."
    )
    sampling_flags(s, n_help="number of samples (default: the checkpoint's sample.n)")
    s.add_argument("--prompt", help="text to continue (it is kept verbatim at the start of each sample)")
    s.add_argument("--src", help="seq2seq source text (for a model trained with data.task=seq2seq)")
    s.add_argument(
        "--max-tokens",
        type=count(),
        help="write at most N tokens after the prompt; a block model rounds its canvas up to whole blocks "
        "and also ends at end-of-text (default: the checkpoint's data.seq_len positions in all)",
    )
    s.add_argument(
        "--stream",
        action="store_true",
        help="print one sample's text as it becomes final: block by block for a block model "
        "(diffusion.block_size), at the end for a whole-row model",
    )
    s.set_defaults(func=cmd_sample)

    f = sub.add_parser(
        "infill",
        help="fill the blanks of a template",
        description="Fill the blanks of TEMPLATE: "
        "[___] lets the model choose the length, [___:N] asks for exactly N tokens; the rest is kept verbatim.",
    )
    f.add_argument("template", help='e.g. "The [___] of Denmark [___:12] revenge."')
    sampling_flags(f, n_help="number of fillings (default: 1)")
    f.set_defaults(func=cmd_sample, prompt=None, src=None, max_tokens=None, stream=False)


def sampling_flags(s: argparse.ArgumentParser, n_help: str) -> None:
    """The flags shared by `sample` and `infill`: checkpoint, count, steps, seed, the families' options."""
    s.add_argument("--ckpt", required=True, help="checkpoint folder (the --out of train or quickstart)")
    s.add_argument("--n", type=count(), help=n_help)
    s.add_argument(
        "--steps", type=count(), help="denoising steps (network calls per step: 1, heun 2) (default: sample.steps)"
    )
    s.add_argument("--seed", type=seed(), help="random seed (default: sample.seed)")
    add_option_flags(s)
    s.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    s.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        help="auto: bf16 autocast on CUDA, fp32 elsewhere; bf16 needs CUDA (default: sample.precision, auto)",
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of text")


def cmd_sample(args: argparse.Namespace) -> int:
    from sedlm.api import load_pretrained
    from sedlm.progress import progress
    from sedlm.sampling.blocks import step_count

    model = load_pretrained(args.ckpt, device=args.device)
    s = model.config.sample
    if args.precision:
        s.precision = args.precision
    options = {
        "steps": s.steps if args.steps is None else args.steps,
        "seed": s.seed if args.seed is None else args.seed,
        **options_from_args(args),
    }
    conditioning = {k: v for k, v in (("prompt", args.prompt), ("src", args.src)) if v is not None}
    if args.max_tokens is not None:
        conditioning["max_tokens"] = args.max_tokens
    if args.stream:
        return _stream_sample(model, args, options, conditioning)
    # A bar on a terminal, plain lines on stderr otherwise: piped --json output on stdout stays clean.
    total = step_count(options["steps"], model.config.diffusion.block_size, model.config.data.seq_len)
    with progress(total=total, desc="sampling", enabled=model.family.step_callbacks, leave=False) as bar:
        if (template := getattr(args, "template", None)) is not None:  # "" is a template too (with no blanks)
            texts = model.infill(template, n=args.n or 1, callback=lambda info: bar.update(1), **options)
        else:
            texts = model.generate(n=args.n, callback=lambda info: bar.update(1), **conditioning, **options)
    if args.json:
        resolved = model.family.resolve_options(s, options_from_args(args))
        print(
            json.dumps(
                {
                    "family": model.family_name,
                    **conditioning,
                    "samples": texts,
                    "steps": options["steps"],
                    "seed": options["seed"],
                    **resolved,
                },
                indent=2,
            )
        )
    else:
        for i, t in enumerate(texts):
            print(f"--- sample {i}\n{t}")
    return 0


def _stream_sample(model: Any, args: argparse.Namespace, options: dict[str, Any], conditioning: dict[str, Any]) -> int:
    """``sedlm sample --stream``: one sample printed piece by piece as its blocks are written."""
    if (args.n or 1) != 1 or args.json or "src" in conditioning:
        raise SedlmError("--stream prints one plain-text sample: leave out --n (or pass --n 1), --json and --src")
    for piece in model.stream(**conditioning, **options):
        print(piece, end="", flush=True)
    print()
    return 0
