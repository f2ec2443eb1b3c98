"""`sedlm distill`: the subcommand's options and its thin wrapper over ``sedlm.distill``."""

from __future__ import annotations

import argparse

from sedlm.cli.flags import Number, count, output, positive, seed


def cmd_distill(args: argparse.Namespace) -> int:
    from sedlm.distill import DistillConfig, distill

    cfg = DistillConfig(
        method=args.method,
        nfe=args.nfe,
        teacher_steps=args.teacher_steps,
        steps_per_round=args.steps_per_round,
        batch_size=args.batch_size,
        lr=args.lr,
        guidance=args.guidance,
        seed=args.seed,
    )
    record = distill(args.ckpt, args.out, cfg, save_rounds=args.save_rounds)
    cost = f" ({record['cost_vs_teacher']:.0%} of the teacher's training time)" if "cost_vs_teacher" in record else ""
    print(
        f"student of {args.nfe} network calls in {args.out}: {record['student_optimizer_steps']} optimiser steps, "
        f"{record['minutes']:.1f} min{cost}; sample with: sedlm sample --ckpt {args.out}"
    )
    return 0


def add_distill_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "distill",
        help="distil a diffusion checkpoint into a student that samples in a few network calls",
        description="Progressive distillation (halve the sampler's steps each round; Salimans & Ho 2022) "
        "or consistency distillation (Song et al. 2023) of a continuous diffusion checkpoint's "
        "deterministic sampler, into a student of the same size that samples in --nfe network "
        "calls: unconditional, prompt and infill requests, given text kept as the teacher keeps it.",
    )
    d.add_argument("--ckpt", required=True, help="teacher checkpoint (sed family)")
    output(d, "--out", required=True, help="student checkpoint folder to write (must not exist or be empty)")
    d.add_argument("--method", default="progressive", help="progressive or consistency (default: progressive)")
    d.add_argument("--nfe", type=count(), default=4, help="network calls per sample of the student (default: 4)")
    d.add_argument(
        "--teacher-steps",
        type=count(),
        default=64,
        help="progressive: the first teacher grid, --nfe times a power of two; consistency: the fine grid "
        "(default: 64)",
    )
    d.add_argument("--steps-per-round", type=count(), default=300, help="optimiser steps per round (default: 300)")
    d.add_argument("--batch-size", type=count(), default=32, help="rows per optimiser step (default: 32)")
    d.add_argument("--lr", type=positive(), default=1e-4, help="learning rate (default: 1e-4)")
    d.add_argument(
        "--guidance",
        type=Number(float, 0.0),
        default=1.0,
        help="the teacher's guidance scale, folded into the student (default: 1, none)",
    )
    d.add_argument("--seed", type=seed(), default=0, help="random seed (default: 0)")
    d.add_argument("--save-rounds", action="store_true", help="progressive: keep each round's student in OUT/round-N")
    d.set_defaults(func=cmd_distill)
