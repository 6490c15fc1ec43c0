"""The ``hourglass`` command: parse, build the stage config, make one library call.

Beam runner flags go after ``--`` and stay Beam ``PipelineOptions``, e.g.
``hourglass run -- --direct_num_workers=2 --direct_running_mode=multi_processing``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported below

import json
import logging

import click

from models.config import ModelConfig, TrainConfig
from pipelines.config import InferConfig, PreprocessConfig, parse_color, parse_image_size
from pipelines.formats import FORMATS
from pipelines.sources import BUILTIN_MNIST, ReaderOptions
from pipelines.validation import DEFAULT_MAX_PIXELS

# Errors that carry a message meant for the user: shown without a traceback, exit code 1.
_USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
_BEAM = {"ignore_unknown_options": True}


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _USER_ERRORS as error:
            raise click.ClickException(str(error)) from error


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


def _model_options(f):
    f = click.option("--kind", default="dense", show_default=True, help="Autoencoder kind (see `hourglass models`).")(f)
    f = click.option("--latent-dim", type=int, default=32, show_default=True, help="Size of the code.")(f)
    f = click.option("--loss", type=click.Choice(["mse", "bce"]), default="mse", show_default=True)(f)
    return click.option("--epochs", type=int, default=10, show_default=True)(f)


_beam_args = click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
_limit = click.option("--limit", type=int, help="Read only the first N records.")
_INPUT_HELP = "builtin:mnist, a folder, a glob pattern or a file (images, IDX, NPY, NPZ, CSV, TFRecord)."


def _reader_options(f):
    """``--format`` and the container options (callback arguments ``fmt, image_key, label_key, labels, pixel_max``)."""
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["auto", *FORMATS]),
            default="auto",
            show_default=True,
            help="Input format; auto: from file names and contents.",
        ),
        click.option("--image-key", help="NPZ array / TFRecord feature holding the images (default x|images, image)."),
        click.option("--label-key", help="NPZ array / TFRecord feature / CSV column (name, index or none) of labels."),
        click.option("--labels", help="Labels file for NPY or IDX images (default: the sibling named like them)."),
        click.option(
            "--pixel-max", type=float, help="Value meaning white in arrays/CSV (default by dtype: 255, 65535, 1.0)."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _reader(fmt, image_key, label_key, labels, pixel_max) -> ReaderOptions:
    return ReaderOptions(fmt, image_key, label_key, labels, pixel_max)


_max_pixels = click.option(
    "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, show_default=True, help="Reject larger images."
)


@cli.command(context_settings=_BEAM)
@click.option("--input", "source", default=BUILTIN_MNIST, show_default=True, help=_INPUT_HELP)
@click.option("--output", default="hourglass-output", show_default=True, help="Writes data/, model/, predictions/.")
@_model_options
@_limit
@_reader_options
@_beam_args
def run(source, output, kind, latent_dim, loss, epochs, limit, fmt, image_key, label_key, labels, pixel_max, beam_args):
    """Preprocess -> train -> infer on one input."""
    from pipelines.job import make_job_config, run_job

    reader = _reader(fmt, image_key, label_key, labels, pixel_max)
    cfg = make_job_config(output, source, ModelConfig(kind, latent_dim, loss), epochs, limit, reader)
    click.echo(run_job(cfg, list(beam_args)).summary())


@cli.command(context_settings=_BEAM)
@click.option("--input", "source", required=True, help=_INPUT_HELP)
@click.option("--output", required=True, help="Folder for TFRecords, the transform output and stats.json.")
@click.option("--image-size", help="HxW to bring every image to (default: the dataset's one size).")
@click.option("--channels", type=click.Choice(["1", "3"]), help="Default: 3 if any image has colour.")
@click.option("--resize", type=click.Choice(["stretch", "pad", "crop"]), default="stretch", show_default=True)
@click.option("--background", default="black", show_default=True, help="Alpha and pad colour: name, #rrggbb or R,G,B.")
@click.option("--normalize", type=click.Choice(["unit", "standardize"]), default="unit", show_default=True)
@click.option("--eval-percent", type=int, default=10, show_default=True)
@_max_pixels
@click.option("--max-reject-fraction", type=float, default=0.01, show_default=True)
@_limit
@_reader_options
@_beam_args
def preprocess(
    source,
    output,
    image_size,
    channels,
    resize,
    background,
    normalize,
    eval_percent,
    max_pixels,
    max_reject_fraction,
    limit,
    fmt,
    image_key,
    label_key,
    labels,
    pixel_max,
    beam_args,
):
    """Read, validate, split and tf.Transform images into TFRecords (plus stats.json)."""
    from pipelines.preprocess import run_preprocess

    cfg = PreprocessConfig(
        input=source,
        output=output,
        image_size=parse_image_size(image_size),
        channels=int(channels) if channels else None,
        resize=resize,
        normalize=normalize,
        eval_percent=eval_percent,
        max_pixels=max_pixels,
        max_reject_fraction=max_reject_fraction,
        limit=limit,
        reader=_reader(fmt, image_key, label_key, labels, pixel_max),
        background=parse_color(background),
    )
    result = run_preprocess(cfg, list(beam_args))
    click.echo(
        f"wrote {result.counts.get('train_records', 0)} train + {result.counts.get('eval_records', 0)} eval "
        f"records, {result.rejected} rejected -> {result.output}"
    )


@cli.command()
@click.option("--data", required=True, help="A preprocess output folder.")
@click.option("--model-dir", required=True, help="Where checkpoints and the export go.")
@_model_options
@click.option("--batch-size", type=int, default=128, show_default=True, help="Per replica.")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored"]), default="auto", show_default=True)
def train(data, model_dir, kind, latent_dim, loss, epochs, batch_size, learning_rate, strategy):
    """Train an autoencoder and export it as one SavedModel."""
    from models.training import train as run_training
    from pipelines.config import write_config

    cfg = TrainConfig(
        data, model_dir, ModelConfig(kind, latent_dim, loss), epochs, batch_size, learning_rate, strategy=strategy
    )
    write_config(cfg, model_dir)
    result = run_training(cfg)
    click.echo(f"trained {epochs} epochs, eval loss {result.history['eval_loss'][-1]:.5f} -> {result.saved_model}")


@cli.command(context_settings=_BEAM)
@click.option("--model-dir", required=True, help="A training output folder.")
@click.option("--input", "source", required=True, help=_INPUT_HELP)
@click.option("--output", required=True, help="Folder for the Parquet predictions.")
@click.option("--batch-size-min", type=int, default=32, show_default=True)
@click.option("--batch-size-max", type=int, default=1024, show_default=True)
@_max_pixels
@_limit
@_reader_options
@_beam_args
def infer(
    model_dir,
    source,
    output,
    batch_size_min,
    batch_size_max,
    max_pixels,
    limit,
    fmt,
    image_key,
    label_key,
    labels,
    pixel_max,
    beam_args,
):
    """Encode and reconstruct images with a trained model; write Parquet."""
    from pipelines.infer import run_infer

    reader = _reader(fmt, image_key, label_key, labels, pixel_max)
    cfg = InferConfig(model_dir, source, output, batch_size_min, batch_size_max, max_pixels, limit, reader)
    result = run_infer(cfg, list(beam_args))
    click.echo(f"wrote {result.counts.get('prediction_rows', 0)} Parquet rows -> {result.output}")


@cli.command()
def models():
    """List the autoencoder kinds and their parameters."""
    from models.registry import describe_kinds

    click.echo(json.dumps(describe_kinds(), indent=2, default=str))


def main() -> None:
    cli(prog_name="hourglass")
