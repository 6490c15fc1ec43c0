"""Config fields: how a config dataclass declares an option, and how values become its typed fields.

:func:`option` declares a field once: its default, its help text and its command-line settings
(``pipelines.cli`` generates the options from them). :func:`build` makes a frozen dataclass from a
mapping of JSON/YAML values or their text forms (what ``--param KEY=VALUE``, a job config or
``model_info.json`` hold), checking every key and value against the field types: ``bool``
(``true``/``false``), ``int``, ``float``, ``str``, ``tuple[T, ...]`` (a list or ``a,b``), fixed-size
tuples (a list, or the text form the field's ``parse`` reads, e.g. ``28x28``), mappings, nested
dataclasses and ``X | None``. Every mistake raises :class:`UserError` naming the key.
:func:`with_absolute_paths` makes the local paths of a config (fields declared with ``path=True``)
absolute, so workers in another working directory read and write where the user asked. Pure Python.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from transforms.errors import UserError

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
# gs://bucket/x, s3://..., builtin:mnist (two letters at least: C:\\ is a Windows drive, not a scheme).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **settings: Any) -> Any:
    """A config field: its default (or ``factory``), its help text and its settings: ``parse`` (the
    text form of a fixed-size tuple), ``path`` (a local path made absolute by
    :func:`with_absolute_paths`) and, for the command line, ``flag``, ``choices``, ``metavar``,
    ``multiple`` and ``convert`` (see ``pipelines.cli``)."""
    metadata = {"help": help, **settings}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def build(cls: type, data: Any, where: str, unknown: str | None = None, key_where: str = "{where}.{key}"):
    """The dataclass ``cls`` made from ``data``, every value typed and checked.

    Args:
      cls: a dataclass.
      data: a mapping of field names to values (JSON/YAML values or their text forms).
      where: how messages name ``data`` (e.g. ``train`` or a file path).
      unknown: the message for unknown keys (``{keys}``, ``{where}`` and ``{allowed}`` are filled in).
      key_where: how messages name one key (``{where}`` and ``{key}`` are filled in).

    Raises:
      UserError: not a mapping, unknown keys, a missing required field, values of the wrong type,
        or values the dataclass rejects.
    """
    if not isinstance(data, Mapping):
        raise UserError(f"{where} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(data) - set(fields))
    if extra:
        template = unknown or "unknown key(s) {keys} in {where}; allowed: {allowed}"
        raise UserError(template.format(keys=", ".join(extra), where=where, allowed=", ".join(fields) or "none"))
    missing = [name for name, f in fields.items() if _required(f) and name not in data]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    values = {
        key: coerce(hints[key], value, key_where.format(where=where, key=key), fields[key].metadata.get("parse"))
        for key, value in data.items()
    }
    try:
        return cls(**values)
    except UserError as error:
        raise UserError(f"{where}: {error}") from error


def coerce(kind: Any, value: Any, where: str, parse=None) -> Any:
    """``value`` as the type ``kind`` (see the module docstring); ``parse`` reads a fixed-size tuple's text.

    Raises:
      UserError: ``value`` is not of (and does not spell) the type; names ``where``.
    """
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None:
            return None
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if dataclasses.is_dataclass(kind):
        return build(kind, value, where)
    if typing.get_origin(kind) is tuple:
        return _coerce_tuple(typing.get_args(kind), value, where, parse)
    if isinstance(value, str) and kind in (bool, int, float):
        value = _spelled(kind, value)
    if kind is float and _is_int(value):
        return float(value)
    expected = typing.get_origin(kind) or kind
    if expected is typing.Any or (isinstance(value, expected) and (kind is bool or not isinstance(value, bool))):
        return value
    raise UserError(f"{where} must be {_describe(kind)}, got {value!r}")


def absolute_path(path: str) -> str:
    """A local path made absolute against the working directory (``~`` expanded); a URI
    (``gs://...``, ``builtin:mnist``) as it is."""
    if _SCHEME.match(path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def with_absolute_paths(config: Any) -> Any:
    """A copy of the dataclass ``config`` whose ``path`` fields (nested dataclasses included) hold
    absolute paths (see :func:`absolute_path`)."""
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            changes[field.name] = with_absolute_paths(value)
        elif field.metadata.get("path") and isinstance(value, str):
            changes[field.name] = absolute_path(value)
    return dataclasses.replace(config, **changes)


def _coerce_tuple(args: tuple, value: Any, where: str, parse) -> tuple:
    given = value
    if isinstance(value, str):
        if parse is not None:
            try:
                return parse(value)
            except UserError as error:
                raise UserError(f"{where}: {error}") from error
        value = [item.strip() for item in value.split(",")]
    items = args[:1] * len(value) if args[-1] is Ellipsis and isinstance(value, list | tuple) else args
    if not isinstance(value, list | tuple) or len(value) != len(items):
        raise UserError(f"{where} must be {_describe(tuple[args])}, got {given!r}")
    try:
        return tuple(coerce(kind, item, where) for kind, item in zip(items, value, strict=True))
    except UserError as error:
        raise UserError(f"{where} must be {_describe(tuple[args])}, got {given!r}") from error


def _spelled(kind: type, text: str) -> Any:
    """The value ``text`` spells for ``kind``, or ``text`` itself when it spells none."""
    text = text.strip()
    if kind is bool:
        return True if text.lower() in _TRUE else False if text.lower() in _FALSE else text
    try:
        return kind(text)
    except ValueError:
        return text


def _describe(kind: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    if kind in names or typing.get_origin(kind) in names:
        return names.get(kind) or names[typing.get_origin(kind)]
    args = typing.get_args(kind)
    if args[-1] is Ellipsis:
        return f"comma-separated {'integers (e.g. 500,300)' if args[0] is int else 'values (e.g. a,b)'}"
    return f"a list of {len(args)} values or its text form"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
