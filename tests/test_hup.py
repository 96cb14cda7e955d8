"""HUP: the Behavior-LSTM cell."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers import BehaviorLSTMCell

B, T = 3, 5


def _inputs(seed=0):
    x = tf.random.stateless_normal([B, T, 6], [seed, 1])
    behavior = tf.random.stateless_normal([B, T, 4], [seed, 2])
    delta = tf.random.stateless_normal([B, T, 2], [seed, 3])
    return x, behavior, delta


def _final_state(cell, inputs):
    return keras.layers.RNN(cell, return_state=True)(inputs)[2]  # the cell state C


def test_registered_config_round_trip_and_gradients():
    cell = BehaviorLSTMCell(8)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    inputs = _inputs()
    outputs = rnn(inputs)
    assert outputs.shape == (B, T, 8)
    assert keras.utils.get_registered_name(BehaviorLSTMCell) == "tfrec_dyn>BehaviorLSTMCell"
    clone = keras.layers.RNN.from_config(rnn.get_config())
    clone(inputs)
    clone.set_weights(rnn.get_weights())
    np.testing.assert_allclose(clone(inputs), outputs, rtol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(rnn(inputs) ** 2)
    grads = tape.gradient(loss, rnn.trainable_weights)
    assert len(grads) == 6 and all(g is not None for g in grads)


def test_save_load_round_trip(tmp_path):
    symbolic = [keras.Input((T, 6)), keras.Input((T, 4)), keras.Input((T, 2))]
    model = keras.Model(symbolic, keras.layers.RNN(BehaviorLSTMCell(8))(tuple(symbolic)))
    inputs = list(_inputs())
    model.save(str(tmp_path / "model"))
    restored = keras.models.load_model(str(tmp_path / "model"))
    np.testing.assert_allclose(restored(inputs), model(inputs), rtol=1e-6)


def test_without_gates_it_is_keras_lstm():
    cell = BehaviorLSTMCell(8, time_gate=False, behavior_gate=False)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    inputs = _inputs()
    ours = rnn(inputs)
    lstm = keras.layers.LSTM(8, return_sequences=True)
    lstm(inputs[0])
    # Ours: [h, x] @ kernel; Keras: x @ kernel + h @ recurrent_kernel; gates i, f, c, o in both.
    lstm.set_weights([cell.kernel.numpy()[8:], cell.kernel.numpy()[:8], cell.bias.numpy()])
    np.testing.assert_allclose(ours, lstm(inputs[0]), rtol=1e-5, atol=1e-6)


def test_one_step_by_hand():
    cell = BehaviorLSTMCell(4)
    x, behavior, delta = (t[:, 0] for t in _inputs(1))
    h0, c0 = tf.random.stateless_normal([B, 4], [2, 1]), tf.random.stateless_normal([B, 4], [2, 2])
    cell.build((x.shape, behavior.shape, delta.shape))
    h, (_, c) = cell((x, behavior, delta), [h0, c0])
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    z = np.concatenate([h0, x], -1) @ cell.kernel.numpy() + cell.bias.numpy()
    i, f, candidate, o = np.split(z, 4, -1)
    time = sigmoid(np.concatenate([x, delta], -1) @ cell.time_kernel.numpy() + cell.time_bias.numpy())
    gate = sigmoid(np.concatenate([x, behavior], -1) @ cell.behavior_kernel.numpy() + cell.behavior_bias.numpy())
    expected_c = sigmoid(f) * c0 + sigmoid(i) * time * gate * np.tanh(candidate)
    np.testing.assert_allclose(c, expected_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, sigmoid(o) * np.tanh(expected_c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate, which", [("behavior_gate", 1), ("time_gate", 2)])
def test_each_gate_responds_to_its_own_input_only(gate, which):
    """Change only the behaviour embedding (or only the interval): the state moves
    with the gate on and stays exactly the same with it off."""
    inputs = _inputs()
    changed = list(inputs)
    changed[which] = changed[which] + 1.0
    on = BehaviorLSTMCell(8)
    rnn = keras.layers.RNN(on, return_state=True)
    assert np.abs(rnn(inputs)[2] - rnn(tuple(changed))[2]).max() > 1e-3
    off = keras.layers.RNN(BehaviorLSTMCell(8, **{gate: False}), return_state=True)
    np.testing.assert_allclose(off(inputs)[2], off(tuple(changed))[2])


def test_time_gate_lets_less_in_where_it_learns_to():
    """The time gate is a function of the interval: with its interval weights set
    to favour short intervals, a long interval admits less new information."""
    cell = BehaviorLSTMCell(4, behavior_gate=False)
    x = tf.ones([1, 1, 3])
    cell.build((x.shape, x.shape, (1, 1, 1)))
    cell.time_kernel.assign(tf.concat([tf.zeros([3, 4]), -tf.ones([1, 4])], 0))  # T = σ(−Δ)
    rnn = keras.layers.RNN(cell, return_state=True)
    short = rnn((x, x, tf.fill([1, 1, 1], 0.1)))[2]
    long = rnn((x, x, tf.fill([1, 1, 1], 5.0)))[2]
    assert np.all(np.abs(long.numpy()) < np.abs(short.numpy()))


def test_bad_units():
    with pytest.raises(ValueError, match="units"):
        BehaviorLSTMCell(0)
