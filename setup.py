"""Hourglass: autoencoder image codes as Beam / tf.Transform / TensorFlow batch jobs.

One distribution with three packages (``transforms`` <- ``models`` <- ``pipelines``) and the
``hourglass`` console script. The same file is Beam's ``--setup_file`` for remote workers, so it
must stay importable without the project's dependencies installed.
"""

import setuptools

REQUIRED = [
    # TensorFlow, tf.Transform, tfx-bsl and Beam move together: deploy/constraints.txt pins the set.
    "tensorflow>=2.21,<2.22",
    "tensorflow-transform>=1.21,<1.22",
    "tensorboard>=2.21,<2.22",  # tf.summary's implementation (training's TensorBoard logs)
    "tfx-bsl>=1.21,<1.22",  # Arrow RecordBatches in and out of tf.Transform (TFXIO)
    "tensorflow-metadata>=1.21,<1.22",
    "apache-beam[gcp]>=2.77,<2.78",
    "keras>=3.15,<4",
    "pyarrow>=25",
    "google-crc32c>=1.5",  # TFRecord framing checks when reading TFRecord inputs
    "click>=8.1",
    "mlxtend>=0.25",
    "numpy>=2",
    "pillow>=12",
    "PyYAML>=6",
    "scikit-learn>=1.9",
    "matplotlib>=3.11",
    "threadpoolctl>=3.1",
]

setuptools.setup(
    name="hourglass",
    version="0.1.0",
    description="Learn compact image codes with autoencoders, as Beam and TensorFlow batch jobs.",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["pipelines*", "models*", "transforms*"]),
    install_requires=REQUIRED,
    extras_require={
        "test": ["pytest>=9", "pytest-timeout>=2.4", "ruff>=0.17", "duckdb>=1.4"],
        # `make bench`: model_quality's colour section tests on scikit-image's sample photographs.
        "bench": ["scikit-image>=0.26,<0.27"],
    },
    entry_points={"console_scripts": ["hourglass=pipelines.cli:main"]},
)
