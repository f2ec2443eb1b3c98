"""sedlm: continuous diffusion language models, built around Self-conditioned Embedding Diffusion."""

from sedlm.api import AR, MDLM, SED, load_pretrained
from sedlm.config import Config
from sedlm.errors import SedlmError
from sedlm.families import load_config

__version__ = "0.1.0"
__all__ = ["SED", "AR", "MDLM", "load_pretrained", "Config", "load_config", "SedlmError", "__version__"]
