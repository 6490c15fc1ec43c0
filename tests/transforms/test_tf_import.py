"""``import_tensorflow``: TensorFlow and Keras load without scikit-learn and matplotlib, which stay importable."""

import subprocess
import sys

# A fresh interpreter: the test session may have imported TensorFlow (and the hidden packages) already.
_CHECK = """
import sys
from transforms.tf_import import KERAS_OPTIONAL, import_tensorflow
import_tensorflow()
import keras, tensorflow
loaded = [name for name in KERAS_OPTIONAL if name in sys.modules]
import sklearn.decomposition, matplotlib.figure
print(loaded, tensorflow.constant(2).numpy() * 2, keras.layers.Dense(3)(tensorflow.ones((1, 2))).shape)
"""


def test_tensorflow_loads_without_the_keras_optional_packages_and_they_import_afterwards():
    run = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[] 4 (1, 3)"
