"""Checkpoint folders, written atomically and read without pickle.

    config.json           the resolved config, with format_version
    README.md             the model card (sedlm.train.card); loading ignores it
    model.safetensors     EMA weights, for inference
    tokenizer.json
    training_state/       model.safetensors (raw weights), optimizer.safetensors + optimizer.json,
                          rng.safetensors, state.json (step, tokens seen, elapsed time)

Saving builds the whole checkpoint in a hidden ``.pending-*`` folder, renames it to ``.ready``
(the commit point), then moves its entries into place. A crash before the commit leaves the
previous checkpoint untouched; a crash after it is rolled forward on the next load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sedlm.config import FORMAT_VERSION, Config, from_dict
from sedlm.data.tokenizer import Tokenizer, load_tokenizer
from sedlm.errors import SedlmError
from sedlm.families import check_config, upgrade_config
from sedlm.train.card import CARD, count_weights, model_card

_READY = ".ready"


def _state_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return _state_to_cpu(tensors), {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2))


def save_checkpoint(
    out: str | Path,
    config: Config,
    weights: dict[str, torch.Tensor],
    tokenizer: Tokenizer,
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write (or replace) the checkpoint in ``out`` atomically.

    training_state, if given: {"model": state_dict, "optimizer": optimizer.state_dict(),
    "rng": {name: ByteTensor}, "meta": json-able dict}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pending = Path(tempfile.mkdtemp(prefix=".pending-", dir=out))
    try:
        cfg = config.to_dict()
        cfg["format_version"] = FORMAT_VERSION
        _write_json(pending / "config.json", cfg)
        steps = (training_state or {}).get("meta", {}).get("step")
        (pending / CARD).write_text(model_card(config, count_weights(weights), steps, tokenizer.vocab_size))
        save_file(_state_to_cpu(weights), str(pending / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(pending / "tokenizer.json")
        if training_state is not None:
            ts = pending / "training_state"
            ts.mkdir()
            save_file(_state_to_cpu(training_state["model"]), str(ts / "model.safetensors"))
            opt_tensors, opt_meta = _flatten_optimizer(training_state["optimizer"])
            save_file(opt_tensors, str(ts / "optimizer.safetensors"))
            _write_json(ts / "optimizer.json", opt_meta)
            save_file(_state_to_cpu(training_state["rng"]), str(ts / "rng.safetensors"))
            _write_json(ts / "state.json", training_state["meta"])
        ready = out / _READY
        if ready.exists():
            shutil.rmtree(ready)
        os.replace(pending, ready)  # commit point
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)
        raise
    _roll_forward(out)


def _roll_forward(out: Path) -> None:
    """Move the entries of a committed ``.ready`` folder into ``out``; clear abandoned pending folders and
    the ``.old-*`` copies a crash in the middle of a roll-forward can leave."""
    for p in out.glob(".pending-*"):
        shutil.rmtree(p, ignore_errors=True)
    ready = out / _READY
    if not ready.is_dir():
        for p in out.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)
        return
    for entry in sorted(ready.iterdir()):
        target = out / entry.name
        if entry.is_dir():
            if target.exists():
                trash = out / f".old-{entry.name}"
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(target, trash)
                os.replace(entry, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(entry, target)
        else:
            os.replace(entry, target)
    shutil.rmtree(ready, ignore_errors=True)
    for p in out.glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True)


def is_checkpoint(path: str | Path) -> bool:
    p = Path(path)
    return (p / "config.json").is_file() and (p / "model.safetensors").is_file() or (p / _READY).is_dir()


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file, or a clear error when it is cut short or damaged."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SedlmError(
            f"'{path}' is damaged or incomplete ({str(e).splitlines()[0]}); restore it or train again"
        ) from None


def load_checkpoint(path: str | Path) -> tuple[Config, dict[str, torch.Tensor], Tokenizer]:
    """Read config, EMA weights and tokenizer of a checkpoint folder."""
    p = Path(path)
    if not p.is_dir() or not is_checkpoint(p):
        raise SedlmError(
            f"'{path}' is not a sedlm checkpoint folder (needs config.json and model.safetensors); "
            "pass the --out folder of `sedlm train` or `sedlm quickstart`"
        )
    _roll_forward(p)
    try:
        raw = json.loads((p / "config.json").read_text())
    except json.JSONDecodeError:
        raise SedlmError(f"'{p / 'config.json'}' is not valid JSON; the checkpoint is damaged") from None
    if not isinstance(raw, dict):
        raise SedlmError(
            f"'{p / 'config.json'}' holds a JSON {type(raw).__name__}, not an object of config sections; "
            "the checkpoint is damaged"
        )
    version = raw.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SedlmError(
            f"'{p / 'config.json'}' has format_version {version!r}, not a number; the checkpoint is damaged"
        )
    if version > FORMAT_VERSION:
        raise SedlmError(
            f"checkpoint format {version} is newer than this sedlm supports ({FORMAT_VERSION}); upgrade sedlm"
        )
    try:
        config = check_config(upgrade_config(from_dict(raw), version))
    except SedlmError as e:
        raise SedlmError(f"'{p / 'config.json'}' is not a valid config: {e}") from None
    weights = _load_weights(p / "model.safetensors")
    tokenizer = load_tokenizer(p / "tokenizer.json")
    return config, weights, tokenizer


def check_weights_fit(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str, fix: str) -> None:
    """Raise SedlmError unless ``weights`` has exactly the tensors and shapes ``model`` has; the message names
    the first difference, the weights' ``source`` and a ``fix``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in expected.items() if k in weights]
    wrong = [w for w in wrong if w[1] != w[2]]
    if wrong:
        k, got, want = wrong[0]
        problem = f"{k} has shape {got} where the model has {want}"
    elif missing or unexpected:
        problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    else:
        return
    raise SedlmError(f"the weights of {source} do not fit the model its config describes ({problem}); {fix}")


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read ``training_state/`` back into the structure ``save_checkpoint`` takes."""
    ts = Path(path) / "training_state"
    _roll_forward(Path(path))
    if not (ts / "state.json").is_file():
        raise SedlmError(f"'{path}' has no training_state/ to resume from; start a new run with another --out")
    return {
        "model": _load_weights(ts / "model.safetensors"),
        "optimizer": _unflatten_optimizer(
            load_file(str(ts / "optimizer.safetensors")), json.loads((ts / "optimizer.json").read_text())
        ),
        "rng": load_file(str(ts / "rng.safetensors")),
        "meta": json.loads((ts / "state.json").read_text()),
    }
