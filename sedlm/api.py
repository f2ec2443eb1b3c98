"""User-facing model classes.

    from sedlm import SED, AR, MDLM, load_pretrained
    model = SED.from_pretrained("runs/quickstart")
    texts = model.generate(n=4, steps=200, sampler="ddpm", seed=0)
    any_model = load_pretrained("runs/ar")       # any family: the one config.family names

Every class is a ``PretrainedLM``; generation and its options belong to the model's family
(``sedlm.families``), so ``load_pretrained`` serves every registered family. The named classes only
check, on loading, that a checkpoint holds their family.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sedlm.pretrained import PretrainedLM
from sedlm.train.checkpoint import load_checkpoint


class SED(PretrainedLM):
    """A self-conditioned embedding diffusion LM."""

    family_name = "sed"


class AR(PretrainedLM):
    """The autoregressive baseline: continues the end-of-document token (a fresh document)."""

    family_name = "ar"


class MDLM(PretrainedLM):
    """The masked discrete diffusion baseline."""

    family_name = "mdlm"


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> PretrainedLM:
    """Load a checkpoint folder of any registered family, as its named class where one pins it."""
    family = load_checkpoint(path)[0].family
    cls = next((c for c in PretrainedLM.__subclasses__() if c.family_name == family), PretrainedLM)
    return cls.from_pretrained(path, device=device)
