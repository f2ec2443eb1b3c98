"""`sedlm bench ablate`: SED variants of the tiny config trained at an equal budget of optimiser steps and
scored by the evaluation harness, next to the autoregressive baseline (same budget, matched size) and real text.

Every variant is the paper's recipe (``PAPER``) with one change, except the ``combined`` group, which
stacks the changes that helped, and ``default``, the tiny config as shipped. Sampling-side variants
reuse another variant's trained model and change only how it is sampled. The budget counts the diffusion
training only (steps, or CPU minutes on request); building the embedding table (masked LM or PPMI) is
reported apart (``table_s``) because a table is built once per tokenizer and reused by every run.

Each finished variant leaves ``row.json`` in its run folder with a fingerprint of everything that
produced it; a rerun with the same settings reuses it, so variants can be added one at a time. With several
training seeds every variant (and the AR baseline) is trained once per seed and ablation-<corpus>-seeds gives
each one's mean, seed spread and sample-CI width, the noise floor a difference between variants must clear.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sedlm.api import load_pretrained
from sedlm.bench.seeds import SEED_COLUMNS, check_seeds, seed_summary
from sedlm.bench.systems import match_width, param_count, run_folder, seconds_per_step
from sedlm.config import Config, apply_overrides, resolve_config_path
from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.devices import resolve_device
from sedlm.errors import SedlmError
from sedlm.eval.harness import evaluate_model, scored
from sedlm.eval.results import markdown_table, write_results
from sedlm.families import check_config, load_config
from sedlm.families.recipes import RECIPES
from sedlm.io import write_atomic
from sedlm.train.embed import build_table, save_embedding
from sedlm.train.trainer import train

# The SED paper's recipe, pinned so that changing the library's defaults does not move the baseline.
PAPER = RECIPES["sed-paper"].overrides


@dataclass(frozen=True)
class Variant:
    name: str
    group: str
    overrides: tuple[str, ...] = ()  # on top of PAPER (or of the tiny config for group "default")
    sample: dict[str, Any] = field(default_factory=dict)  # generation options for the harness
    reuse: str | None = None  # sampling-only: evaluate this variant's trained model instead of training


def _v(
    name: str, group: str, *overrides: str, sample: dict[str, Any] | None = None, reuse: str | None = None
) -> Variant:
    return Variant(name, group, tuple(overrides), sample or {}, reuse)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        _v("paper", "reference"),
        _v("default", "reference"),  # the shipped tiny config, whatever its defaults are
        # The paper recipe again with other training seeds: the spread between these rows is the noise
        # floor against which every other difference in the table should be read.
        _v("paper-seed-1", "reference", "train.seed=1"),
        _v("paper-seed-2", "reference", "train.seed=2"),
        _v("embed-random", "embedding", "embed.kind=random"),
        _v("embed-learned", "embedding", "embed.kind=learned"),
        _v("embed-ppmi", "embedding", "embed.kind=ppmi"),
        _v("d_embed-16", "d_embed", "model.d_embed=16"),
        _v("d_embed-32", "d_embed", "model.d_embed=32"),
        _v("d_embed-128", "d_embed", "model.d_embed=128"),
        _v("shift-2", "noise", "diffusion.logsnr_shift=-2"),
        _v("shift-4", "noise", "diffusion.logsnr_shift=-4"),
        _v("sqrt-schedule", "noise", "diffusion.schedule=sqrt"),
        _v("time-warp", "noise", "diffusion.time_warp=true"),
        _v("time-warp-grid", "noise", sample={"time_grid": "warped"}, reuse="time-warp"),
        _v("self-cond-off", "self_cond", "diffusion.self_cond=off"),
        _v("self-cond-half", "self_cond", "diffusion.self_cond=half_nograd"),
        _v("ce-weight-0.2", "loss", "diffusion.ce_weight=0.2"),
        _v("ce-weight-5", "loss", "diffusion.ce_weight=5"),
        _v("interp-ce", "loss", "diffusion.x0_estimate=interp", "diffusion.mse_weight=0"),
        _v("noise-temp-0.8", "sampling", sample={"noise_temp": 0.8}, reuse="paper"),
        _v("clamp", "sampling", sample={"clamp": True}, reuse="paper"),
        _v("guidance-2.5", "sampling", sample={"guidance": 2.5, "guidance_mode": "self_cond"}, reuse="paper"),
        _v("ddim", "sampling", sample={"sampler": "ddim"}, reuse="paper"),
        _v("interp-score-temp-0.8", "sampling", sample={"score_temp": 0.8}, reuse="interp-ce"),
        _v("interp-score-temp-0.6", "sampling", sample={"score_temp": 0.6}, reuse="interp-ce"),
        _v("ppmi-interp", "combined", "embed.kind=ppmi", "diffusion.x0_estimate=interp", "diffusion.mse_weight=0"),
        _v(
            "ppmi-interp-shift-2",
            "combined",
            "embed.kind=ppmi",
            "diffusion.x0_estimate=interp",
            "diffusion.mse_weight=0",
            "diffusion.logsnr_shift=-2",
        ),
        _v(
            "ppmi-interp-half",
            "combined",
            "embed.kind=ppmi",
            "diffusion.x0_estimate=interp",
            "diffusion.mse_weight=0",
            "diffusion.self_cond=half_nograd",
        ),
        *[
            _v(f"{base}-score-temp-{t}", "combined", sample={"score_temp": t}, reuse=base)
            for base in ("ppmi-interp", "ppmi-interp-half")
            for t in (0.8, 0.6)
        ],
    ]
}
COLUMNS = [
    "variant",
    "seed",
    "group",
    "changes",
    "params",
    "train_steps",
    "train_minutes",
    "table_s",
    "val_loss",
    "val_loss_kind",
    "nfe",
    "n_samples",
    "judge_nll",
    "judge_nll_ci95",
    "unigram_entropy",
    "unigram_entropy_ci95",
    "entropy_vs_data",
    "mauve",
    "distinct_2",
    "real_word_share",
]


def get_variants(names: str | None) -> list[Variant]:
    """Variants named in a comma-separated list (all when None); unknown names list the valid ones."""
    if not names:
        return list(VARIANTS.values())
    out = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in VARIANTS:
            raise SedlmError(f"unknown variant '{n}'; valid variants: {', '.join(VARIANTS)}")
        out.append(VARIANTS[n])
    return out


def describe(v: Variant) -> str:
    """The variant's changes to the paper recipe, a reused model's training changes included."""
    trained = VARIANTS[v.reuse].overrides if v.reuse and v.reuse in VARIANTS else v.overrides
    return ", ".join([*trained, *(f"sample {k}={x}" for k, x in v.sample.items())]) or "–"


def _pins_seed(v: Variant) -> bool:
    return any(o.startswith("train.seed=") for o in v.overrides)


def variant_config(base: Config, v: Variant) -> Config:
    cfg = base.copy()
    apply_overrides(cfg, [] if v.name == "default" else [*PAPER, *v.overrides])
    check_config(cfg)
    return cfg


def config_key(cfg: Config) -> dict[str, Any]:
    """The settings of ``cfg`` that differ from the library defaults, as dotted keys: a fingerprint
    that stays put when a new option (with a neutral default) is added to the library."""
    defaults = Config().to_dict()
    out = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items() if v != defaults[section][k]})
        elif values != defaults[section]:
            out[section] = values
    return out


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _saved_row(row_dir: Path, key: str | None = None) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """(row, data row) saved in ``row_dir/row.json`` (when ``key`` is given, only if it matches)."""
    f = row_dir / "row.json"
    if not f.is_file():
        return None
    saved = json.loads(f.read_text())
    if key is not None and saved.get("fingerprint") != key:
        return None
    return saved["row"], saved.get("data_row")


def _table_file(cfg: Config, data: PreparedData, tables_dir: Path, log: Callable[[str], None]) -> tuple[str, float]:
    """Build (or reuse) the mlm / ppmi table this config asks for; return its path and build seconds."""
    if cfg.embed.kind not in ("mlm", "ppmi"):
        return "", 0.0
    e = cfg.embed
    key = _fingerprint(
        e.kind, cfg.model.d_embed, e.steps, e.max_minutes, e.window, e.d_model, e.n_layers, e.seed, cfg.data
    )
    path = tables_dir / f"{e.kind}-{cfg.model.d_embed}-{key}.safetensors"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return str(path), json.loads(meta.read_text())["seconds"]
    start = time.perf_counter()
    table = build_table(
        e, data.train, data.tokenizer, cfg.model.d_embed, resolve_device(cfg.train.device), progress=False, log=log
    )
    seconds = time.perf_counter() - start
    save_embedding(path, table)
    write_atomic(meta, json.dumps({"seconds": round(seconds, 1)}))
    return str(path), round(seconds, 1)


def _train_for(
    cfg: Config, data: PreparedData, budget: tuple[str, float], out: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train ``cfg`` for a budget: ``("steps", n)`` optimiser steps (the same for every variant, whatever the
    machine's load), or ``("minutes", m)``: as many steps as m minutes of CPU buy, timed on this machine
    (so the step count moves with the load). The step count is fixed up front so the learning-rate
    schedule runs its full course."""
    kind, amount = budget
    steps = int(amount) if kind == "steps" else max(10, int(60 * amount / seconds_per_step(cfg, data)))
    t = cfg.train
    t.max_steps, t.max_minutes = steps, 0.0
    t.eval_every = t.checkpoint_every = steps
    t.warmup_steps = min(t.warmup_steps, steps // 10 + 1)
    if out.exists():
        shutil.rmtree(out)
    result = train(cfg, out, data=data, log=log, progress=False)
    return {"train_steps": steps, "train_minutes": round(result.elapsed_s / 60, 2)}


DEFAULT_TRAIN_STEPS = 600


def ablate(
    corpus: str = "shakespeare",
    minutes: float | None = None,
    *,
    train_steps: int | None = None,
    variants: str | None = None,
    judge_name: str = "smollm2",
    n: int = 256,
    steps: int = 200,
    runs_dir: str | Path = "runs/ablate",
    results_dir: str | Path = "benchmarks/results",
    overrides: list[str] | None = None,
    command: str = "sedlm bench ablate",
    force: bool = False,
    rescore: tuple[str, ...] = (),
    eval_tokens: int | None = None,
    seeds: tuple[int, ...] = (0,),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train and score the chosen variants (all by default), the AR baseline and the data row, once per
    training seed in ``seeds``; write ablation-<corpus>.{json,md} after every run (and, with several seeds,
    ablation-<corpus>-seeds.{json,md}: ``seed_summary``); return the rows. The budget is ``train_steps``
    optimiser steps per run (default ``DEFAULT_TRAIN_STEPS``), or ``minutes`` of CPU per run
    (load-dependent). Variants named in ``rescore`` are scored again on their finished, saved model
    without retraining (after a sampling or harness fix)."""
    from sedlm.eval.judge import get_judge

    start = time.perf_counter()
    runs_dir = Path(runs_dir)
    chosen = get_variants(variants)
    check_seeds(seeds)
    if seeds != (0,) and (pinned := [v.name for v in chosen if _pins_seed(v)]):
        raise SedlmError(
            f"variants {', '.join(pinned)} fix their own training seed; leave them out of --variants with --seeds"
        )
    base = load_config(resolve_config_path("tiny"), [f"data.source=corpus:{corpus}", *(overrides or [])])
    data = prepare_data(base.data)
    base.model.vocab_size = data.tokenizer.vocab_size
    judge = get_judge(judge_name)
    if minutes is not None and train_steps is not None:
        raise SedlmError("give a budget in --train-steps or in --minutes, not both")
    budget = ("minutes", float(minutes)) if minutes is not None else ("steps", train_steps or DEFAULT_TRAIN_STEPS)
    if not budget[1] > 0:
        raise SedlmError(f"the training budget must be positive (got {budget[1]:g} {budget[0]})")
    log(
        f"bench ablate on corpus:{corpus}: {len(chosen)} variants, {budget[1]:g} {budget[0]} of training each, "
        f"training seeds {', '.join(map(str, seeds))}"
    )

    rows: list[dict[str, Any]] = []
    data_row: dict[str, Any] | None = None
    name = f"ablation-{corpus}"

    def evaluate(run: Path, label: str, sample: dict[str, Any]) -> dict[str, Any]:
        nonlocal data_row
        (row, drow), _ = evaluate_model(
            load_pretrained(run),
            data,
            judge=judge,
            n=n,
            steps=steps,
            seed=0,
            label=label,
            eval_tokens=eval_tokens,
            keep_short=True,
            **sample,
        )
        data_row = data_row or drow
        return row

    def finish_row(row: dict[str, Any], v: Variant | None, seed: int) -> None:
        row["variant"] = row.pop("method") if v is None else v.name
        row["seed"] = seed
        row["group"] = "baseline" if v is None else v.group
        rows.append(row)
        log(f"{row['variant']}: {scored(row)}")
        publish()

    def publish() -> None:
        out = [*rows, *([{**data_row, "variant": "data", "group": "reference"}] if data_row else [])]
        ref = data_row["unigram_entropy"] if data_row else None
        for r in out:
            if ref and r.get("unigram_entropy") is not None:
                r["entropy_vs_data"] = round(r["unigram_entropy"] / ref - 1, 4)
        write_results(name, command, out, COLUMNS, results_dir)
        if len(seeds) > 1:
            summary = seed_summary([{**r, "method": r["variant"]} for r in rows])
            write_results(f"{name}-seeds", command, summary, SEED_COLUMNS, results_dir)

    budget_key = (budget, n, steps, judge_name, eval_tokens, "equal-length")  # the harness rule is part of a row

    if unknown := set(rescore) - {v.name for v in chosen}:
        raise SedlmError(f"--rescore names variants not in --variants: {', '.join(sorted(unknown))}")

    def run_once(row_dir: Path, key: str, produce: Callable[[], dict[str, Any]], again: bool = False) -> dict[str, Any]:
        """The row saved under ``key`` in ``row_dir``, else ``produce()`` it and save it with the data row."""
        nonlocal data_row
        saved = None if force or again else _saved_row(row_dir, key)
        if saved:
            log(f"{row_dir.name}: reusing the saved row")
            row, data_row = saved[0], data_row or saved[1]
            return row
        row = produce()
        write_atomic(
            row_dir / "row.json", json.dumps({"fingerprint": key, "row": row, "data_row": data_row}, default=str)
        )
        return row

    for v, seed in ((v, s) for v in chosen for s in seeds):
        trained = VARIANTS[v.reuse] if v.reuse else v
        cfg = variant_config(base, trained)
        if not _pins_seed(trained):
            cfg.train.seed = seed
        run = run_folder(runs_dir, trained.name, seed)
        key = _fingerprint(budget_key, v.name, config_key(cfg), v.sample, v.reuse)

        def produce(v: Variant = v, cfg: Config = cfg, run: Path = run, key: str = key) -> dict[str, Any]:
            if v.name in rescore and not v.reuse and (saved := _saved_row(run, key)) is not None:
                log(f"{v.name}: scoring the saved model again")
                info = {k: saved[0].get(k) for k in ("params", "train_steps", "train_minutes", "table_s")}
            elif v.reuse:
                saved = _saved_row(run)
                if saved is None:
                    raise SedlmError(
                        f"variant '{v.name}' samples the model of '{v.reuse}'; run that variant first (list it before)"
                    )
                info = {k: saved[0].get(k) for k in ("params", "train_steps", "train_minutes", "table_s")}
            else:
                cfg.embed.path, table_s = _table_file(cfg, data, runs_dir / "tables", log)
                log(f"{v.name}: training ({', '.join(v.overrides) or 'no changes'})")
                info = {
                    **_train_for(cfg, data, budget, run, log),
                    "table_s": table_s,
                    "params": param_count(cfg, data),
                }
            return {**evaluate(run, v.name, v.sample), **info, "changes": describe(v)}

        row_dir = run / ("eval-" + v.name if v.reuse else "")
        finish_row(run_once(row_dir, key, produce, again=v.name in rescore), v, seed)

    # The autoregressive baseline: the same budget, its width matched to the paper variant's size.
    paper = variant_config(base, VARIANTS["paper"])
    for seed in seeds:
        ar_cfg = paper.copy()
        ar_cfg.family, ar_cfg.train.seed = "ar", seed
        ar_run = run_folder(runs_dir, "ar", seed)

        def produce_ar(ar_cfg: Config = ar_cfg, ar_run: Path = ar_run) -> dict[str, Any]:
            params = match_width(ar_cfg, param_count(paper, data), data)
            log(f"ar: training ({params:,} parameters, width {ar_cfg.model.d_model}, seed {ar_cfg.train.seed})")
            info = {**_train_for(ar_cfg, data, budget, ar_run, log), "params": params, "table_s": 0.0}
            return {**evaluate(ar_run, "ar", {}), **info, "changes": "autoregressive baseline, top-p 0.95"}

        finish_row(run_once(ar_run, _fingerprint(budget_key, "ar", config_key(ar_cfg)), produce_ar), None, seed)
    log(markdown_table(rows, COLUMNS))
    log(f"wrote {Path(results_dir) / name}.{{json,md}} in {(time.perf_counter() - start) / 60:.1f} min")
    return rows
