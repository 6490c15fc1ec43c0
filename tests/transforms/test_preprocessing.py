"""The tf.Transform ``preprocessing_fn``: real full-pass analyzers over a Beam dataset."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_transform.beam as tft_beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from pipelines.inputs.images import encode_png
from transforms import features
from transforms.image_spec import ImageSpec
from transforms.preprocessing import make_preprocessing_fn, raw_feature_spec

# Three 2x2 grey images of one value each (0, 0.4, 0.8 once scaled): mean 0.4, variance 0.32 / 3.
VALUES = (0, 102, 204)
LABELS = (b"b", b"a", b"a")


def _raw():
    return [
        {features.ID: f"r{i}".encode(), features.LABEL: label, features.IMAGE: encode_png(np.full((2, 2), v, np.uint8))}
        for i, (v, label) in enumerate(zip(VALUES, LABELS, strict=True))
    ]


def _check(normalize: str):
    mean, stddev = 0.4, np.sqrt(0.32 / 3)

    def check(transformed):
        rows = sorted(transformed, key=lambda row: row[features.ID])
        assert [row[features.ID] for row in rows] == [b"r0", b"r1", b"r2"]
        pixels = np.stack([np.asarray(row[features.PIXELS]).reshape(2, 2, 1) for row in rows])
        np.testing.assert_allclose(pixels[:, 0, 0, 0], [v / 255 for v in VALUES], atol=1e-6)
        inputs = np.stack([np.asarray(row[features.INPUTS]).reshape(2, 2, 1) for row in rows])
        expected = (pixels - mean) / stddev if normalize == "standardize" else pixels
        np.testing.assert_allclose(inputs, expected, rtol=1e-4, atol=1e-5)
        # The vocabulary is ordered by frequency: "a" (twice) is 0, "b" is 1.
        assert [int(row[features.LABEL_INDEX]) for row in rows] == [1, 0, 0]
        assert {int(row[features.STATS_EXAMPLES]) for row in rows} == {3}
        np.testing.assert_allclose([float(row[features.STATS_PIXEL_MAX]) for row in rows], [0.8] * 3, atol=1e-6)

    return check


@pytest.mark.parametrize("normalize", ["unit", "standardize"])
def test_analyzers_compute_over_the_dataset_and_transform_every_record(normalize, tmp_path):
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_feature_spec()))
    preprocessing_fn = make_preprocessing_fn(ImageSpec(2, 2, 1), normalize)
    with TestPipeline() as p, tft_beam.Context(temp_dir=str(tmp_path)):
        raw = p | beam.Create(_raw())
        (transformed, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        assert_that(transformed, _check(normalize))


def test_unknown_normalization_names_the_choices():
    with pytest.raises(ValueError, match="unit, standardize"):
        make_preprocessing_fn(ImageSpec(4, 4, 1), "minmax")


def test_raw_features_are_scalar_strings():
    spec = raw_feature_spec()
    assert set(spec) == set(features.RAW_FEATURES)
    assert all(s.shape == [] and s.dtype.name == "string" for s in spec.values())
