"""The ``hourglass`` command: parse, resolve the config, make one library call.

Every option is generated from a field of the stage dataclasses (``pipelines.config``,
``models.config``): its flag, help text, choices and the default shown in ``--help`` come from the
field, and setting it sets that key of the job config (``pipelines.config_loader``). ``--config
FILE`` loads a YAML/JSON job config, and the flags given on the command line override its keys; a
flag that is not given never hides a value of the file. Each command takes the options of every
stage it runs (``run`` takes all of them). An unknown option fails (exit 2) with a suggestion.
Beam runner flags go after ``--`` and stay Beam ``PipelineOptions``, e.g.
``hourglass run -- --direct_num_workers=2 --direct_running_mode=multi_processing``.
``--verbose`` and ``--quiet`` (``pipelines.logs``) go before or after the command.

Importing this module imports no TensorFlow, Beam or PIL: the commands import their jobs when they run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import click

from models.config import TrainConfig
from pipelines.config import BUILTIN_MNIST, EvaluateConfig, InferConfig, PreprocessConfig, ReaderOptions
from pipelines.config_loader import DEFAULT_OUTPUT, load_config_file, resolve_job_config, stage_mappings, with_overrides
from pipelines.logs import NORMAL, QUIET, VERBOSE, configure, native_stderr_filtered, stage
from transforms.errors import UserError, check_output_folder, storage_error


@dataclasses.dataclass
class _Flag:
    """One command-line option: the config keys it sets, its type and its field's metadata and default."""

    flag: str
    keys: list[str]
    hint: Any
    metadata: Mapping[str, Any]
    default: Any = None


def _fields(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[_Flag]:
    """A flag per field of ``cls`` (nested dataclasses flattened; their flags keep the field names)."""
    flags = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        key = f"{prefix}.{field.name}" if prefix else field.name
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            flags += _fields(hint, key)
            continue
        flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        default = None if field.default is dataclasses.MISSING else field.default
        flags.append(_Flag(flag, [key], hint, field.metadata, default))
    return flags


def _merge(flags: list[_Flag]) -> list[_Flag]:
    """One option per flag name: a flag that several stages share sets all their keys."""
    merged: dict[str, _Flag] = {}
    for flag in flags:
        if flag.flag in merged:
            merged[flag.flag].keys += flag.keys
        else:
            merged[flag.flag] = dataclasses.replace(flag, keys=list(flag.keys))
    return list(merged.values())


def _plain_type(hint: Any) -> Any:
    """``int | None`` -> ``int``; containers stay what they are."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint


def _derived_defaults() -> dict[str, Any]:
    """What an empty job config resolves the path keys to (the defaults ``--help`` shows for them)."""
    return {"input": BUILTIN_MNIST, "output": DEFAULT_OUTPUT, **stage_mappings({})}


def _shown_default(flag: _Flag, derived: dict[str, Any]) -> str | None:
    """The default ``--help`` shows: the derived path, else the field's default (None: none shown)."""
    value: Any = derived
    for part in flag.keys[0].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        value = flag.default
    if value is None or value == ():
        return None
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _to_option(flag: _Flag, derived: dict[str, Any]) -> tuple[click.Option, Callable[[Any], Any] | None]:
    meta = flag.metadata
    kind = _plain_type(flag.hint)
    if kind is bool:  # --name / --no-name
        name = flag.flag.removeprefix("--")
        return click.Option([f"--{name}/--no-{name}"], default=flag.default, help=meta.get("help", "")), None
    convert = meta.get("convert")
    choices = meta.get("choices")
    if choices is not None:
        click_type = click.Choice([str(c) for c in choices])
        if kind is not str:
            convert = kind
    elif kind in (int, float, str):
        click_type = kind
    else:
        click_type = str  # tuples and mappings: their text form, parsed by the config loader
    shown = _shown_default(flag, derived)
    # The default is shown, never used: only flags given on the command line override the config.
    option = click.Option(
        [flag.flag],
        type=click_type,
        multiple=bool(meta.get("multiple")),
        metavar=meta.get("metavar"),
        help=meta.get("help", ""),
        default=shown,
        show_default=shown is not None,
    )
    return option, convert


class _Command(click.Command):
    """A command whose options set job-config keys (see the module docstring).

    Args:
      flags: the command's options.
      stages: the stages it builds configs for.
      beam: whether it takes Beam flags after ``--``.
    """

    def __init__(self, name: str, callback, flags: list[_Flag], stages: tuple[str, ...], beam: bool, **kwargs):
        derived = _derived_defaults()
        self.stages, self.beam = stages, beam
        self.keys: dict[str, tuple[list[str], Callable | None]] = {}
        params = [click.Option(["--config"], type=click.Path(dir_okay=False), help="A YAML/JSON job config.")]
        params += _level_options()
        for flag in _merge(flags):
            option, convert = _to_option(flag, derived)
            self.keys[option.name] = (flag.keys, convert)
            params.append(option)
        if beam:
            epilog = "Beam pipeline options go after --, e.g. -- --direct_num_workers=2."
            kwargs.setdefault("epilog", epilog)
        super().__init__(name, callback=callback, params=params, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        beam_args: list[str] = []
        if "--" in args:
            if not self.beam:
                raise click.UsageError(f"`hourglass {self.name}` runs no Beam pipeline: it takes no options after --")
            split = args.index("--")
            args, beam_args = args[:split], args[split + 1 :]
        ctx.meta["beam_args"] = beam_args
        return super().parse_args(ctx, args)

    def resolve(self, ctx: click.Context):
        """The command's job config from ``--config`` and the flags given; and the Beam arguments."""
        data = load_config_file(ctx.params["config"]) if ctx.params.get("config") else {}
        overrides = {}
        for name, (keys, convert) in self.keys.items():
            if ctx.get_parameter_source(name) != click.core.ParameterSource.COMMANDLINE:
                continue
            value = ctx.params[name]
            overrides.update(dict.fromkeys(keys, convert(value) if convert else value))
        job, beam_args = resolve_job_config(with_overrides(data, overrides), self.stages)
        return job, beam_args + ctx.meta.get("beam_args", [])


def resolve(ctx: click.Context):
    """The job config and Beam arguments of a command's context (see :meth:`_Command.resolve`)."""
    return ctx.command.resolve(ctx)


class _UserFacing(click.ClickException):
    """A :class:`UserError` shown without a traceback, exiting with the error's own code."""

    def __init__(self, error: UserError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise _UserFacing(error) from error


def _level_options() -> list[click.Option]:
    """``--verbose`` and ``--quiet``: taken before the command (``hourglass --quiet run``) and after it."""
    return [
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            help="Also the log of TensorFlow, absl, CUDA and Beam (and our debug lines).",
        ),
        click.Option(["-q", "--quiet"], is_flag=True, help="Only errors and the summary."),
    ]


def _set_level(ctx: click.Context) -> None:
    """Sets the log level from ``--verbose``/``--quiet`` given before or after the command; call it
    before anything imports TensorFlow (see ``pipelines.logs``)."""
    given = {name for c in (ctx, ctx.parent) if c is not None for name in ("verbose", "quiet") if c.params.get(name)}
    if len(given) > 1:
        raise click.UsageError("pass at most one of --verbose and --quiet")
    configure(VERBOSE if "verbose" in given else QUIET if "quiet" in given else NORMAL)


@click.group(cls=_Group, params=_level_options())
def cli(**_) -> None:
    """Hourglass: learn compact image codes with autoencoders, as Beam and TensorFlow jobs."""
    _set_level(click.get_current_context())


def _command(name: str, flags: list[_Flag], stages: tuple[str, ...], beam: bool = True):
    """Registers ``fn(job, beam_args)`` as the command ``name`` with ``flags``."""

    def register(fn):
        def callback(**_):
            ctx = click.get_current_context()
            _set_level(ctx)
            job, beam_args = resolve(ctx)
            for output in _outputs(job):
                check_output_folder(output)
            try:
                with stage(name):
                    fn(job, beam_args)
            except Exception as error:  # a full disk or read-only output, met anywhere, is a UserError
                refused = storage_error(error, _outputs(job))
                if refused is None:
                    raise
                raise refused from error

        cli.add_command(_Command(name, callback, flags, stages, beam, help=fn.__doc__))
        return fn

    return register


def _outputs(job) -> list[str]:
    """The folders a command writes (a stage's output, training's model folder)."""
    stages = (job.preprocess, job.train, job.infer, job.evaluate)
    return [getattr(c, "output", None) or c.model_dir for c in stages if c is not None]


# `run` reads one input and writes under one root: these keys are the job config's top-level ones.
_SHARED = ("input", "output", "limit", "reader")
_PREPROCESS = {field.name: field for field in dataclasses.fields(PreprocessConfig)}
_RUN_FLAGS = [
    _Flag("--input", ["input"], str, _PREPROCESS["input"].metadata),
    _Flag("--output", ["output"], str, {"help": "The root folder: data/, model/, predictions/, report/ below it."}),
    _Flag("--limit", ["limit"], int, _PREPROCESS["limit"].metadata),
    *_fields(ReaderOptions, "reader"),
    *_fields(PreprocessConfig, "preprocess", skip=_SHARED),
    *_fields(TrainConfig, "train", skip=("data_dir", "model_dir")),
    *_fields(
        InferConfig,
        "infer",
        skip=(*_SHARED, "model_dir", "watch", "window_seconds", "poll_seconds", "watch_seconds", "watch_mode"),
    ),
    *_fields(EvaluateConfig, "evaluate", skip=(*_SHARED, "model_dir", "data")),
]


@_command("run", _RUN_FLAGS, ("preprocess", "train", "infer", "evaluate"))
def run(job, beam_args):
    """Preprocess -> train -> infer -> evaluate (report/index.html) on one input."""
    from pipelines.job import run_job

    click.echo(run_job(job, beam_args).summary())


@_command("preprocess", _fields(PreprocessConfig, "preprocess"), ("preprocess",))
def preprocess(job, beam_args):
    """Read, validate, split and tf.Transform images into TFRecords (plus stats.json)."""
    # tf.Transform sets this when imported, after TensorFlow; set first, TensorFlow does not load
    # Keras 3 (with scikit-learn, SciPy, matplotlib) for a job that uses none: 1 s of CPU, 80 MB.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from pipelines.preprocess.job import run_preprocess

    result = run_preprocess(job.preprocess, beam_args)
    click.echo(result.summary())


@_command("train", _fields(TrainConfig, "train"), ("train",), beam=False)
def train(job, beam_args):
    """Train an autoencoder and export it as one SavedModel."""
    from models.training import train as run_training

    click.echo(run_training(job.train).summary())


@_command("infer", _fields(InferConfig, "infer"), ("infer",))
def infer(job, beam_args):
    """Encode and reconstruct images with a trained model; write Parquet."""
    from pipelines.infer.job import run_infer

    click.echo(run_infer(job.infer, beam_args).summary())


@_command("evaluate", _fields(EvaluateConfig, "evaluate"), ("evaluate",))
def evaluate(job, beam_args):
    """Evaluate a trained model; write a visual report (index.html) and metrics.json."""
    from pipelines.evaluate.job import run_evaluate

    click.echo(run_evaluate(job.evaluate, beam_args).summary())


@cli.command()
def models():
    """List the autoencoder kinds, their parameters and training defaults."""
    import models.kinds  # noqa: F401  (registers every kind; light: no TensorFlow)
    from models.registry import describe_kinds

    click.echo(json.dumps(describe_kinds(), indent=2, default=str))


def main() -> None:
    with native_stderr_filtered():
        cli(prog_name="hourglass")
