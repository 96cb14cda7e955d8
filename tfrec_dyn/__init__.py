"""tfrec_dyn: dynamic, behaviour-aware sequential recommendation in TensorFlow/Keras.

The stack is Keras 2 (`tf_keras`), which TensorFlow Recommenders, TFMA and TFX
need; importing this package selects it (see `_keras_guard`).
"""

from tfrec_dyn._keras_guard import ensure_legacy_keras

ensure_legacy_keras()

__version__ = "0.1.0"

from tfrec_dyn import data, layers, metrics, models, training  # noqa: E402

__all__ = ["data", "layers", "metrics", "models", "training", "__version__"]
