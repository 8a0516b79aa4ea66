"""The command lines derived from the configs: a flag per field (``--no-x`` for booleans).

Each command builds its parser with :func:`command_parser`, adds its extras (:func:`add_force`,
``--quiet``, ...) and parses its arguments into its validated config with :func:`parse_config`.
A mistake on the command line (an unknown or abbreviated flag, a value of the wrong type) is one
:class:`~eeg2image_tf.errors.ConfigError` line, as a bad value is.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from typing import Any, Optional, Sequence, TypeVar

from ..errors import ConfigError
from .base import flag_of, tuple_fields
from .rules import unwrap_optional

C = TypeVar("C")


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one ``error:`` line (a :class:`ConfigError` that
    :func:`~eeg2image_tf.errors.run_main` prints), not a usage block."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type,
                         skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` for every field of ``cls`` (``--no-field`` too for booleans)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        tp, optional = unwrap_optional(hints[field.name])
        flag = flag_of(field.name)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = None if required else field.default
        help_text = "required" if required else f"default: {default}"
        if "help" in field.metadata:
            help_text += f"; {field.metadata['help']}"
        if tp is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
            continue
        if typing.get_origin(tp) is tuple:
            # Repeatable; None (not the default) when absent, since argparse appends in place.
            parser.add_argument(flag, dest=field.name, action="append", default=None,
                                metavar=field.metadata.get("metavar"), help=help_text)
            continue
        converter = tp if tp in (int, float, str) else str
        if optional:
            base = converter

            def converter(text: str, _base=base):  # noqa: E306 - closure per field
                return None if text.lower() == "none" else _base(text)
        parser.add_argument(flag, dest=field.name, type=converter, default=default,
                            required=required, help=help_text)


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    for field in dataclasses.fields(cls):
        if field.name in tuple_fields(cls) and field.name in values:
            given = values[field.name]
            values[field.name] = tuple(given) if given is not None else field.default
    values.update(overrides)
    return cls(**values)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def command_parser(command: str, description: Optional[str],
                   config_class: Optional[type] = None) -> argparse.ArgumentParser:
    """The parser of ``python -m eeg2image_tf.<command>``, with a flag for every field of
    ``config_class`` (``--no-field`` too for booleans); the command adds its own extras after.

    A multi-line ``description`` (a module docstring) is printed as written, a one-line one wrapped.
    """
    quiet_tensorflow()
    formatter = argparse.RawDescriptionHelpFormatter if description and "\n" in description \
        else argparse.HelpFormatter
    # No abbreviations: "--images" must not quietly mean "--images-per-class".
    parser = CommandParser(prog=f"python -m eeg2image_tf.{command}", description=description,
                           formatter_class=formatter, allow_abbrev=False)
    if config_class is not None:
        add_config_arguments(parser, config_class)
    return parser


def add_force(parser: argparse.ArgumentParser,
              help_text: str = "accept a config that differs from the run's config.json") -> None:
    parser.add_argument("--force", action="store_true", help=help_text)


def parse_config(parser: argparse.ArgumentParser, config_class: type,
                 argv: Sequence[str] | None):
    """Parse ``argv``; return ``(config, args)``, the extras a command added being on ``args``.

    The config is validated whole (:meth:`~.base.Config.validate`) before it is returned: a bad
    value is one ``error:`` line before the command reads or writes anything.
    """
    args = parser.parse_args(argv)
    return config_from_args(config_class, args).validate(), args
