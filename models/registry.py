"""Autoencoder registry: every kind registers its builder, its parameter dataclass and its defaults.

``build_autoencoder(config, input_shape)`` is the only way the rest of the code makes a model, so
an unknown kind or an unknown parameter fails loudly with the valid choices instead of falling
back to a default. Each kind also registers the loss, learning rate, batch size and noise that reach the
quality targets (``benchmarks/bench_model_quality.py``), so naming the kind is enough for a good
model; ``ModelConfig`` and ``TrainConfig`` fill the fields left unset from here.

Parameters arrive as typed values (YAML/JSON) or as strings (``--param KEY=VALUE``); both are
checked against the dataclass's field types (``bool``, ``int``, ``float``, ``str``,
``tuple[int, ...]`` written ``500,300``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any

from models.base import Autoencoder
from models.config import LOSSES, ModelConfig
from transforms.noise import parse_noise

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_PARAM_TYPES = (bool, int, float, str, tuple[int, ...])


@dataclasses.dataclass(frozen=True)
class KindSettings:
    """A kind's training settings.

    Attributes:
      loss, learning_rate, batch_size, noise: what the kind uses when the config leaves them unset
        (``batch_size`` per replica).
      losses: the losses the kind accepts (e.g. ``linear`` only ``mse``).
    """

    loss: str = "mse"
    learning_rate: float = 1e-3
    batch_size: int = 128
    noise: str | None = None
    losses: tuple[str, ...] = LOSSES


@dataclasses.dataclass(frozen=True)
class _Entry:
    params_cls: type
    builder: Callable[..., Autoencoder]
    summary: str
    settings: KindSettings


_REGISTRY: dict[str, _Entry] = {}


def register_autoencoder(
    kind: str,
    params_cls: type,
    loss: str = "mse",
    learning_rate: float = 1e-3,
    batch_size: int = 128,
    noise: str | None = None,
    losses: tuple[str, ...] = LOSSES,
) -> Callable:
    """Function decorator: ``builder(params, latent_dim, input_shape, loss) -> Autoencoder``.

    Args:
      kind: the name users pass as ``--kind``.
      params_cls: a frozen dataclass of the kind's parameters, all with defaults.
      loss, learning_rate, batch_size, noise, losses: the kind's training settings (see :class:`KindSettings`).
    """
    settings = KindSettings(loss, learning_rate, batch_size, noise, losses)
    unsupported = {name: t for name, t in typing.get_type_hints(params_cls).items() if t not in _PARAM_TYPES}
    if unsupported:
        raise TypeError(f"parameters of kind {kind!r} must be bool, int, float, str or tuple[int, ...]: {unsupported}")

    def decorate(builder: Callable[..., Autoencoder]) -> Callable[..., Autoencoder]:
        if kind in _REGISTRY:
            raise ValueError(f"autoencoder kind {kind!r} is registered twice")
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _REGISTRY[kind] = _Entry(params_cls, builder, summary, settings)
        return builder

    return decorate


def known_kinds() -> list[str]:
    """Registered kinds, sorted."""
    _import_kinds()
    return sorted(_REGISTRY)


def kind_settings(kind: str) -> KindSettings:
    """The kind's default loss, learning rate, batch size and noise, and the losses it accepts.

    Raises:
      ValueError: unknown kind (lists the known ones).
    """
    return _entry(kind).settings


def describe_kinds() -> dict[str, dict[str, Any]]:
    """For ``hourglass models``: each kind's summary, its parameters' defaults and its training settings."""
    _import_kinds()
    return {
        kind: {
            "summary": entry.summary,
            "params": {f.name: f.default for f in dataclasses.fields(entry.params_cls)},
            "training": dataclasses.asdict(entry.settings),
        }
        for kind, entry in sorted(_REGISTRY.items())
    }


def parse_param_args(pairs: Iterable[str]) -> dict[str, str]:
    """``["widths=500,300", "tied=true"]`` -> ``{"widths": "500,300", "tied": "true"}`` (checked later).

    Raises:
      ValueError: an item is not ``KEY=VALUE``.
    """
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param takes KEY=VALUE (e.g. --param widths=500,300), got {pair!r}")
        params[key.strip()] = value.strip()
    return params


def resolve_params(kind: str, params: dict[str, Any]) -> Any:
    """Builds the kind's parameter dataclass from a plain dict of typed values or strings.

    Raises:
      ValueError: unknown kind, a key that the kind does not take, or a value of the wrong type
        (the message lists the valid keys, or names the expected type).
    """
    entry = _entry(kind)
    hints = typing.get_type_hints(entry.params_cls)
    names = [f.name for f in dataclasses.fields(entry.params_cls)]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for kind {kind!r}; it takes: {', '.join(names) or 'none'}"
        )
    return entry.params_cls(**{key: _coerce(kind, key, hints[key], value) for key, value in params.items()})


def build_autoencoder(config: ModelConfig, input_shape: tuple[int, int, int]) -> Autoencoder:
    """Builds an (unbuilt-weights) autoencoder of ``config.kind`` for images of ``input_shape``."""
    entry = _entry(config.kind)
    params = resolve_params(config.kind, dict(config.params))
    model = entry.builder(params, latent_dim=config.latent_dim, input_shape=tuple(input_shape), loss=config.loss)
    model.kind = config.kind
    model.noise = parse_noise(config.noise)
    return model


def _coerce(kind: str, key: str, field_type: Any, value: Any) -> Any:
    """``value`` as the field's type: strings are parsed first, then the type is checked."""
    if isinstance(value, str) and field_type is not str:
        value = _parse(field_type, value)
    if not _matches(field_type, value):
        expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
            field_type, "comma-separated integers (e.g. 500,300)"
        )
        raise ValueError(f"parameter {key!r} of kind {kind!r} must be {expected}, got {value!r}")
    if field_type is float:
        return float(value)
    return value if field_type in (bool, int, str) else tuple(value)


def _parse(field_type: Any, text: str) -> Any:
    """The value ``text`` spells for ``field_type``, or ``text`` itself when it spells none."""
    text = text.strip()
    if field_type is bool:
        return True if text.lower() in _TRUE else False if text.lower() in _FALSE else text
    try:
        if field_type in (int, float):
            return field_type(text)
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        return text


def _matches(field_type: Any, value: Any) -> bool:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if field_type is int:
        return is_int(value)
    if field_type is float:
        return is_int(value) or isinstance(value, float)
    if field_type in (bool, str):
        return isinstance(value, field_type)
    return isinstance(value, list | tuple) and all(is_int(item) for item in value)


def _entry(kind: str) -> _Entry:
    _import_kinds()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown autoencoder kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def _import_kinds() -> None:
    """Imports the modules that register kinds (kept here so importing the registry is enough)."""
    from models import conv, conv_vae, deep, denoising, dense, linear, sparse, vae  # noqa: F401
