"""Autoencoder registry: every kind registers its builder and its parameter dataclass by name.

``build_autoencoder(config, input_shape)`` is the only way the rest of the code makes a model, so
an unknown kind or an unknown parameter fails loudly with the valid choices instead of falling
back to a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from models.base import Autoencoder
from models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class _Entry:
    params_cls: type
    builder: Callable[..., Autoencoder]
    summary: str


_REGISTRY: dict[str, _Entry] = {}


def register_autoencoder(kind: str, params_cls: type) -> Callable:
    """Class/function decorator: ``builder(params, latent_dim, input_shape, loss) -> Autoencoder``."""

    def decorate(builder: Callable[..., Autoencoder]) -> Callable[..., Autoencoder]:
        if kind in _REGISTRY:
            raise ValueError(f"autoencoder kind {kind!r} is registered twice")
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _REGISTRY[kind] = _Entry(params_cls, builder, summary)
        return builder

    return decorate


def known_kinds() -> list[str]:
    """Registered kinds, sorted."""
    _import_kinds()
    return sorted(_REGISTRY)


def describe_kinds() -> dict[str, dict[str, Any]]:
    """For ``hourglass models``: each kind's one-line summary and its parameters' defaults."""
    _import_kinds()
    return {
        kind: {
            "summary": entry.summary,
            "params": {f.name: f.default for f in dataclasses.fields(entry.params_cls)},
        }
        for kind, entry in sorted(_REGISTRY.items())
    }


def resolve_params(kind: str, params: dict[str, Any]) -> Any:
    """Builds the kind's parameter dataclass from a plain dict.

    Raises:
      ValueError: unknown kind, or a key that the kind does not take (the message lists both).
    """
    entry = _entry(kind)
    names = [f.name for f in dataclasses.fields(entry.params_cls)]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for kind {kind!r}; it takes: {', '.join(names) or 'none'}"
        )
    return entry.params_cls(**params)


def build_autoencoder(config: ModelConfig, input_shape: tuple[int, int, int]) -> Autoencoder:
    """Builds an (unbuilt-weights) autoencoder of ``config.kind`` for images of ``input_shape``."""
    entry = _entry(config.kind)
    params = resolve_params(config.kind, dict(config.params))
    model = entry.builder(params, latent_dim=config.latent_dim, input_shape=tuple(input_shape), loss=config.loss)
    model.kind = config.kind
    return model


def _entry(kind: str) -> _Entry:
    _import_kinds()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown autoencoder kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def _import_kinds() -> None:
    """Imports the modules that register kinds (kept here so importing the registry is enough)."""
    from models import dense  # noqa: F401
