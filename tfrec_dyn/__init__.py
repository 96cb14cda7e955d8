"""tfrec_dyn: dynamic, behaviour-aware sequential recommendation in TensorFlow/Keras.

The stack is Keras 2 (`tf_keras`), which TFMA and TFX
need; importing this package selects it (see `_keras_guard`).
"""

from tfrec_dyn._keras_guard import ensure_legacy_keras

ensure_legacy_keras()

__version__ = "0.1.0"

__all__ = ["data", "layers", "metrics", "models", "training", "__version__"]


def __getattr__(name):
    """The subpackages load on first use (`tfrec_dyn.models`): importing the
    package (or its CLI) does not import TensorFlow, so a command can send
    TensorFlow's start-up output where it chooses (`tfrec_dyn.console`)."""
    if name in __all__:
        import importlib

        return importlib.import_module(f"tfrec_dyn.{name}")
    raise AttributeError(f"module 'tfrec_dyn' has no attribute {name!r}")
