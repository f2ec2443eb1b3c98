"""The ``sedlm`` command line: each subcommand is a thin wrapper over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sedlm.errors import SedlmError
from sedlm.serve.cli import add_serve_parser  # imports no web framework until `serve` runs

CONFIG_HELP = "YAML config: a path, or a bundled name (tiny, sed-s, sed-l)"
OVERRIDE_HELP = "config overrides as section.key=value, e.g. train.max_steps=200 model.d_model=256"


def _load_config(args: argparse.Namespace, default: str | None = None):
    from sedlm.config import load_config, resolve_config_path

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
    from sedlm.pretrained import resolve_device
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
    from sedlm.config import apply_overrides, validate
    from sedlm.train.checkpoint import load_checkpoint
    from sedlm.train.trainer import train

    out = Path(args.out or f"runs/{Path(args.config or 'tiny').stem}")
    if args.resume:
        cfg = load_checkpoint(out)[0]
        apply_overrides(cfg, list(args.overrides) + ([f"data.source={args.data}"] if args.data else []))
        validate(cfg)
    else:
        cfg = _load_config(args, "tiny")
        if args.recipe:
            from sedlm.recipes import apply_recipe

            apply_recipe(cfg, args.recipe)
            apply_overrides(cfg, list(args.overrides))  # the command line wins over the recipe
        if args.method:
            if args.recipe and args.method != cfg.method:
                raise SedlmError(f"recipe {args.recipe} is a {cfg.method} recipe; drop --method {args.method}")
            cfg.method = args.method
        validate(cfg)
    result = train(cfg, out, resume=args.resume)
    val = f", val_loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    if result.main:
        print(f"step {result.step}{val}, {result.elapsed_s:.0f}s; checkpoint in {out} (sample with: sedlm sample --ckpt {out})")
    return 130 if result.interrupted else 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from sedlm.families import all_families
    from sedlm.recipes import RECIPES

    print("families (sedlm train --method NAME):")
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
    from sedlm.data.tokenizer import load_tokenizer, train_bpe

    cfg = _load_config(args, "tiny")
    d = cfg.data
    tokenizer = (lambda docs: train_bpe(docs, d.vocab_size)) if d.tokenizer == "bpe" else load_tokenizer(d.tokenizer)
    r = prepare_shards(lambda: iter_documents(d.source), args.out, tokenizer, val_fraction=d.val_fraction,
                       split_seed=d.split_seed, shard_tokens=args.shard_tokens, max_memory_mb=args.max_memory_mb,
                       tokenizer_chars=args.tokenizer_chars, source=d.source)
    for split in ("train", "val"):
        print(f"{split}: {r.documents[split]:,} documents, {r.tokens[split]:,} tokens in {r.shards[split]} shard(s) ({r.dtype})")
    print(f"wrote {r.out}; train on it with: sedlm train --data {r.out} --config ...")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from sedlm.api import load_pretrained

    model = load_pretrained(args.ckpt, device=args.device)
    s = model.config.sample
    options = {"steps": args.steps or s.steps, "seed": s.seed if args.seed is None else args.seed, **_family_options(args)}
    conditioning = {k: v for k, v in (("prompt", args.prompt), ("src", args.src)) if v is not None}
    # The bar shows only on a terminal (disable=None), so piped --json output stays clean.
    with tqdm(total=options["steps"], desc="sampling", disable=None if model.family.step_callbacks else True, leave=False) as bar:
        if template := getattr(args, "template", None):
            texts = model.infill(template, n=args.n or 1, callback=lambda info: bar.update(1), **options)
        else:
            texts = model.generate(n=args.n, callback=lambda info: bar.update(1), **conditioning, **options)
    if args.json:
        resolved = model.family.resolve_options(s, _family_options(args))
        print(json.dumps({"method": model.method, **conditioning, "samples": texts, "steps": options["steps"],
                          "seed": options["seed"], **resolved}, indent=2))
    else:
        for i, t in enumerate(texts):
            print(f"--- sample {i}\n{t}")
    return 0


def _declared_options() -> dict:
    """Every sampling option a registered family declares -> (the declaration, the families declaring it)."""
    from sedlm.families import all_families

    seen: dict = {}
    for family in all_families():
        for o in family.options:
            seen.setdefault(o.name, (o, []))[1].append(family.name)
    return seen


def _add_family_options(p: argparse.ArgumentParser) -> None:
    """One flag per declared sampling option (the union over the registered families). An option the
    loaded model's family does not declare is an error when the model is asked to use it."""
    for o, families in _declared_options().values():
        kw: dict = {"action": argparse.BooleanOptionalAction} if o.type is bool else {"type": o.type}
        if o.choices:  # checked by the family, so a wrong value gets its one-line message
            kw["metavar"] = "{" + ",".join(o.choices) + "}"
        default = f"sample.{o.config_key}" if o.config_key else repr(o.default)
        p.add_argument(o.flag, dest=o.name, default=None, help=f"{'/'.join(families)}: {o.help} (default: {default})", **kw)


def _family_options(args: argparse.Namespace) -> dict:
    """The declared sampling options given on the command line (unset ones fall back to config.sample)."""
    return {k: getattr(args, k) for k in _declared_options() if getattr(args, k, None) is not None}


def _add_judge_options(p: argparse.ArgumentParser, n_help: str) -> None:
    """Options every judged benchmark shares."""
    p.add_argument("--judge", default="smollm2", help="judge LM (default: smollm2)")
    p.add_argument("--n", type=int, default=256, help=f"{n_help} (default: 256)")
    p.add_argument("--results-dir", default="benchmarks/results", help="where results files are written")


def cmd_eval(args: argparse.Namespace) -> int:
    from sedlm.api import load_pretrained
    from sedlm.eval.harness import evaluate_model
    from sedlm.eval.judge import get_judge
    from sedlm.eval.results import markdown_table, write_atomic

    model = load_pretrained(args.ckpt, device=args.device)
    judge = get_judge(args.judge)
    rows, samples = evaluate_model(model, judge=judge, n=args.n, steps=args.steps, seed=args.seed, **_family_options(args))
    out = Path(args.out) if args.out else Path(args.ckpt) / "eval.json"
    result = {"ckpt": str(args.ckpt), "judge": args.judge, "val_loss": rows[0]["val_loss"],
              "val_loss_kind": rows[0]["val_loss_kind"], "rows": rows, "samples": samples}
    write_atomic(out, json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown_table(rows))
        print(f"wrote {out}")
    return 0


def _bench_command(name: str) -> str:
    import shlex

    return shlex.join(["sedlm", "bench", *sys.argv[sys.argv.index("bench") + 1:]]) if "bench" in sys.argv else f"sedlm bench {name}"


def cmd_bench(args: argparse.Namespace) -> int:
    from sedlm.eval.bench import METHODS, compare

    def names(text: str | None) -> tuple[str, ...] | None:
        return tuple(m.strip() for m in text.split(",") if m.strip()) if text else None

    compare(args.corpus, args.budget_minutes, judge_name=args.judge, n=args.n, steps=args.steps,
            runs_dir=args.runs_dir, results_dir=args.results_dir, overrides=args.overrides, train_steps=args.train_steps,
            methods=names(args.methods) or METHODS, rerun=names(args.rerun), name=args.name,
            command=_bench_command("compare"))
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    from sedlm.eval.steps import NFES, steps_bench

    samplers = [x.strip() for x in args.samplers.split(",")] if args.samplers else None
    nfes = tuple(int(x) for x in args.nfe.split(",")) if args.nfe else NFES
    steps_bench(args.ckpt, ar_ckpt=args.ar_ckpt, samplers=samplers, nfes=nfes, n=args.n, guidance=args.guidance,
                judge_name=args.judge, name=args.name, results_dir=args.results_dir, command=_bench_command("steps"))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from sedlm.eval.ablate import VARIANTS, ablate, describe

    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:32s} {v.group:10s} {describe(v)}" + (f"  (samples {v.reuse}'s model)" if v.reuse else ""))
        return 0
    ablate(args.corpus, args.minutes, variants=args.variants, judge_name=args.judge, n=args.n, steps=args.steps,
           runs_dir=args.runs_dir, results_dir=args.results_dir, overrides=args.overrides,
           command=_bench_command("ablate"), force=args.force)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from sedlm.quickstart import quickstart

    quickstart(out=Path(args.out), minutes=args.minutes, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sedlm import __version__
    from sedlm.families import all_families

    p = argparse.ArgumentParser(prog="sedlm", description="Continuous diffusion language models (Self-conditioned Embedding Diffusion).")
    p.add_argument("--version", action="version", version=f"sedlm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    q = sub.add_parser("quickstart", help="train a tiny model on the default corpus and show samples (minutes on a CPU)",
                       description="Train tokenizer, embedding space and a tiny SED model on the bundled Shakespeare "
                                   "corpus, print samples and a summary, and save a checkpoint.")
    q.add_argument("--out", default="runs/quickstart", help="checkpoint folder to write (default: runs/quickstart)")
    q.add_argument("--minutes", type=float, default=3.75, help="wall-clock budget for the diffusion training stage (default: 3.75)")
    q.add_argument("--force", action="store_true", help="replace an existing run in --out")
    q.set_defaults(func=cmd_quickstart)

    c = sub.add_parser("corpora", help="list the bundled corpora with their size and origin",
                       description="List the bundled corpora, their size and where their text comes from.")
    c.add_argument("--no-stats", action="store_true", help="skip loading the corpora to count documents and words")
    c.set_defaults(func=cmd_corpora)

    e = sub.add_parser("embed", help="build the embedding table SED freezes (masked LM or PPMI)",
                       description="Train a tokenizer and build the V x d_embed table: a small factorised masked LM "
                                   "(embed.kind=mlm, the paper) or a truncated SVD of PPMI co-occurrences (embed.kind=ppmi).")
    e.add_argument("--config", help=CONFIG_HELP + " (default: tiny)")
    e.add_argument("--data", help="text source: a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME[:CONFIG]")
    e.add_argument("--out", default="runs/embed", help="folder for embeddings.safetensors and tokenizer.json")
    e.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDE_HELP)
    e.set_defaults(func=cmd_embed)

    t = sub.add_parser("train", help="train a model",
                       description="Train a model and write a checkpoint folder + metrics.jsonl. Runs unchanged on several "
                                   "processes: torchrun --nproc_per_node N -m sedlm train ... (or accelerate launch -m sedlm "
                                   "train ...); train.batch_size is the global batch, split into train.micro_batch_size rows "
                                   "per forward pass. --data may be a folder written by `sedlm prepare`.")
    t.add_argument("--config", help=CONFIG_HELP + " (default: tiny)")
    t.add_argument("--data", help="text source: a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME[:CONFIG]")
    t.add_argument("--out", help="run folder (default: runs/<config name>)")
    t.add_argument("--method", choices=[f.name for f in all_families()],
                   help="model family (overrides the config's method; default: sed): "
                        + "; ".join(f"{f.name}: {f.description}" for f in all_families()))
    t.add_argument("--recipe", help="a named recipe over a family (see `sedlm recipes`), composed with --config's size; "
                                    "overrides on the command line still win")
    t.add_argument("--task", choices=["lm", "seq2seq"], help="lm (default) or seq2seq: --data is a .jsonl of src/tgt pairs")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDE_HELP)
    t.set_defaults(func=cmd_train)

    rc = sub.add_parser("recipes", help="list the model families and the recipes that reproduce papers' choices",
                        description="List the registered model families and the named recipes (option sets over a "
                                    "family reproducing a paper), with their citations; -v adds what each reproduces, "
                                    "what it leaves out and its options.")
    rc.add_argument("-v", "--verbose", action="store_true", help="show what each recipe reproduces and leaves out")
    rc.set_defaults(func=cmd_recipes)

    r = sub.add_parser("prepare", help="tokenise a corpus once into memory-mapped token shards",
                       description="Stream SRC, train the tokenizer (data.tokenizer=bpe) or load it, and write train/val "
                                   "token shards (uint16 when the vocabulary fits, else uint32), tokenizer.json and "
                                   "index.json to OUT, in bounded memory. Train on it with `sedlm train --data OUT`.")
    r.add_argument("--data", required=True, help="text source: a .txt/.jsonl file, a folder, corpus:NAME or hf:NAME[:CONFIG] (streamed)")
    r.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    r.add_argument("--config", help=CONFIG_HELP + " (default: tiny); its data section sets tokenizer, vocabulary and split")
    r.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard file (default: 100M)")
    r.add_argument("--max-memory-mb", type=float, default=256.0, help="cap on text and tokens held in memory (default: 256)")
    r.add_argument("--tokenizer-chars", type=int, default=50_000_000,
                   help="characters of training text a BPE tokenizer is trained on (default: 50M)")
    r.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDE_HELP)
    r.set_defaults(func=cmd_prepare)

    s = sub.add_parser("sample", help="generate text from a checkpoint", description="Generate text from a checkpoint folder.")
    _sampling_options(s, n_help="number of samples (default: the checkpoint's sample.n)")
    s.add_argument("--prompt", help="text to continue (it is kept verbatim at the start of each sample)")
    s.add_argument("--src", help="seq2seq source text (for a model trained with data.task=seq2seq)")
    s.set_defaults(func=cmd_sample)

    f = sub.add_parser("infill", help="fill the blanks of a template", description="Fill the blanks of TEMPLATE: "
                       "[___] lets the model choose the length, [___:N] asks for exactly N tokens; the rest is kept verbatim.")
    f.add_argument("template", help='e.g. "The [___] of Denmark [___:12] revenge."')
    _sampling_options(f, n_help="number of fillings (default: 1)")
    f.set_defaults(func=cmd_sample, prompt=None, src=None)
    add_serve_parser(sub)
    _add_eval_and_bench(sub)
    return p


def _sampling_options(s: argparse.ArgumentParser, n_help: str) -> None:
    s.add_argument("--ckpt", required=True, help="checkpoint folder (the --out of train or quickstart)")
    s.add_argument("--n", type=int, help=n_help)
    s.add_argument("--steps", type=int, help="denoising steps (network calls per step: 1, heun 2) (default: sample.steps)")
    s.add_argument("--seed", type=int, help="random seed (default: sample.seed)")
    _add_family_options(s)
    s.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")


def _add_eval_and_bench(sub) -> None:
    v = sub.add_parser("eval", help="score a checkpoint's samples with a judge LM next to real text",
                       description="Sample N texts and report judge NLL, unigram entropy, distinct-n, self-BLEU, MAUVE "
                                   "and validation loss, next to the same metrics on held-out text (the data row).")
    v.add_argument("--ckpt", required=True, help="checkpoint folder of any model family")
    v.add_argument("--judge", default="smollm2", help="judge LM: smollm2 (bundled), a local folder or a hub name")
    v.add_argument("--n", type=int, default=256, help="number of samples (default: 256)")
    v.add_argument("--steps", type=int, help="sampling steps for diffusion models (default: sample.steps)")
    _add_family_options(v)
    v.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    v.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    v.add_argument("--out", help="JSON file to write (default: <ckpt>/eval.json)")
    v.add_argument("--json", action="store_true", help="print the result as one JSON object (val_loss, val_loss_kind, rows, samples)")
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="benchmarks that train and compare models",
                       description="Benchmarks that train and compare model families.")
    bsub = b.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    bc = bsub.add_parser("compare", help="model families and recipes at matched size and equal training tokens",
                         description="Train the chosen systems (families, recipes, or variants NAME:section.key=value) at "
                                     "matched parameter count on equal training tokens, sample and judge them, and write "
                                     "benchmarks/results/<name>-<corpus>.{json,md,png} with a temperature-sweep frontier. "
                                     "See `sedlm recipes` for the names.")
    bc.add_argument("--corpus", default="shakespeare", help="bundled corpus (default: shakespeare)")
    bc.add_argument("--budget-minutes", type=float, default=30.0, help="total time budget (default: 30)")
    bc.add_argument("--methods", help="comma-separated systems in the table: families, recipes, or variants like "
                                      "cdcd:diffusion.time_warp=false; sizes match the first (default: every family)")
    bc.add_argument("--rerun", help="comma-separated subset of --methods to (re)train and score; the others' rows are "
                                    "kept from the last results files (default: all)")
    bc.add_argument("--name", default="compare", help="results name: <name>-<corpus>.{json,md,png} (default: compare)")
    bc.add_argument("--train-steps", type=int, help="optimiser steps per family (default: sized from the budget by "
                                                    "timing each family's step)")
    _add_judge_options(bc, "samples per method")
    bc.add_argument("--steps", type=int, default=200, help="sampling steps for sed and mdlm (default: 200)")
    bc.add_argument("--runs-dir", default="runs/compare", help="where the runs are written")
    bc.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides applied to every system")
    bc.set_defaults(func=cmd_bench)

    bs = bsub.add_parser("steps", help="judge NLL and entropy against NFE for every sampler; speed against AR",
                         description="For each sampler and NFE budget, sample N texts from an SED checkpoint and score "
                                     "judge NLL, unigram entropy and time per sample; then time the cheapest setting that "
                                     "meets the target (NLL within 5%% and entropy within 2%% of 1000-step ancestral) "
                                     "against an AR checkpoint at batch 1 and 32, length 128. Writes "
                                     "benchmarks/results/steps-<name>.{json,md,png} and steps-<name>-speed.{json,md}.")
    bs.add_argument("--ckpt", required=True, help="SED checkpoint folder")
    bs.add_argument("--ar-ckpt", help="autoregressive checkpoint to time against (same size)")
    bs.add_argument("--samplers", help="comma-separated samplers (default: ddpm,ddim,euler,heun,dpmpp_2m)")
    bs.add_argument("--nfe", help="comma-separated NFE budgets (default: 4,8,16,32,64,128,256,1000)")
    _add_judge_options(bs, "samples per row")
    bs.add_argument("--guidance", type=float, default=1.0, help="guidance scale; != 1 doubles the NFE per step (default: 1)")
    bs.add_argument("--name", help="results name (default: the checkpoint folder's name)")
    bs.set_defaults(func=cmd_steps)

    ba = bsub.add_parser("ablate", help="SED design choices, one at a time, at an equal CPU budget",
                         description="Train variants of the tiny SED config (embedding space, d_embed, noise schedule, "
                                     "self-conditioning, loss, sampling knobs) for the same CPU minutes each, score them "
                                     "with the judge next to the AR baseline and real text, and write "
                                     "benchmarks/results/ablation-<corpus>.{json,md}. Finished variants are reused on reruns.")
    ba.add_argument("--corpus", default="shakespeare", help="bundled corpus (default: shakespeare)")
    ba.add_argument("--minutes", type=float, default=2.0, help="training minutes per variant (default: 2)")
    ba.add_argument("--variants", help="comma-separated variant names (default: all; see --list)")
    ba.add_argument("--list", action="store_true", help="list the variants and exit")
    _add_judge_options(ba, "samples per variant")
    ba.add_argument("--steps", type=int, default=200, help="sampling steps (default: 200)")
    ba.add_argument("--runs-dir", default="runs/ablate", help="where the runs are written")
    ba.add_argument("--force", action="store_true", help="retrain variants even when a matching finished run exists")
    ba.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides applied to every variant")
    ba.set_defaults(func=cmd_ablate)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
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
        return args.func(args)
    except SedlmError as e:
        print(f"sedlm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sedlm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
