"""Run by ``test_distributed`` in a fresh process: MirroredStrategy over two logical CPU devices.

Logical devices must be configured before TensorFlow initializes its devices, which the test
process has long done. ``python -m tests.models.two_cpus DATA_DIR OUT_DIR`` trains the same model
on the same data twice, with the default strategy and a batch of 8, then with ``mirrored`` (two
replicas) and a per-replica batch of 4, so both see the same global batches in the same order;
prints one JSON line: ``{"default": training.json, "mirrored": training.json}``.
"""

from __future__ import annotations

import json
import os
import sys

import tensorflow as tf


def main(data_dir: str, out_dir: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from models.config import ModelConfig, TrainConfig
    from models.training import TRAINING_JSON, train

    reports = {}
    # Only one MirroredStrategy per process: two would share collective keys.
    for strategy, batch_size in (("default", 8), ("mirrored", 4)):
        model_dir = os.path.join(out_dir, strategy)
        cfg = TrainConfig(
            data_dir,
            model_dir,
            ModelConfig("dense", latent_dim=4),
            epochs=4,
            batch_size=batch_size,
            learning_rate=0.01,
            strategy=strategy,
        )
        train(cfg)
        with open(os.path.join(model_dir, TRAINING_JSON)) as f:
            reports[strategy] = json.load(f)
    print(json.dumps(reports))


if __name__ == "__main__":
    main(*sys.argv[1:])
