"""HUP's Behavior-LSTM cell (Gu et al., WSDM 2020, "Hierarchical User Profiling", eq. 4)."""

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class BehaviorLSTMCell(keras.layers.Layer):
    """An LSTM cell with a time gate and a behaviour gate on the cell input.

        I = σ(W_I [h, x] + b_I)      F = σ(W_F [h, x] + b_F)      O = σ(W_O [h, x] + b_O)
        T = σ(W_T [x, Δ] + b_T)      (time gate: the interval to the next behaviour)
        A = σ(W_A [x, a] + b_A)      (behaviour gate: behaviour type, or dwell time)
        C̃ = tanh(W_C [h, x] + b_C)
        C = F ⊙ C_prev + I ⊙ T ⊙ A ⊙ C̃        h = O ⊙ tanh(C)

    With `time_gate=False` T is 1 and with `behavior_gate=False` A is 1:
    both off is a plain LSTM (the paper's HUP-LSTM), time gate only is its
    HUP-TLSTM (Time-LSTM's gate).

    Use it with `keras.layers.RNN`; the input at each step is the tuple
    (x [B, d_x], a [B, d_a], Δ [B, d_Δ]) – the item (or behaviour) embedding,
    the embedding of the behaviour type or dwell time, and the embedding of the
    time interval – so the RNN input is a tuple of [B, T, ·] tensors.

    Args:
      units: width of the hidden and cell states.
      time_gate, behavior_gate: switch the two gates (see above).

    Example:
    >>> rnn = keras.layers.RNN(BehaviorLSTMCell(8), return_sequences=True)
    >>> rnn((tf.ones([2, 5, 4]), tf.ones([2, 5, 3]), tf.ones([2, 5, 2]))).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, units, time_gate=True, behavior_gate=True, **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"`units` must be positive, got units={units}")
        self.units = int(units)
        self.time_gate = bool(time_gate)
        self.behavior_gate = bool(behavior_gate)

    @property
    def state_size(self):
        return [self.units, self.units]

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        x_shape, a_shape, delta_shape = input_shape
        x_dim = int(x_shape[-1])
        # I, F, C̃, O from [h, x] in one matrix, as keras.layers.LSTMCell does.
        self.kernel = self.add_weight("kernel", shape=(x_dim + self.units, 4 * self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight("bias", shape=(4 * self.units,), initializer=self._lstm_bias)
        if self.time_gate:
            self.time_kernel = self.add_weight("time_kernel", shape=(x_dim + int(delta_shape[-1]), self.units),
                                               initializer="glorot_uniform")
            self.time_bias = self.add_weight("time_bias", shape=(self.units,), initializer="zeros")
        if self.behavior_gate:
            self.behavior_kernel = self.add_weight("behavior_kernel", shape=(x_dim + int(a_shape[-1]), self.units),
                                                   initializer="glorot_uniform")
            self.behavior_bias = self.add_weight("behavior_bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def _lstm_bias(self, shape, dtype=None):
        # Forget-gate bias 1 (Jozefowicz et al., 2015; Keras' unit_forget_bias).
        return tf.concat([tf.zeros([self.units]), tf.ones([self.units]), tf.zeros([2 * self.units])], 0)

    def call(self, inputs, states, training=None):
        x, behavior, delta = inputs
        h, c = states
        z = tf.matmul(tf.concat([h, x], -1), self.kernel) + self.bias
        input_gate, forget_gate, candidate, output_gate = tf.split(z, 4, axis=-1)
        update = tf.sigmoid(input_gate) * tf.tanh(candidate)
        if self.time_gate:
            update *= tf.sigmoid(tf.matmul(tf.concat([x, delta], -1), self.time_kernel) + self.time_bias)
        if self.behavior_gate:
            update *= tf.sigmoid(tf.matmul(tf.concat([x, behavior], -1), self.behavior_kernel) + self.behavior_bias)
        c = tf.sigmoid(forget_gate) * c + update
        h = tf.sigmoid(output_gate) * tf.tanh(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "time_gate": self.time_gate, "behavior_gate": self.behavior_gate})
        return config
