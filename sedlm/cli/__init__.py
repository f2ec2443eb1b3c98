"""The ``sedlm`` command line: each subcommand is a thin wrapper over the library."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sedlm.cli.distill import add_distill_parser
from sedlm.cli.eval import add_eval_and_bench_parsers
from sedlm.cli.flags import (
    check_outputs,
    count,
    output,
    positive,
    unparsed_number,
)
from sedlm.cli.lm_eval import add_lm_eval_parser, run_lm_eval
from sedlm.cli.sample import add_sample_parsers
from sedlm.cli.serve import add_serve_parser  # imports no web framework until `serve` runs
from sedlm.errors import SedlmError

CONFIG_HELP = "YAML config: a path, or a bundled name (tiny, sed-s, sed-l)"
OVERRIDE_HELP = "config overrides as section.key=value, e.g. train.max_steps=200 model.d_model=256"


def _load_config(args: argparse.Namespace, default: str | None = None):
    from sedlm.config import resolve_config_path
    from sedlm.families import load_config

    overrides = list(args.overrides)
    if getattr(args, "data", None):
        overrides.append(f"data.source={args.data}")
    if getattr(args, "task", None):
        overrides.append(f"data.task={args.task}")
    return load_config(resolve_config_path(args.config or default), overrides)


def cmd_corpora(args: argparse.Namespace) -> int:
    from sedlm.data.corpora import CORPORA, DEFAULT_CORPUS, corpus_stats

    print(f"{'name':<12} {'documents':>9} {'words':>9}  description / origin")
    for c in CORPORA.values():
        stats = corpus_stats(c.loader()) if not args.no_stats else {"documents": "-", "words": "-"}
        mark = " (default)" if c.name == DEFAULT_CORPUS else ""
        print(f"{c.name:<12} {stats['documents']:>9} {stats['words']:>9}  {c.description}{mark}")
        print(f"{'':<12} {'':>9} {'':>9}  from {c.origin}")
    print("use one with --data corpus:NAME")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from sedlm.data.dataset import prepare_data
    from sedlm.devices import resolve_device
    from sedlm.train.embed import build_table, save_embedding

    cfg = _load_config(args, "tiny")
    out = Path(args.out)
    data = prepare_data(cfg.data)
    table = build_table(cfg.embed, data.train, data.tokenizer, cfg.model.d_embed, resolve_device(cfg.train.device))
    out.mkdir(parents=True, exist_ok=True)
    data.tokenizer.save(out / "tokenizer.json")
    save_embedding(out / "embeddings.safetensors", table)
    print(f"wrote {out / 'embeddings.safetensors'} ({tuple(table.shape)}) and {out / 'tokenizer.json'}")
    print(f"use it with: sedlm train embed.kind={cfg.embed.kind} embed.path={out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sedlm.config import apply_overrides
    from sedlm.families import check_config
    from sedlm.train.checkpoint import load_checkpoint
    from sedlm.train.trainer import train

    out = Path(args.out or f"runs/{Path(args.config or 'tiny').stem}")
    if args.init and (args.config or args.recipe or args.family or args.task):
        raise SedlmError(
            "--init takes the model, tokenizer and table from the checkpoint; drop --config, --recipe, "
            "--family and --task (override single settings as section.key=value)"
        )
    if args.resume or args.init:
        cfg = load_checkpoint(args.init or out)[0]
        apply_overrides(cfg, list(args.overrides) + ([f"data.source={args.data}"] if args.data else []))
        check_config(cfg)
    else:
        cfg = _load_config(args, "tiny")
        if args.recipe:
            from sedlm.families.recipes import apply_recipe

            apply_recipe(cfg, args.recipe)
            apply_overrides(cfg, list(args.overrides))  # the command line wins over the recipe
        if args.family:
            if args.recipe and args.family != cfg.family:
                raise SedlmError(f"recipe {args.recipe} is a {cfg.family} recipe; drop --family {args.family}")
            cfg.family = args.family
        check_config(cfg)
    result = train(cfg, out, resume=args.resume, init=args.init)
    val = f", val_loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    if result.main:
        print(
            f"step {result.step}{val}, {result.elapsed_s:.0f}s; checkpoint in {out} "
            f"(sample with: sedlm sample --ckpt {out})"
        )
    return 130 if result.interrupted else 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from sedlm.families import all_families
    from sedlm.families.recipes import RECIPES

    print("families (sedlm train --family NAME):")
    for f in all_families():
        print(f"  {f.name:<14} {f.description}; {f.paper}")
    print("recipes (sedlm train --config SIZE --recipe NAME):")
    for r in RECIPES.values():
        print(f"  {r.name:<14} [{r.family}] {r.paper}")
        if args.verbose:
            print(f"  {'':<14} reproduces: {r.keeps}")
            print(f"  {'':<14} leaves out: {r.leaves_out}")
            print(f"  {'':<14} options: {' '.join(r.overrides)}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from sedlm.data.corpora import iter_documents
    from sedlm.data.shards import prepare_shards
    from sedlm.data.tokenizer import TRAINED_TOKENIZERS, load_tokenizer

    cfg = _load_config(args, "tiny")
    d = cfg.data
    train_one = TRAINED_TOKENIZERS.get(d.tokenizer)
    tokenizer = (lambda docs: train_one(docs, d.vocab_size)) if train_one else load_tokenizer(d.tokenizer)
    r = prepare_shards(
        lambda: iter_documents(d.source),
        args.out,
        tokenizer,
        val_fraction=d.val_fraction,
        split_seed=d.split_seed,
        shard_tokens=args.shard_tokens,
        max_memory_mb=args.max_memory_mb,
        tokenizer_chars=args.tokenizer_chars,
        source=d.source,
    )
    for split in ("train", "val"):
        print(
            f"{split}: {r.documents[split]:,} documents, {r.tokens[split]:,} tokens "
            f"in {r.shards[split]} shard(s) ({r.dtype})"
        )
    print(f"wrote {r.out}; train on it with: sedlm train --data {r.out} --config ...")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from sedlm.quickstart import quickstart

    quickstart(out=Path(args.out), steps=args.steps, force=args.force)
    return 0


class Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the fix (argparse prints the whole usage block otherwise)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from sedlm import __version__
    from sedlm.families import all_families
    from sedlm.quickstart import DEFAULT_STEPS

    p = Parser(prog="sedlm", description="Continuous diffusion language models (Self-conditioned Embedding Diffusion).")
    p.add_argument("--version", action="version", version=f"sedlm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    q = sub.add_parser(
        "quickstart",
        help="train a tiny model on the default corpus and show samples (minutes on a CPU)",
        description="Train tokenizer, embedding space and a tiny SED model on the bundled Shakespeare "
        "corpus, print samples and a summary, and save a checkpoint.",
    )
    output(q, "--out", default="runs/quickstart", help="checkpoint folder to write (default: runs/quickstart)")
    q.add_argument(
        "--steps",
        type=count(),
        default=DEFAULT_STEPS,
        help=f"optimiser steps of the diffusion stage; the result depends only on the seed, not on the "
        f"machine's load (default: {DEFAULT_STEPS}, about 3 min on 2 CPU cores)",
    )
    q.add_argument("--force", action="store_true", help="replace an existing run in --out")
    q.set_defaults(func=cmd_quickstart)

    c = sub.add_parser(
        "corpora",
        help="list the bundled corpora with their size and origin",
        description="List the bundled corpora, their size and where their text comes from.",
    )
    c.add_argument("--no-stats", action="store_true", help="skip loading the corpora to count documents and words")
    c.set_defaults(func=cmd_corpora)

    e = sub.add_parser(
        "embed",
        help="build the embedding table SED freezes (masked LM or PPMI)",
        description="Train a tokenizer and build the V x d_embed table: a small factorised masked LM "
        "(embed.kind=mlm, the paper) or a truncated SVD of PPMI co-occurrences (embed.kind=ppmi).",
    )
    e.add_argument("--config", help=CONFIG_HELP + " (default: tiny)")
    e.add_argument("--data", help="text source: a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME[:CONFIG]")
    output(e, "--out", default="runs/embed", help="folder for embeddings.safetensors and tokenizer.json")
    e.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDE_HELP)
    e.set_defaults(func=cmd_embed)

    t = sub.add_parser(
        "train",
        help="train a model",
        description="Train a model and write a checkpoint folder + metrics.jsonl. Runs unchanged on several "
        "processes: torchrun --nproc_per_node N -m sedlm train ... (or accelerate launch -m sedlm "
        "train ...); train.batch_size is the global batch, split into train.micro_batch_size rows "
        "per forward pass. --data may be a folder written by `sedlm prepare`.",
    )
    t.add_argument("--config", help=CONFIG_HELP + " (default: tiny)")
    t.add_argument("--data", help="text source: a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME[:CONFIG]")
    output(t, "--out", help="run folder (default: runs/<config name>)")
    t.add_argument(
        "--family",
        "--method",
        dest="family",
        choices=[f.name for f in all_families()],
        help="model family (overrides the config's family; --method is the same flag; default: sed): "
        + "; ".join(f"{f.name}: {f.description}" for f in all_families()),
    )
    t.add_argument(
        "--recipe",
        help="a named recipe over a family (see `sedlm recipes`), composed with --config's size; "
        "overrides on the command line still win",
    )
    t.add_argument(
        "--task", choices=["lm", "seq2seq"], help="lm (default) or seq2seq: --data is a .jsonl of src/tgt pairs"
    )
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument(
        "--init",
        metavar="CKPT",
        help="fine-tune: start from this checkpoint's weights, tokenizer and embedding "
        "table (and its config, under any overrides) on --data",
    )
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDE_HELP)
    t.set_defaults(func=cmd_train)

    rc = sub.add_parser(
        "recipes",
        help="list the model families and the recipes that reproduce papers' choices",
        description="List the registered model families and the named recipes (option sets over a "
        "family reproducing a paper), with their citations; -v adds what each reproduces, "
        "what it leaves out and its options.",
    )
    rc.add_argument("-v", "--verbose", action="store_true", help="show what each recipe reproduces and leaves out")
    rc.set_defaults(func=cmd_recipes)

    r = sub.add_parser(
        "prepare",
        help="tokenise a corpus once into memory-mapped token shards",
        description="Stream SRC, train the tokenizer (data.tokenizer=bpe) or load it, and write train/val "
        "token shards (uint16 when the vocabulary fits, else uint32), tokenizer.json and "
        "index.json to OUT, in bounded memory. Train on it with `sedlm train --data OUT`.",
    )
    r.add_argument(
        "--data",
        required=True,
        help="text source: a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME[:CONFIG] (streamed)",
    )
    output(r, "--out", required=True, help="folder to create (must not exist or be empty)")
    r.add_argument(
        "--config", help=CONFIG_HELP + " (default: tiny); its data section sets tokenizer, vocabulary and split"
    )
    r.add_argument("--shard-tokens", type=count(), default=100_000_000, help="tokens per shard file (default: 100M)")
    r.add_argument(
        "--max-memory-mb", type=positive(), default=256.0, help="cap on text and tokens held in memory (default: 256)"
    )
    r.add_argument(
        "--tokenizer-chars",
        type=count(),
        default=50_000_000,
        help="characters of training text a BPE tokenizer is trained on (default: 50M)",
    )
    r.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDE_HELP)
    r.set_defaults(func=cmd_prepare)

    add_sample_parsers(sub)
    add_distill_parser(sub)
    add_serve_parser(sub)
    add_lm_eval_parser(sub)
    add_eval_and_bench_parsers(sub)
    add_threads_flag(p)
    return p


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """``--threads`` on every subcommand that runs (nested ones included)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.add_argument(
            "--threads",
            metavar="N|auto",
            help="CPU threads for torch (default: auto, the free cores of this process's share; "
            "OMP_NUM_THREADS or SEDLM_THREADS set one for every command)",
        )
    for action in subs:
        for child in set(action.choices.values()):
            add_threads_flag(child)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lm-eval"]:  # lm_eval's own command line parses the rest
        try:
            return run_lm_eval(argv[1:])
        except SedlmError as e:
            print(f"sedlm lm-eval: error: {e}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if flag := unparsed_number(parser, args):  # argparse hands `--flag=--` over as a list, past the type
        parser.error(f"argument {flag}: expects a number")
    import warnings

    default_show = warnings.showwarning

    def note(message, category, filename, lineno, file=None, line=None) -> None:
        """The library's notes to the user as one line each; other packages' warnings as usual."""
        if f"{os.sep}sedlm{os.sep}" in str(filename):
            print(f"sedlm {args.command}: note: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    warnings.showwarning = note
    try:
        from sedlm.threads import apply_threads

        # a server's concurrent model calls share this process's cores
        apply_threads(getattr(args, "threads", None), share=getattr(args, "max_concurrent", None) or 1)
        check_outputs(args)
        return args.func(args)
    except SedlmError as e:
        print(f"sedlm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sedlm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
