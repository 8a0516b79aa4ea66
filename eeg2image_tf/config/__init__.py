"""Every command's configuration: its fields, its checks, its record, its command line.

- :mod:`.commands`: the frozen dataclasses, one per command (``PrepareDataConfig`` ...
  ``PipelineConfig``), and the pipeline's ``PROFILES``;
- :mod:`.base`: what every config is besides its fields: :meth:`~.base.Config.validate` (every
  field's type and range, and the fields that must agree) and its record in a folder
  (``load``, ``save``, ``check_record``, ``record``; the JSON round trip);
- :mod:`.rules`: the rule of each field name and the names fields hold;
- :mod:`.cli`: the command lines derived from the dataclasses.

Nothing here loads TensorFlow or reads a file other than a recorded config.
"""

from .base import Config, config_from_dict, config_to_dict, fill_missing_fields, flag_of
from .cli import (add_config_arguments, add_force, command_parser, config_from_args, parse_config,
                  quiet_tensorflow)
from .commands import (COLLECTIVE_TIMEOUT_S, DEFAULT_PROFILE, PRECISION_HELP, PROFILES, SET_PROFILES,
                       AverageConfig, CurveConfig, EncoderTrainConfig, EvaluateConfig, ExportConfig,
                       GanTrainConfig, GenerateConfig, ImageClassifierConfig, ImportOriginalConfig,
                       PipelineConfig, PrepareDataConfig, SelectEncoderConfig)
from .rules import (AUGMENT_POLICIES, CURVE_CONDITIONS, PAIRINGS, PRECISIONS, PREPROCESS_METHODS,
                    SPLIT_ORDERS, STRATEGIES, unwrap_optional)

__all__ = [
    "Config", "config_from_dict", "config_to_dict", "fill_missing_fields", "flag_of",
    "add_config_arguments", "add_force", "command_parser", "config_from_args", "parse_config",
    "quiet_tensorflow",
    "COLLECTIVE_TIMEOUT_S", "DEFAULT_PROFILE", "PRECISION_HELP", "PROFILES", "SET_PROFILES", "AverageConfig", "CurveConfig",
    "EncoderTrainConfig", "EvaluateConfig", "ExportConfig", "GanTrainConfig", "GenerateConfig",
    "ImageClassifierConfig", "ImportOriginalConfig", "PipelineConfig", "PrepareDataConfig",
    "SelectEncoderConfig",
    "AUGMENT_POLICIES", "CURVE_CONDITIONS", "PAIRINGS", "PRECISIONS", "PREPROCESS_METHODS",
    "SPLIT_ORDERS", "STRATEGIES",
    "unwrap_optional",
]
