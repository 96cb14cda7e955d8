"""One harness for every layer (keras-hub `run_layer_test` style): config round
trip, registration, output shape, gradients to every weight, and a SavedModel
save/load that must give identical outputs."""

import numpy as np
import tensorflow as tf
import tf_keras as keras


def _flat(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def run_layer_test(layer_cls, init_kwargs, args, expected_shape, tmp_path, has_weights=True):
    """`args`: the tensors the layer is called with, positionally.  A layer that
    returns a tuple gives a list of `expected_shape`s; every floating output
    counts towards the gradient check.  A layer without weights
    (`has_weights=False`) must pass gradients to its floating inputs instead."""
    layer = layer_cls(**init_kwargs)
    outputs = layer(*args)
    shapes = expected_shape if isinstance(outputs, (tuple, list)) else [expected_shape]
    assert [tuple(o.shape) for o in _flat(outputs)] == [tuple(s) for s in shapes]

    # Registered under the package name, and the config round trip rebuilds
    # a layer that gives the same output with the same weights.
    assert keras.utils.get_registered_name(layer_cls) == f"tfrec_dyn>{layer_cls.__name__}"
    clone = layer_cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(*args)
    clone.set_weights(layer.get_weights())
    for got, want in zip(_flat(clone(*args)), _flat(outputs)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    # Gradients reach every trainable weight (or, without weights, the floating inputs).
    inputs = [t for t in args if t.dtype.is_floating]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.add_n([tf.reduce_sum(tf.square(o)) for o in _flat(layer(*args, training=True)) if o.dtype.is_floating])
    assert bool(layer.trainable_weights) == has_weights, f"trainable weights: {layer.trainable_weights}"
    sources = layer.trainable_weights if has_weights else inputs
    for source, grad in zip(sources, tape.gradient(loss, sources)):
        assert grad is not None, f"no gradient reaches {source.name}"

    # SavedModel round trip inside a functional model.
    symbolic = [keras.Input(shape=t.shape[1:], dtype=t.dtype) for t in args]
    model = keras.Model(symbolic, layer(*symbolic))
    path = str(tmp_path / layer_cls.__name__)
    model.save(path)
    restored = keras.models.load_model(path)
    for got, want in zip(_flat(restored(list(args))), _flat(model(list(args)))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    return layer, outputs
