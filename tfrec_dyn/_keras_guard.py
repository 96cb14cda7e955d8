"""Make the Keras 2 (`tf_keras`) stack invisible to users.

TensorFlow Model Analysis and TFX need Keras 2, which TF 2.16+
only provides through the `tf_keras` package when `TF_USE_LEGACY_KERAS=1` is set
*before* TensorFlow is imported.  `import tfrec_dyn` sets it for a fresh
interpreter; if TensorFlow was already imported with Keras 3 it is too late to
switch, so we raise an error that says what to do (as TFRS does at import).
"""

import os
import sys

_HOW_TO_FIX = (
    "tfrec_dyn needs Keras 2 (tf_keras), but TensorFlow was already imported "
    "with Keras 3. Import tfrec_dyn before tensorflow, or set the environment "
    "variable TF_USE_LEGACY_KERAS=1 before starting Python "
    "(e.g. `export TF_USE_LEGACY_KERAS=1`)."
)


def ensure_legacy_keras() -> None:
    """Select `tf_keras` as `tf.keras`, or raise if TF already chose Keras 3."""
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    import tensorflow as tf  # already imported: cheap

    # With legacy Keras, tf.keras resolves to the `tf_keras` package.
    if not tf.keras.__name__.startswith("tf_keras"):
        raise ImportError(_HOW_TO_FIX)
