"""What every command's config is besides its fields: its checks and its record in a folder.

:class:`Config` is the base of every config dataclass (:mod:`.commands`). Its two duties:

- checks: :meth:`Config.validate` holds every field to its type and to its rule
  (:data:`.rules.FIELD_RULES`, or the class's ``RULES``), then the class's
  :meth:`Config.check_together` (fields that must agree with each other). Commands validate right
  after parsing, library calls on entry: a bad value is refused before anything is written.
- the record: a run (or an output folder) remembers the config that made it as JSON
  (``config.json``; the name is the run directory's business, :mod:`eeg2image_tf.runs`).
  :meth:`Config.load` reads one back (fields added to the class since count as their
  ``LEGACY_FIELD_VALUES`` or default); :meth:`Config.check_record` refuses a folder made with
  another config, except in ``RESUMABLE_FIELDS`` (lengths and budgets, which may grow so that
  training can be extended) and in ``LOCATION_FIELDS`` (where the folder itself is, which may
  move), unless ``force``; :meth:`Config.record` checks, then writes.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from ..errors import ConfigError, Eeg2ImageError
from ..io_utils import atomic_write_json, read_json
from .rules import Rule, field_problem, unwrap_optional

C = TypeVar("C")


def flag_of(name: str) -> str:
    """The command-line flag of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


class Config:
    """Checks and record of a frozen config dataclass (see the module docstring)."""

    # Fields that may change between two runs into one folder.
    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Fields that say where the record itself is: not compared (a folder may be moved).
    LOCATION_FIELDS: ClassVar[tuple[str, ...]] = ("run",)
    # Runs recorded before a field existed ran with these values (not the field's current default).
    LEGACY_FIELD_VALUES: ClassVar[dict[str, Any]] = {}
    # The class's own rule of a field, over FIELD_RULES.
    RULES: ClassVar[dict[str, Rule]] = {}
    # Fields whose None leaves the value to the data (the set, the encoder run): the run records
    # the value it used, and None matches any recorded value (the library call then compares the
    # value it decides).
    OPEN_FIELDS: ClassVar[tuple[str, ...]] = ()

    # ----------------------------------------------------------------------------------------------
    # Checks
    # ----------------------------------------------------------------------------------------------

    def validate(self: C, label: Callable[[str], str] = flag_of) -> C:
        """``self`` when every field holds a value it may hold, else a :class:`ConfigError` naming
        the first field that does not (``label(name)``: its flag) and what it must be."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            problem = field_problem(field.name, hints[field.name], value, self.RULES)
            if problem is not None:
                raise ConfigError(f"{label(field.name)} {problem}, got {value!r}")
        self.check_together()
        return self

    def check_together(self) -> None:
        """Refuse fields that do not fit together (a :class:`ConfigError`); none by default."""

    @property
    def location_flag(self) -> str:
        """The flag naming the folder the config is recorded in (``--run``, ``--out``)."""
        return flag_of(self.LOCATION_FIELDS[0]) if self.LOCATION_FIELDS else "folder"

    def given(self, *names: str) -> list[str]:
        """Those of ``names`` whose field is set (not None, not empty)."""
        return [name for name in names if getattr(self, name) not in (None, "")]

    # ----------------------------------------------------------------------------------------------
    # The record
    # ----------------------------------------------------------------------------------------------

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """The config recorded in ``path``; a :class:`ConfigError` naming it when it is not one."""
        path = Path(path)
        values = read_json(path)
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: not a recorded config (a JSON object)")
        try:
            return config_from_dict(cls, fill_missing_fields(cls, values))
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, config_to_dict(self))

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """``"field: recorded -> self"`` for every compared field that differs."""
        ignore = set(self.RESUMABLE_FIELDS) | set(self.LOCATION_FIELDS) | \
            {name for name in self.OPEN_FIELDS if getattr(self, name) is None}
        old = fill_missing_fields(type(self), dict(recorded))
        new = config_to_dict(self)
        keys = sorted((set(old) | set(new)) - ignore)
        return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]

    def check_record(self, path: str | Path, force: bool = False) -> None:
        """Refuse to record ``self`` over ``path`` when that holds another config (or no readable
        one), unless ``force``; write nothing."""
        path = Path(path)
        if force or not path.exists():
            return
        try:
            recorded = read_json(path)
        except Eeg2ImageError as exc:
            raise ConfigError(f"{exc}; fix or delete it, or use --force to overwrite it") from None
        if not isinstance(recorded, dict):
            raise ConfigError(f"{path}: not a recorded config (a JSON object); use another "
                              f"{self.location_flag}, or --force to overwrite it")
        diffs = self.differences(recorded)
        if diffs:
            raise ConfigError(f"{path}: this run was made with another config ({'; '.join(diffs)}); "
                              f"use a new {self.location_flag} directory, or --force to overwrite")

    def record(self, path: str | Path, force: bool = False) -> Path:
        """:meth:`check_record`, then write ``self`` to ``path`` (a changed resumable field is
        recorded with its new value)."""
        self.check_record(path, force)
        return self.save(path)


# --------------------------------------------------------------------------------------------------
# JSON round trip
# --------------------------------------------------------------------------------------------------

def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as JSON would give it back (tuples as lists), so dicts compare alike."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(config).items()}


def tuple_fields(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` that hold tuples (lists in JSON, repeated flags on the command line)."""
    hints = typing.get_type_hints(cls)
    return tuple(f.name for f in dataclasses.fields(cls)
                 if typing.get_origin(unwrap_optional(hints[f.name])[0]) is tuple)


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build ``cls`` from a dict; unknown keys are an error (a typo would otherwise be ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    values = dict(values)
    for name in tuple_fields(cls):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    return cls(**values)


def fill_missing_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Give a recorded config the fields that were added to ``cls`` after it was written.

    Such a field takes the value the run actually had: ``cls.LEGACY_FIELD_VALUES`` where a
    default changed later, else the field's default (by rule the behaviour before the field
    existed), so old runs stay resumable and loadable after upgrades.
    """
    legacy = getattr(cls, "LEGACY_FIELD_VALUES", {})
    for field in dataclasses.fields(cls):
        if field.name not in values:
            if field.name in legacy:
                values[field.name] = legacy[field.name]
            elif field.default is not dataclasses.MISSING:
                values[field.name] = field.default
    return values

