"""Autoencoder registry: every kind registers its builder, its parameter dataclass and its defaults.

Registration is by explicit import: ``models.kinds`` imports every kind module, and each module
registers itself with :func:`register_autoencoder`; nothing here imports a kind, so the imports go
one way (kinds -> registry -> config). Importing the kinds is light (the builders import Keras when
they run), so ``hourglass models`` lists them without loading TensorFlow.

``build_autoencoder(config, input_shape)`` is the only way the rest of the code makes a model, so
an unknown kind or an unknown parameter fails loudly with the valid choices instead of falling
back to a default. Each kind also registers the loss, learning rate, batch size and noise that reach the
quality targets (``benchmarks/bench_model_quality.py``), so naming the kind is enough for a good
model; :func:`resolve_model_config` and :func:`resolve_train_config` fill the fields left unset.

Parameters arrive as typed values (YAML/JSON) or as strings (``--param KEY=VALUE``); both are
checked against the dataclass's field types (``bool``, ``int``, ``float``, ``str``,
``tuple[int, ...]`` written ``500,300``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models import fields
from models.config import LOSSES, ModelConfig, TrainConfig
from transforms.corruption import CorruptionSpec, parse_corruption
from transforms.errors import UserError

if TYPE_CHECKING:
    from models.base import Autoencoder

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
class ModelSpec:
    """What every builder (and :class:`~models.base.Autoencoder`) is given besides the kind's parameters.

    Attributes:
      kind: the registered kind.
      latent_dim: size of the code.
      image_shape: ``(H, W, C)`` of the images.
      loss: ``mse`` or ``bce``.
      corruption: what the model is trained to undo (the input pipeline corrupts its inputs in
        training; the export returns ``restored``), or None.
    """

    kind: str
    latent_dim: int
    image_shape: tuple[int, int, int]
    loss: str
    corruption: CorruptionSpec | None = None


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
    """Function decorator: ``builder(params, spec: ModelSpec) -> Autoencoder``.

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
            raise TypeError(f"autoencoder kind {kind!r} is registered twice")
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _REGISTRY[kind] = _Entry(params_cls, builder, summary, settings)
        return builder

    return decorate


def known_kinds() -> list[str]:
    """Registered kinds, sorted."""
    _check_registered()
    return sorted(_REGISTRY)


def kind_settings(kind: str) -> KindSettings:
    """The kind's default loss, learning rate, batch size and noise, and the losses it accepts.

    Raises:
      UserError: unknown kind (lists the known ones).
    """
    return _entry(kind).settings


def describe_kinds() -> dict[str, dict[str, Any]]:
    """For ``hourglass models``: each kind's summary, its parameters' defaults and its training settings."""
    _check_registered()
    return {
        kind: {
            "summary": entry.summary,
            "params": {f.name: f.default for f in dataclasses.fields(entry.params_cls)},
            "training": dataclasses.asdict(entry.settings),
        }
        for kind, entry in sorted(_REGISTRY.items())
    }


def resolve_params(kind: str, params: dict[str, Any]) -> Any:
    """Builds the kind's parameter dataclass from a plain dict of typed values or strings.

    Raises:
      UserError: unknown kind, a key that the kind does not take, or a value of the wrong type
        (the message lists the valid keys, or names the expected type).
    """
    return fields.build(
        _entry(kind).params_cls,
        params,
        f"kind {kind!r}",
        unknown="unknown parameter(s) {keys} for {where}; it takes: {allowed}",
        key_where="parameter {key!r} of {where}",
    )


def resolve_model_config(config: ModelConfig) -> ModelConfig:
    """``config`` with the kind's defaults filled in: loss, the corruption (``corrupt`` holds it
    whether given as ``--corrupt``, as ``--noise`` or by the kind; ``noise`` too when it is a noise),
    and every parameter (typed).

    Raises:
      UserError: unknown kind, a loss the kind does not take, or bad parameters (names the valid ones).
    """
    settings = kind_settings(config.kind)
    if config.loss is not None and config.loss not in settings.losses:
        raise UserError(
            f"loss for kind {config.kind!r} must be one of {', '.join(settings.losses)}, got {config.loss!r}"
        )
    corruption = config.corruption or parse_corruption(settings.noise, noise_only=True)
    params = resolve_params(config.kind, dict(config.params))
    return dataclasses.replace(
        config,
        loss=config.loss or settings.loss,
        noise=str(corruption) if corruption and corruption.is_noise else None,
        corrupt=str(corruption) if corruption else None,
        params=dataclasses.asdict(params),
    )


def resolve_train_config(config: TrainConfig) -> TrainConfig:
    """``config`` with its model resolved and the kind's batch size and learning rate where unset."""
    settings = kind_settings(config.model.kind)
    return dataclasses.replace(
        config,
        model=resolve_model_config(config.model),
        batch_size=config.batch_size or settings.batch_size,
        learning_rate=config.learning_rate or settings.learning_rate,
    )


def build_autoencoder(config: ModelConfig, input_shape: tuple[int, int, int]) -> Autoencoder:
    """Builds an (unbuilt-weights) autoencoder of ``config.kind`` for images of ``input_shape``.

    Raises:
      UserError: as :func:`resolve_model_config`, or a corruption the images cannot take (``grey``
        of 1-channel images).
    """
    config = resolve_model_config(config)
    entry = _entry(config.kind)
    corruption = config.corruption
    if corruption is not None:
        corruption.check_shape(tuple(input_shape))
    spec = ModelSpec(config.kind, config.latent_dim, tuple(input_shape), config.loss, corruption)
    return entry.builder(entry.params_cls(**config.params), spec)


def build_with_defaults(kind: str, spec: ModelSpec, **overrides: Any) -> Autoencoder:
    """The ``kind``'s model with its default parameters but ``overrides``, built with ``spec`` (e.g.
    ``denoising``'s base)."""
    entry = _entry(kind)
    return entry.builder(entry.params_cls(**overrides), spec)


def _entry(kind: str) -> _Entry:
    _check_registered()
    if kind not in _REGISTRY:
        raise UserError(f"unknown autoencoder kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def _check_registered() -> None:
    if not _REGISTRY:
        raise RuntimeError("no autoencoder kind is registered: import models.kinds first")
