"""Importing TensorFlow without the optional packages Keras loads with it, to shorten start-up.

TensorFlow imports Keras when it is imported (to register Keras' optimizers), and Keras then imports
scikit-learn (for ``keras.wrappers``; scikit-learn brings scipy.stats) and matplotlib.pyplot (for
``keras.visualization.plot_image_gallery``) whenever they are installed: 1.5 to 4.5 s of each
start-up on the shared 2-core machine, for Keras features Hourglass does not use.

In: nothing. Out: :func:`import_tensorflow` imports TensorFlow with those packages hidden, so Keras
takes them as absent (those two Keras features then say they need the package); afterwards they
import as usual (evaluate uses both). Once TensorFlow is imported, it does nothing.
"""

from __future__ import annotations

import sys

# Packages Keras imports only when installed, for features Hourglass does not use.
KERAS_OPTIONAL = ("sklearn", "matplotlib")


def import_tensorflow() -> None:
    """Imports TensorFlow (and Keras) without ``KERAS_OPTIONAL``; see the module docstring."""
    if "tensorflow" in sys.modules:
        return
    hidden = [name for name in KERAS_OPTIONAL if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # an import of it raises ImportError, which Keras expects
    try:
        import tensorflow  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]
