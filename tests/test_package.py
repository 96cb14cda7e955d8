"""`import tfrec_dyn` selects Keras 2 in a fresh interpreter and refuses Keras 3 clearly."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)


def test_fresh_interpreter_gets_keras_2():
    out = _python("import tfrec_dyn, tensorflow as tf; print(tf.keras.__name__)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("tf_keras")


def test_tensorflow_imported_with_keras_3_gives_a_clear_error():
    out = _python("import tensorflow as tf; tf.keras.layers; import tfrec_dyn")
    assert out.returncode != 0
    assert "ImportError: tfrec_dyn needs Keras 2" in out.stderr
    assert "TF_USE_LEGACY_KERAS=1" in out.stderr


def test_public_layers_import():
    out = _python("import tfrec_dyn.layers as L; print(sorted(n for n in dir(L) if not n.startswith('_')))")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CausalTransformerBlock" in out.stdout
