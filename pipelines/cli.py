"""The ``hourglass`` command: parse, resolve the config, make one library call.

Every stage option sets one key of the job config (``pipelines.config_loader``): ``--config FILE``
loads a YAML/JSON job config, and the flags given on the command line override its keys. Defaults
live in the config dataclasses only, so a flag that is not given never hides a value of the file.
Beam runner flags go after ``--`` and stay Beam ``PipelineOptions``, e.g.
``hourglass run -- --direct_num_workers=2 --direct_running_mode=multi_processing``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported below

import json
import logging

import click

from models.config import LOSSES, LR_SCALINGS, PRECISIONS, STRATEGIES
from pipelines.config_loader import load_config_file, resolve_job_config, with_overrides
from pipelines.formats import FORMATS
from pipelines.parquet_schema import COMPRESSIONS, OUTPUT_COLUMNS, PIXEL_FORMATS

# Errors that carry a message meant for the user: shown without a traceback, exit code 1.
_USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
_BEAM = {"ignore_unknown_options": True}


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _USER_ERRORS as error:
            raise click.ClickException(str(error)) from error


class ConfigOption(click.Option):
    """An option that, when given, sets the job-config keys ``keys`` (dotted, e.g. ``train.epochs``).

    Args:
      keys: one key or several (``--limit`` of ``run`` limits both preprocess and infer).
      convert: turns the flag's value into the config value (e.g. ``KEY=VALUE`` pairs into a dict).
    """

    def __init__(self, *decls, keys: str | tuple[str, ...], convert=None, **kwargs):
        super().__init__(*decls, **kwargs)
        self.keys = (keys,) if isinstance(keys, str) else keys
        self.convert = convert


def option(keys, *decls, convert=None, **kwargs):
    """``click.option`` for a :class:`ConfigOption` (no default: the config's applies)."""
    return click.option(*decls, cls=ConfigOption, keys=keys, convert=convert, **kwargs)


def resolve(ctx: click.Context):
    """The job config from ``--config`` and the flags given; returns it and the Beam arguments."""
    data = load_config_file(ctx.params["config"]) if ctx.params.get("config") else {}
    overrides = {}
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, ConfigOption) and value not in (None, ()):
            overrides.update(dict.fromkeys(param.keys, param.convert(value) if param.convert else value))
    job, beam_args = resolve_job_config(with_overrides(data, overrides))
    return job, beam_args + list(ctx.params.get("beam_args", ()))


def _options(*decorators):
    def apply(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


_config = click.option("--config", type=click.Path(dir_okay=False), help="A YAML/JSON job config (deploy/README.md).")
_beam_args = click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
_INPUT_HELP = "builtin:mnist, a folder, a glob pattern or a file (images, IDX, NPY, NPZ, CSV, TFRecord)."


def _model_options(prefix: str):
    from models.registry import parse_param_args

    return _options(
        option(f"{prefix}.kind", "--kind", help="Autoencoder kind (see `hourglass models`). [default: dense]"),
        option(f"{prefix}.latent_dim", "--latent-dim", type=int, help="Size of the code. [default: 32]"),
        option(f"{prefix}.loss", "--loss", type=click.Choice(LOSSES), help="Default: the kind's."),
        option(
            f"{prefix}.params",
            "--param",
            "params",
            multiple=True,
            metavar="KEY=VALUE",
            convert=parse_param_args,
            help="A kind parameter (repeatable), e.g. widths=500,300.",
        ),
        option(
            f"{prefix}.noise", "--noise", help="Corrupt inputs in training: gaussian:SIGMA, salt-pepper:P or mask:P."
        ),
    )


def _reader_options(prefix: str):
    """``--format`` and the options of container formats, setting ``PREFIX.*`` reader keys."""
    return _options(
        option(
            f"{prefix}.format",
            "--format",
            "fmt",
            type=click.Choice(["auto", *FORMATS]),
            help="Input format; auto (default): from file names and contents.",
        ),
        option(
            f"{prefix}.image_key",
            "--image-key",
            help="NPZ array / TFRecord feature of the images (default x|images, image).",
        ),
        option(
            f"{prefix}.label_key",
            "--label-key",
            help="NPZ array / TFRecord feature / CSV column (name, index or none) of labels.",
        ),
        option(f"{prefix}.labels", "--labels", help="Labels file for NPY or IDX images (default: the sibling)."),
        option(
            f"{prefix}.pixel_max",
            "--pixel-max",
            type=float,
            help="Value meaning white in arrays/CSV (default by dtype: 255, 65535, 1.0).",
        ),
    )


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Hourglass: learn compact image codes with autoencoders, as Beam and TensorFlow jobs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for noisy in ("absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command(context_settings=_BEAM)
@_config
@option("input", "--input", "source", help=f"{_INPUT_HELP} [default: builtin:mnist]")
@option("output", "--output", help="Writes data/, model/, predictions/, report/. [default: hourglass-output]")
@_model_options("train.model")
@option("train.epochs", "--epochs", type=int, help="[default: 10]")
@option("limit", "--limit", type=int, help="Read only the first N records.")
@_reader_options("reader")
@_beam_args
@click.pass_context
def run(ctx, **_):
    """Preprocess -> train -> infer -> evaluate (report/index.html) on one input."""
    from pipelines.job import run_job

    job, beam_args = resolve(ctx)
    click.echo(run_job(job, beam_args).summary())


@cli.command(context_settings=_BEAM)
@_config
@option("preprocess.input", "--input", "source", help=f"{_INPUT_HELP} [default: builtin:mnist]")
@option(
    "preprocess.output", "--output", help="TFRecords, transform output, stats.json. [default: hourglass-output/data]"
)
@option("preprocess.image_size", "--image-size", help="HxW to bring every image to (default: the dataset's one size).")
@option("preprocess.channels", "--channels", type=click.Choice(["1", "3"]), convert=int, help="Default: 3 if colour.")
@option("preprocess.resize", "--resize", type=click.Choice(["stretch", "pad", "crop"]), help="[default: stretch]")
@option("preprocess.background", "--background", help="Alpha and pad colour: name, #rrggbb or R,G,B. [default: black]")
@option("preprocess.normalize", "--normalize", type=click.Choice(["unit", "standardize"]), help="[default: unit]")
@option("preprocess.eval_percent", "--eval-percent", type=int, help="[default: 10]")
@option("preprocess.max_pixels", "--max-pixels", type=int, help="Reject larger images. [default: 64000000]")
@option("preprocess.max_reject_fraction", "--max-reject-fraction", type=float, help="[default: 0.01]")
@option("preprocess.limit", "--limit", type=int, help="Read only the first N records.")
@_reader_options("preprocess.reader")
@_beam_args
@click.pass_context
def preprocess(ctx, **_):
    """Read, validate, split and tf.Transform images into TFRecords (plus stats.json)."""
    from pipelines.preprocess import run_preprocess

    job, beam_args = resolve(ctx)
    result = run_preprocess(job.preprocess, beam_args)
    click.echo(
        f"wrote {result.counts.get('train_records', 0)} train + {result.counts.get('eval_records', 0)} eval "
        f"records, {result.rejected} rejected -> {result.output}"
    )


@cli.command()
@_config
@option("train.data_dir", "--data", help="A preprocess output folder. [default: hourglass-output/data]")
@option("train.model_dir", "--model-dir", help="Checkpoints, logs and the export. [default: hourglass-output/model]")
@_model_options("train.model")
@option("train.epochs", "--epochs", type=int, help="[default: 10]")
@option("train.batch_size", "--batch-size", type=int, help="Per replica. Default: the kind's (see `hourglass models`).")
@option("train.learning_rate", "--learning-rate", type=float, help="Default: the kind's (see `hourglass models`).")
@option("train.strategy", "--strategy", type=click.Choice(STRATEGIES), help="[default: auto]")
@option("train.precision", "--precision", type=click.Choice(PRECISIONS), help="[default: float32]")
@option("train.lr_scaling", "--lr-scaling", type=click.Choice(LR_SCALINGS), help="With replicas. [default: none]")
@option("train.checkpoint_every_steps", "--checkpoint-every", type=int, help="Also checkpoint every N steps.")
@option("train.early_stopping_patience", "--early-stopping-patience", type=int, help="Epochs; 0 (default): off.")
@option("train.reduce_lr_patience", "--reduce-lr-patience", type=int, help="Epochs; 0 (default): off.")
@option("train.reduce_lr_factor", "--reduce-lr-factor", type=float, help="[default: 0.5]")
@option("train.min_delta", "--min-delta", type=float, help="Smallest eval-loss improvement. [default: 0]")
@option("train.warm_start", "--warm-start", help="Start from this model folder (same kind and shape).")
@option("train.cache_mb", "--cache-mb", type=int, help="Keep splits this small in memory. [default: 1024]")
@option("train.seed", "--seed", type=int, help="[default: 0]")
@click.pass_context
def train(ctx, **_):
    """Train an autoencoder and export it as one SavedModel."""
    from models.training import train as run_training
    from pipelines.config import write_config

    job, _ = resolve(ctx)
    result = run_training(job.train)
    write_config(job.train, job.train.model_dir)  # after: a refused or failed run leaves the folder's config
    stopped = ", stopped early" if result.stopped_early else ""
    click.echo(
        f"trained {result.epochs} epochs{stopped}, eval loss {result.history['eval_loss'][-1]:.5f} "
        f"-> {result.saved_model}"
    )


@cli.command(context_settings=_BEAM)
@_config
@option("infer.model_dir", "--model-dir", help="A training output folder. [default: hourglass-output/model]")
@option("infer.input", "--input", "source", help=f"{_INPUT_HELP} [default: builtin:mnist]")
@option("infer.output", "--output", help="Folder for the Parquet predictions. [default: hourglass-output/predictions]")
@option("infer.batch_size_min", "--batch-size-min", type=int, help="[default: 32]")
@option("infer.batch_size_max", "--batch-size-max", type=int, help="[default: 1024]")
@option("infer.max_pixels", "--max-pixels", type=int, help="Reject larger images. [default: 64000000]")
@option("infer.limit", "--limit", type=int, help="Read only the first N records.")
@option(
    "infer.run_id", "--run-id", help="Scheduled run id (e.g. a date): writes OUTPUT/run_id=ID/, replaced by a rerun."
)
@option("infer.outputs", "--outputs", help=f"Comma-separated columns of {','.join(OUTPUT_COLUMNS)} (default: all).")
@option("infer.pixels", "--pixels", type=click.Choice(PIXEL_FORMATS), help="[default: float]")
@option("infer.compression", "--compression", type=click.Choice(COMPRESSIONS), help="[default: snappy]")
@option("infer.watch", "--watch", help="Instead of --input: encode image files as they land in this folder.")
@option("infer.window_seconds", "--window-seconds", type=float, help="With --watch. [default: 60]")
@option("infer.poll_seconds", "--poll-seconds", type=float, help="With --watch. [default: 5]")
@option(
    "infer.watch_seconds", "--watch-seconds", type=float, help="With --watch: stop after this long (default: never)."
)
@_reader_options("infer.reader")
@_beam_args
@click.pass_context
def infer(ctx, **_):
    """Encode and reconstruct images with a trained model; write Parquet."""
    from pipelines.infer import run_infer

    if ctx.params["source"] and ctx.params["watch"]:
        raise click.UsageError("pass only one of --input (a batch run) and --watch (streaming)")
    job, beam_args = resolve(ctx)
    click.echo(run_infer(job.infer, beam_args).summary())


@cli.command(context_settings=_BEAM)
@_config
@option("evaluate.model_dir", "--model-dir", help="A training output folder. [default: hourglass-output/model]")
@option("evaluate.data", "--data", help="A preprocess output: its eval split is evaluated. [default: ...output/data]")
@option("evaluate.input", "--input", "source", help="Instead of --data: images to read (any preprocess input).")
@option("evaluate.output", "--output", help="index.html, metrics.json and the figures. [default: ...output/report]")
@option("evaluate.max_examples", "--max-examples", type=int, help="Images used per split, at most. [default: 10000]")
@option(
    "evaluate.threshold_percentile", "--threshold-percentile", type=float, help="Of reference errors. [default: 99]"
)
@option("evaluate.seed", "--seed", type=int, help="[default: 0]")
@option("evaluate.limit", "--limit", type=int, help="With --input: read only the first N records.")
@_beam_args
@click.pass_context
def evaluate(ctx, **_):
    """Evaluate a trained model; write a visual report (index.html) and metrics.json."""
    from pipelines.evaluate import run_evaluate

    job, beam_args = resolve(ctx)
    click.echo(run_evaluate(job.evaluate, beam_args).summary())


@cli.command()
def models():
    """List the autoencoder kinds and their parameters."""
    from models.registry import describe_kinds

    click.echo(json.dumps(describe_kinds(), indent=2, default=str))


def main() -> None:
    cli(prog_name="hourglass")
