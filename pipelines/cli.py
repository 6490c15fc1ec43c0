"""The ``hourglass`` command: parse, build the stage config, make one library call.

Beam runner flags go after ``--`` and stay Beam ``PipelineOptions``, e.g.
``hourglass run -- --direct_num_workers=2 --direct_running_mode=multi_processing``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported below

import json
import logging

import click

from models.config import LR_SCALINGS, PRECISIONS, STRATEGIES, ModelConfig, TrainConfig
from pipelines.config import EvaluateConfig, InferConfig, PreprocessConfig, parse_image_size
from pipelines.parquet_schema import COMPRESSIONS, OUTPUT_COLUMNS, PIXEL_FORMATS
from pipelines.sources import BUILTIN_MNIST

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
_limit = click.option("--limit", type=int, help="Read only the first N records of builtin:mnist.")


@cli.command(context_settings=_BEAM)
@click.option("--input", "source", default=BUILTIN_MNIST, show_default=True, help="builtin:mnist or a folder.")
@click.option(
    "--output", default="hourglass-output", show_default=True, help="Writes data/, model/, predictions/, report/."
)
@_model_options
@_limit
@_beam_args
def run(source, output, kind, latent_dim, loss, epochs, limit, beam_args):
    """Preprocess -> train -> infer -> evaluate (report/index.html) on one input."""
    from pipelines.job import make_job_config, run_job

    cfg = make_job_config(output, source, ModelConfig(kind, latent_dim, loss), epochs, limit)
    click.echo(run_job(cfg, list(beam_args)).summary())


@cli.command(context_settings=_BEAM)
@click.option("--input", "source", required=True, help="builtin:mnist or a folder of images.")
@click.option("--output", required=True, help="Folder for TFRecords and the transform output.")
@click.option("--image-size", help="HxW to bring every image to (default: the dataset's one size).")
@click.option("--channels", type=click.Choice(["1", "3"]), help="Default: 3 if any image has colour.")
@click.option("--resize", type=click.Choice(["stretch", "pad", "crop"]), default="stretch", show_default=True)
@click.option("--normalize", type=click.Choice(["unit", "standardize"]), default="unit", show_default=True)
@click.option("--eval-percent", type=int, default=10, show_default=True)
@click.option("--max-reject-fraction", type=float, default=0.01, show_default=True)
@_limit
@_beam_args
def preprocess(
    source, output, image_size, channels, resize, normalize, eval_percent, max_reject_fraction, limit, beam_args
):
    """Read, validate, split and tf.Transform images into TFRecords."""
    from pipelines.preprocess import run_preprocess

    cfg = PreprocessConfig(
        input=source,
        output=output,
        image_size=parse_image_size(image_size),
        channels=int(channels) if channels else None,
        resize=resize,
        normalize=normalize,
        eval_percent=eval_percent,
        max_reject_fraction=max_reject_fraction,
        limit=limit,
    )
    result = run_preprocess(cfg, list(beam_args))
    click.echo(
        f"wrote {result.counts.get('train_records', 0)} train + {result.counts.get('eval_records', 0)} eval "
        f"records, {result.rejected} rejected -> {result.output}"
    )


@cli.command()
@click.option("--data", required=True, help="A preprocess output folder.")
@click.option("--model-dir", required=True, help="Checkpoints (resumed from), logs and the export.")
@_model_options
@click.option("--batch-size", type=int, default=128, show_default=True, help="Per replica.")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="float32", show_default=True)
@click.option("--lr-scaling", type=click.Choice(LR_SCALINGS), default="none", show_default=True, help="With replicas.")
@click.option("--checkpoint-every", type=int, default=0, show_default=True, help="Also checkpoint every N steps.")
@click.option("--early-stopping-patience", type=int, default=0, show_default=True, help="Epochs; 0: off.")
@click.option("--reduce-lr-patience", type=int, default=0, show_default=True, help="Epochs; 0: off.")
@click.option("--reduce-lr-factor", type=float, default=0.5, show_default=True)
@click.option("--min-delta", type=float, default=0.0, show_default=True, help="Smallest eval-loss improvement.")
@click.option("--warm-start", help="Start from this model folder (same kind and shape).")
@click.option("--cache-mb", type=int, default=1024, show_default=True, help="Keep splits this small in memory.")
def train(
    data,
    model_dir,
    kind,
    latent_dim,
    loss,
    epochs,
    batch_size,
    learning_rate,
    strategy,
    precision,
    lr_scaling,
    checkpoint_every,
    early_stopping_patience,
    reduce_lr_patience,
    reduce_lr_factor,
    min_delta,
    warm_start,
    cache_mb,
):
    """Train an autoencoder and export it as one SavedModel."""
    from models.training import train as run_training
    from pipelines.config import write_config

    cfg = TrainConfig(
        data,
        model_dir,
        ModelConfig(kind, latent_dim, loss),
        epochs,
        batch_size,
        learning_rate,
        strategy=strategy,
        precision=precision,
        lr_scaling=lr_scaling,
        checkpoint_every_steps=checkpoint_every,
        early_stopping_patience=early_stopping_patience,
        reduce_lr_patience=reduce_lr_patience,
        reduce_lr_factor=reduce_lr_factor,
        min_delta=min_delta,
        warm_start=warm_start,
        cache_mb=cache_mb,
    )
    result = run_training(cfg)
    write_config(cfg, model_dir)  # after: a refused or failed run leaves the folder's config as it was
    stopped = ", stopped early" if result.stopped_early else ""
    click.echo(
        f"trained {result.epochs} epochs{stopped}, eval loss {result.history['eval_loss'][-1]:.5f} "
        f"-> {result.saved_model}"
    )


@cli.command(context_settings=_BEAM)
@click.option("--model-dir", required=True, help="A training output folder.")
@click.option("--input", "source", help="builtin:mnist or a folder of images (any preprocess input).")
@click.option("--output", required=True, help="Folder for the Parquet predictions.")
@click.option("--batch-size-min", type=int, default=32, show_default=True)
@click.option("--batch-size-max", type=int, default=1024, show_default=True)
@click.option("--run-id", help="Scheduled run id (e.g. a date): writes OUTPUT/run_id=ID/, replaced by a re-run.")
@click.option("--outputs", help=f"Comma-separated columns to write of {','.join(OUTPUT_COLUMNS)} (default: all).")
@click.option("--pixels", type=click.Choice(PIXEL_FORMATS), default="float", show_default=True)
@click.option("--compression", type=click.Choice(COMPRESSIONS), default="snappy", show_default=True)
@click.option("--watch", help="Keep running: encode image files as they land in this folder (streaming).")
@click.option("--window-seconds", type=float, default=60.0, show_default=True, help="With --watch.")
@click.option("--poll-seconds", type=float, default=5.0, show_default=True, help="With --watch.")
@click.option("--watch-seconds", type=float, help="With --watch: stop after this long (default: never).")
@_limit
@_beam_args
def infer(
    model_dir,
    source,
    output,
    batch_size_min,
    batch_size_max,
    run_id,
    outputs,
    pixels,
    compression,
    watch,
    window_seconds,
    poll_seconds,
    watch_seconds,
    limit,
    beam_args,
):
    """Encode and reconstruct images with a trained model; write Parquet."""
    from pipelines.infer import run_infer

    if (source is None) == (watch is None):
        raise click.UsageError("pass exactly one of --input (a batch run) and --watch (streaming)")
    cfg = InferConfig(
        model_dir,
        source or BUILTIN_MNIST,
        output,
        batch_size_min,
        batch_size_max,
        limit=limit,
        run_id=run_id,
        outputs=tuple(c.strip() for c in outputs.split(",")) if outputs else None,
        pixels=pixels,
        compression=compression,
        watch=watch,
        window_seconds=window_seconds,
        poll_seconds=poll_seconds,
        watch_seconds=watch_seconds,
    )
    click.echo(run_infer(cfg, list(beam_args)).summary())


@cli.command(context_settings=_BEAM)
@click.option("--model-dir", required=True, help="A training output folder.")
@click.option("--data", help="A preprocess output: evaluates its eval split, its train split is the reference.")
@click.option("--input", "source", help="Instead of --data: builtin:mnist or a folder of images.")
@click.option("--output", required=True, help="Folder for index.html, metrics.json and the figures.")
@click.option("--max-examples", type=int, default=10_000, show_default=True, help="Images used per split, at most.")
@click.option("--threshold-percentile", type=float, default=99.0, show_default=True, help="Of the reference errors.")
@click.option("--seed", type=int, default=0, show_default=True)
@_limit
@_beam_args
def evaluate(model_dir, data, source, output, max_examples, threshold_percentile, seed, limit, beam_args):
    """Evaluate a trained model; write a visual report (index.html) and metrics.json."""
    from pipelines.evaluate import run_evaluate

    cfg = EvaluateConfig(
        model_dir,
        output,
        data=data,
        input=source,
        limit=limit,
        max_examples=max_examples,
        threshold_percentile=threshold_percentile,
        seed=seed,
    )
    click.echo(run_evaluate(cfg, list(beam_args)).summary())


@cli.command()
def models():
    """List the autoencoder kinds and their parameters."""
    from models.registry import describe_kinds

    click.echo(json.dumps(describe_kinds(), indent=2, default=str))


def main() -> None:
    cli(prog_name="hourglass")
