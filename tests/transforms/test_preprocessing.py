import pytest

from transforms import features
from transforms.image_spec import ImageSpec
from transforms.preprocessing import make_preprocessing_fn, raw_feature_spec


def test_unknown_normalization_names_the_choices():
    with pytest.raises(ValueError, match="unit, standardize"):
        make_preprocessing_fn(ImageSpec(4, 4, 1), "minmax")


def test_raw_features_are_scalar_strings():
    spec = raw_feature_spec()
    assert set(spec) == set(features.RAW_FEATURES)
    assert all(s.shape == [] and s.dtype.name == "string" for s in spec.values())
