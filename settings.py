"""The settings framework: dataclass fields that carry their help, choices, bounds, CLI flag and grid flag.

``setting`` declares such a field; ``validate_fields`` checks a settings dataclass against them and
``add_arguments`` / ``from_args`` make its command-line options and build it from them (distil, teacher,
augment, serve, bench and tools/ all use these). Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Any


class SettingTypeError(TypeError, ValueError):
    """A setting of the wrong type: a TypeError, and a ValueError like any other bad setting."""


def setting(
    default: object = dataclasses.MISSING,
    help: str = "",
    *,
    choices: Sequence | None = None,
    bounds: str | None = None,
    flag: str | None = None,
    grid: bool = False,
    default_factory: Callable[[], object] | None = None,
) -> Any:
    """A dataclass field with its metadata. ``bounds`` is an interval: ``"[0, 1)"``, ``"[1, inf)"``."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "bounds": bounds,
        "flag": flag,
        "grid": grid,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def shared_setting(config: type, name: str) -> Any:
    """A dataclass field with the default and metadata of ``config``'s field ``name``: one setting that two
    configs hold (e.g. the teacher's max length, for fine-tuning and for caching)."""
    source = {f.name: f for f in dataclasses.fields(config)}[name]
    return field(default=source.default, metadata=dict(source.metadata))


def setting_flag(f: dataclasses.Field) -> str:
    """The command-line option of a settings field: its ``flag``, else ``--name-with-dashes``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def setting_type(hint: object) -> type:
    """``int | None`` -> int, ``tuple[str, ...]`` -> tuple, ``dict[int, str]`` -> dict, ``str`` -> str."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (tuple, dict):
        return origin
    return setting_type(args[0]) if origin is not None and args else typing.cast(type, hint)


def takes_several(hint: object) -> bool:
    """``str | tuple[str, ...] | None``: a field that takes one value or several (a list or tuple)."""
    return any(typing.get_origin(a) is tuple for a in typing.get_args(hint))


def item_type(hint: object) -> type:
    """The type of one value: ``tuple[float, ...] | None`` -> float, ``int`` -> int."""
    for arg in (hint, *typing.get_args(hint)):
        if typing.get_origin(arg) is tuple:
            return typing.get_args(arg)[0]
    return setting_type(hint)


def _in_bounds(value: float, bounds: str) -> bool:
    low, high = (float(x) for x in bounds[1:-1].split(","))
    above = value >= low if bounds[0] == "[" else value > low
    below = value <= high if bounds[-1] == "]" else value < high
    return above and below


def _describe_bounds(bounds: str, kind: type, value: float) -> str:
    """``"[1, inf)"`` -> "in [1, inf)"; a float: "a number in (0, 1]" ("a finite number ..." for inf, nan)."""
    if kind is not float:
        return f"in {bounds}"
    return f"a {'' if math.isfinite(value) else 'finite '}number in {bounds}"


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}


def _coerce(value: object, kind: type) -> object:
    """``value`` as ``kind`` where that loses nothing (1 -> 1.0, 16.0 -> 16, numpy scalars, list -> tuple);
    else ``value`` unchanged."""
    numpy = sys.modules.get("numpy")  # a NumPy bool exists only once NumPy is imported
    if isinstance(value, bool) or (kind is bool and numpy is not None and isinstance(value, numpy.bool_)):
        return bool(value)
    if kind is float and isinstance(value, numbers.Real):
        return float(value)
    if kind is int and isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    return value


def validate_fields(obj: object) -> None:
    """Check each field of a settings dataclass against its type, choices and bounds, converting lossless
    numbers in place; a one-line ValueError (``SettingTypeError`` for a wrong type) names the field,
    its flag, what is allowed and the value given."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, meta = hints[f.name], f.metadata
        kind, value = setting_type(hint), getattr(obj, f.name)
        if value is None and type(None) in typing.get_args(hint):
            continue
        if isinstance(value, (list, tuple)) and takes_several(hint):
            kind = tuple  # several values of a field that also takes one (its dataclass checks the items)
        if not dataclasses.is_dataclass(kind):
            value = _coerce(value, kind)
            object.__setattr__(obj, f.name, value)
        name = f"{f.name} ({setting_flag(f)})"
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            what = _TYPE_WORDS.get(kind, f"of type {kind.__name__}")
            raise SettingTypeError(f"{name} must be {what}, got {value!r}")
        choices = meta.get("choices")
        if choices and any(item not in choices for item in (value if kind is tuple else (value,))):
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
        bounds = meta.get("bounds")
        if bounds and (math.isnan(value) or not _in_bounds(value, bounds)):
            raise ValueError(f"{name} must be {_describe_bounds(bounds, kind, value)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: typing.Iterable[str] | None = None,
    skip: typing.Iterable[str] = (),
    required: typing.Iterable[str] = (),
    dest_prefix: str = "",
) -> None:
    """One option per field of the dataclass ``cls``, from its type and metadata (help, choices, bounds, flag,
    grid). A grid field or a tuple takes several values; a bool is a switch. The dataclass checks values.
    ``dest_prefix`` keeps two dataclasses' fields of one name apart (the teacher's and the student's seed)."""
    hints, only, skip, required = typing.get_type_hints(cls), only and set(only), set(skip), set(required)
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        meta, hint = f.metadata, hints[f.name]
        kind = setting_type(hint)
        notes = [
            f"in {meta['bounds']}" if meta.get("bounds") else "",
            "" if f.name in required else "default: %(default)s",
        ]
        options: dict = dict(
            dest=dest_prefix + f.name,
            default=f.default,
            help=f"{meta.get('help', '').replace('%', '%%')} ({'; '.join(filter(None, notes))})",
        )
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        elif kind is tuple or takes_several(hint) or meta.get("grid"):
            options.update(nargs="+", type=item_type(hint))
            options["default"] = [f.default] if meta.get("grid") else f.default
        else:
            options["type"] = kind
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        elif dest_prefix and kind is not bool:
            options["metavar"] = f.name.upper()  # N_ITER, not AUGMENT_N_ITER
        if f.name in required:
            options.update(required=True, default=None)
        parser.add_argument(setting_flag(f), **options)


def from_args(cls: type, args: argparse.Namespace, **values: object) -> typing.Any:
    """The dataclass ``cls`` built from the parsed options of its fields (and ``values``)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**given, **values})
