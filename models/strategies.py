"""Distribution strategies: which one to make, its public name, and what it implies for training.

``auto`` makes MirroredStrategy over the visible GPUs, else the default strategy; ``mirrored``
and ``multi-worker`` ask for one explicitly (the latter reads the cluster from ``TF_CONFIG``).
"""

from __future__ import annotations

import json
import math
import os

import tensorflow as tf

from transforms.errors import UserError


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy over visible GPUs, else the default strategy.

    ``multi-worker`` must be made before any other TensorFlow work in the process (it configures
    the collective ops), so :func:`train` makes the strategy first.

    Raises:
      UserError: ``multi-worker`` without a usable ``TF_CONFIG`` (names the fix).
    """
    if name == "multi-worker":
        _check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        # Over the visible GPUs, else over the logical CPU devices (one, unless configured otherwise).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "auto" and tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _check_tf_config(text: str | None) -> None:
    fix = (
        'set TF_CONFIG on every worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}, or use --strategy auto on one machine'
    )
    if not text:
        raise UserError(f"--strategy multi-worker reads the cluster from TF_CONFIG, which is not set; {fix}")
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error}); {fix}") from error
    if not isinstance(tf_config, dict) or not {"cluster", "task"} <= set(tf_config):
        raise UserError(f"TF_CONFIG needs both 'cluster' and 'task'; {fix}")


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public name of ``strategy``'s class (``DefaultStrategy`` for the default one)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "DefaultStrategy"


def scaled_learning_rate(learning_rate: float, replicas: int, scaling: str) -> float:
    """The learning rate for ``replicas`` times the per-replica batch: ``none``, ``linear`` or ``sqrt``."""
    factor = {"none": 1.0, "linear": float(replicas), "sqrt": math.sqrt(replicas)}[scaling]
    return learning_rate * factor


def num_workers(strategy) -> int:
    """Training processes (TF_CONFIG's chief and workers); 1 without a cluster."""
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec() if resolver is not None else None
    if not spec or not spec.jobs:
        return 1
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)
