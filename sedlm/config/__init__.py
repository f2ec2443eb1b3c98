"""Nested dataclass configuration (``sections``) and how it is read and checked (``loading``).

Defaults live in the dataclasses only; YAML files and ``section.key=value`` overrides change them.
Everything is validated at start so that a bad value fails with one clear message.
"""

from sedlm.config.loading import (
    CHOICES,
    SHARED_KEYS,
    TASK_DEFAULTS,
    apply_overrides,
    apply_task_defaults,
    from_dict,
    load_config,
    resolve_config_path,
    set_key,
    validate,
)
from sedlm.config.sections import (
    FORMAT_VERSION,
    TRACKERS,
    Config,
    DataConfig,
    DiffusionConfig,
    EmbedConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
)

__all__ = [
    "CHOICES",
    "FORMAT_VERSION",
    "SHARED_KEYS",
    "TASK_DEFAULTS",
    "TRACKERS",
    "Config",
    "DataConfig",
    "DiffusionConfig",
    "EmbedConfig",
    "ModelConfig",
    "SampleConfig",
    "TrainConfig",
    "apply_overrides",
    "apply_task_defaults",
    "from_dict",
    "load_config",
    "resolve_config_path",
    "set_key",
    "validate",
]
