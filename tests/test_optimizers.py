"""FusedAdam: Keras' Adam in one kernel a variable; LazyAdam: Adam on the rows a
sparse gradient touches, nothing on the others."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.training import TrainConfig
from tfrec_dyn.training.optimizers import FusedAdam, LazyAdam, make_optimizer


def _run(optimizer, gradients, shape=(6, 3)):
    variable = tf.Variable(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 10)
    for gradient in gradients:
        optimizer.apply_gradients([(gradient, variable)])
    return variable.numpy()


def test_rows_in_every_step_follow_adam_and_the_others_keep_still_once_missed():
    rng = np.random.default_rng(0)
    every_row = tf.IndexedSlices(tf.constant(rng.normal(size=(6, 3)), tf.float32), tf.range(6))
    rows = tf.constant([1, 4, 1])  # a repeated row: its gradients add up, as in Adam
    steps = [tf.IndexedSlices(tf.constant(rng.normal(size=(3, 3)), tf.float32), rows) for _ in range(4)]
    lazy, adam = _run(LazyAdam(0.01), [every_row] + steps), _run(make_optimizer("adam", 0.01), [every_row] + steps)
    np.testing.assert_allclose(lazy[[1, 4]], adam[[1, 4]], rtol=1e-5, atol=1e-6)
    after_first = _run(LazyAdam(0.01), [every_row])
    np.testing.assert_array_equal(lazy[[0, 2, 3, 5]], after_first[[0, 2, 3, 5]])
    assert not np.allclose(adam[[0, 2, 3, 5]], after_first[[0, 2, 3, 5]])  # Adam's momentum moves them on


def test_a_row_missed_by_a_step_keeps_its_moments():
    first = tf.IndexedSlices(tf.ones([2, 3]), tf.constant([0, 2]))
    second = tf.IndexedSlices(tf.ones([1, 3]), tf.constant([0]))
    optimizer = LazyAdam(0.01)
    _run(optimizer, [first, second])
    momentum = optimizer._momentums[0].numpy()
    np.testing.assert_allclose(momentum[2], 0.1, rtol=1e-6)        # one update, not decayed in the step that missed it
    np.testing.assert_allclose(momentum[0], 0.19, rtol=1e-6)       # 0.9 * 0.1 + 0.1
    np.testing.assert_array_equal(momentum[[1, 3, 4, 5]], 0)


def test_dense_gradients_are_adams():
    steps = [tf.constant(np.full((6, 3), g, np.float32)) for g in (0.5, -1.0, 2.0)]
    np.testing.assert_array_equal(_run(LazyAdam(0.01), steps), _run(make_optimizer("adam", 0.01), steps))


def test_fused_adam_is_keras_adam():
    rng = np.random.default_rng(0)
    dense = [tf.constant(rng.normal(size=(6, 3)), tf.float32) for _ in range(3)]
    sparse = [tf.IndexedSlices(tf.constant(rng.normal(size=(3, 3)), tf.float32), tf.constant([1, 4, 1]))
              for _ in range(3)]  # a repeated row: its gradients add up
    for steps in (dense, sparse, dense + sparse):
        np.testing.assert_allclose(_run(FusedAdam(0.01), steps), _run(keras.optimizers.Adam(0.01), steps),
                                   rtol=1e-5, atol=1e-6)
    assert isinstance(make_optimizer("adam", 0.01), FusedAdam)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(model="sasrec", data="x", optimizer="sgd")
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(amsgrad=True)
