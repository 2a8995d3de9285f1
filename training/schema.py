"""Strict construction of (nested) config dataclasses from plain mappings.

Every config in sarsweep goes through `build`: unknown keys are rejected, values are checked
against the field's annotation, and any error names the dotted path of the field (`data.stride`).
Field-level rules live in each dataclass's `__post_init__` and raise `ConfigError(field, ...)`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from errors import ConfigError

T = TypeVar("T")


def require(ok: bool, field: str, message: str) -> None:
    """Field-level validation in a dataclass's __post_init__: raise a ConfigError naming the field."""
    if not ok:
        raise ConfigError(field, message)


def _type_name(tp: Any) -> str:
    """As a YAML writer thinks of it: float, 'auto' (a Literal's values), null."""
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, field: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, field)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else ConfigError(
            field, f"expected one of {' | '.join(_type_name(o) for o in options)}, got {value!r}"
        )
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(field, f"must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(field, f"expected a mapping, got {value!r}")
        _key_tp, value_tp = typing.get_args(tp)
        return {str(k): _convert(v, value_tp, f"{field}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, field)
    return _convert_scalar(value, tp, field)


def _convert_scalar(value: Any, tp: Any, field: str) -> Any:
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(field, f"expected {tp.__name__}, got a boolean {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(field, f"expected {_type_name(tp)}, got {value!r}")
    return value


def build(cls: type[T], data: Any, field: str = "") -> T:
    """Instantiate dataclass `cls` from mapping `data`, strictly."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(field, f"expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        where = f"{field}.{unknown[0]}" if field else unknown[0]
        raise ConfigError(where, f"unknown key; known keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        path = f"{field}.{name}" if field else name
        kwargs[name] = _convert(value, hints[name], path)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{field}.{missing[0]}" if field else missing[0], "required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise exc.within(field or None) from None


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def to_plain(obj: Any, skip_defaults: bool = False) -> Any:
    """A dataclass tree as plain dicts/lists/scalars (YAML- and JSON-safe).

    skip_defaults leaves out fields equal to their defaults, recursively: the form to hash when
    a new field (with a default) must not change what existing configs hash to.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_plain(getattr(obj, f.name), skip_defaults) for f in dataclasses.fields(obj)
            if not (skip_defaults and getattr(obj, f.name) == _default_of(f))
        }
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v, skip_defaults) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, skip_defaults) for v in obj]
    return obj
