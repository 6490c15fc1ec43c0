"""Job config files: one YAML (or JSON) document -> the stage configs, checked key by key.

Schema (every key optional; the stage sections take the fields of their dataclasses)::

    input: builtin:mnist          # the source for preprocess and infer (a section may override it)
    output: hourglass-output      # root folder: data/, model/, predictions/, report/ below it
    reader: {format: auto, ...}   # how to read the input, for preprocess and infer (ReaderOptions)
    limit: 1000                   # read only the first records, for preprocess and infer
    beam_options:                 # Beam PipelineOptions, passed through untouched: a mapping
      runner: DirectRunner        #   {flag: value} (true = bare flag) or a list of "--flag=value"
    preprocess: {...}             # pipelines.config.PreprocessConfig
    train: {..., model: {...}}    # models.config.TrainConfig, models.config.ModelConfig
    infer: {...}                  # pipelines.config.InferConfig
    evaluate: {...}               # pipelines.config.EvaluateConfig (the report of `hourglass run`)

YAML anchors and aliases (``&name``, ``*name``) are refused: a few hundred bytes of nested aliases
expand to gigabytes once the values are walked (a "billion laughs" bomb), and a job config needs none.

Overrides (from command-line flags) are dotted keys such as ``train.model.kind``; they win over
the file. Unknown keys and bad values fail with a message naming the key and what is allowed.
Only the stages a command runs are built and checked (``infer`` never imports the model kinds).
"""

from __future__ import annotations

from typing import Any

import yaml

from models import fields
from models.config import TrainConfig
from pipelines.config import BUILTIN_MNIST, EvaluateConfig, InferConfig, JobConfig, PreprocessConfig
from transforms.errors import UserError

STAGES = {"preprocess": PreprocessConfig, "train": TrainConfig, "infer": InferConfig, "evaluate": EvaluateConfig}
TOP_KEYS = ("input", "output", "reader", "limit", "beam_options", *STAGES)
DEFAULT_OUTPUT = "hourglass-output"


class _AliasError(yaml.YAMLError):
    """A YAML anchor or alias, which job configs refuse."""


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases as it composes the document."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise _AliasError(f"a YAML {kind}{event.anchor} at line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


def load_config_file(path: str) -> dict[str, Any]:
    """Reads a YAML or JSON job config (any filesystem ``tf.io.gfile`` reads).

    Raises:
      UserError: no such file, not a YAML mapping, or YAML anchors/aliases (names the file).
    """
    import tensorflow as tf  # here: any filesystem TensorFlow reads; the module stays light

    if not tf.io.gfile.exists(path):
        raise UserError(f"config file {path} not found")
    with tf.io.gfile.GFile(path) as f:
        try:
            data = yaml.load(f.read(), Loader=_NoAliasLoader)  # _NoAliasLoader is a SafeLoader
        except _AliasError as error:
            raise UserError(
                f"config file {path} uses {error}: anchors and aliases are not allowed in job configs "
                "(they can expand without bound); write the values out"
            ) from error
        except yaml.YAMLError as error:
            raise UserError(f"config file {path} is not valid YAML/JSON: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys ({', '.join(TOP_KEYS)})")
    return data


def with_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted key of ``overrides`` set (None values are skipped)."""
    merged = _deep_copy(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = merged
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise UserError(f"config key {key!r} must be a mapping to set {dotted}")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            value = {**node[leaf], **value}  # e.g. model params: flags add to the file's
        node[leaf] = value
    return merged


def stage_mappings(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stage's section of a config mapping, with the shared keys and the derived paths filled in.

    Stage outputs default to ``OUTPUT/data``, ``OUTPUT/model``, ``OUTPUT/predictions`` and
    ``OUTPUT/report``; training reads what preprocess wrote, infer and evaluate load what training
    exported, and evaluate reads the preprocess output, unless a section says else.

    Raises:
      UserError: an unknown top-level key, or a section that is not a mapping.
    """
    _check_keys(data, TOP_KEYS, "config")
    source = data.get("input", BUILTIN_MNIST)
    root = str(data.get("output", DEFAULT_OUTPUT)).rstrip("/")
    sections = {name: _section(data, name) for name in STAGES}
    shared = {key: data[key] for key in ("reader", "limit") if key in data}
    pre = {"input": source, **shared, "output": f"{root}/data", **sections["preprocess"]}
    train = {"data_dir": pre["output"], "model_dir": f"{root}/model", **sections["train"]}
    infer = {**shared, "model_dir": train["model_dir"], "output": f"{root}/predictions", **sections["infer"]}
    if "watch" not in infer:
        infer.setdefault("input", source)
    report = {"model_dir": train["model_dir"], "output": f"{root}/report", **sections["evaluate"]}
    if "input" not in report:
        report.setdefault("data", pre["output"])
    return {"preprocess": pre, "train": train, "infer": infer, "evaluate": report}


def resolve_job_config(data: dict[str, Any], stages=tuple(STAGES)) -> tuple[JobConfig, list[str]]:
    """Builds the configs of ``stages`` from a config mapping; returns them and the Beam arguments.

    Local paths become absolute here, once, against the working directory (remote URIs and
    ``builtin:`` inputs stay as they are): Beam workers run in other processes and folders.
    The train stage is resolved against its kind's registered defaults (``models.registry``).

    Raises:
      UserError: an unknown key or a bad value (the message names the key and what is allowed).
    """
    mappings = stage_mappings(data)
    built = {name: fields.with_absolute_paths(fields.build(STAGES[name], mappings[name], name)) for name in stages}
    if "train" in built:
        import models.kinds  # noqa: F401  (registers every kind: only for the commands that train)
        from models.registry import resolve_train_config

        built["train"] = resolve_train_config(built["train"])
    return JobConfig(**built), beam_arguments(data.get("beam_options"))


def beam_arguments(options: dict[str, Any] | list[str] | None) -> list[str]:
    """``{"runner": "DirectRunner", "save_main_session": True}`` -> Beam command-line flags."""
    if options is None:
        return []
    if isinstance(options, list) and all(isinstance(o, str) for o in options):
        return list(options)
    if not isinstance(options, dict):
        raise UserError("beam_options must be a mapping {flag: value} or a list of '--flag=value' strings")
    args = []
    for flag, value in options.items():
        if value is True:
            args.append(f"--{flag}")
        elif value not in (None, False):
            args.append(f"--{flag}={value}")
    return args


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name) or {}
    if not isinstance(section, dict):
        raise UserError(f"config key {name!r} must be a mapping, got {section!r}")
    return section


def _check_keys(data: dict[str, Any], allowed, where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(allowed)}")


def _deep_copy(data):
    return {k: _deep_copy(v) for k, v in data.items()} if isinstance(data, dict) else data
