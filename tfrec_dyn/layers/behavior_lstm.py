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

    Only W h depends on the previous step: the x part of the four gates, T and
    A can be computed for whole sequences before the time loop.  `project`
    does that, and a cell given `input_dims` takes its output (gate inputs
    [B, T, 4·units], T ⊙ A [B, T, units]) as the RNN input, so each step is
    one [B, units] × [units, 4·units] matmul and the element-wise gates.  At
    batch 1 the loop's op count is the cost: this takes about 40 % off HUP's
    served forward pass.

    Args:
      units: width of the hidden and cell states.
      time_gate, behavior_gate: switch the two gates (see above).
      input_dims: (d_x, d_a, d_Δ), the widths of x, a and Δ: with them the
        step input is `project`'s output instead of (x, a, Δ) (whose widths
        the weights need, and the projected inputs do not tell).

    Example:
    >>> rnn = keras.layers.RNN(BehaviorLSTMCell(8), return_sequences=True)
    >>> rnn((tf.ones([2, 5, 4]), tf.ones([2, 5, 3]), tf.ones([2, 5, 2]))).shape
    TensorShape([2, 5, 8])
    >>> cell = BehaviorLSTMCell(8, input_dims=(4, 3, 2))
    >>> keras.layers.RNN(cell)(cell.project(tf.ones([2, 5, 4]), tf.ones([2, 5, 3]), tf.ones([2, 5, 2]))).shape
    TensorShape([2, 8])
    """

    def __init__(self, units, time_gate=True, behavior_gate=True, input_dims=None, **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"`units` must be positive, got units={units}")
        self.units = int(units)
        self.time_gate = bool(time_gate)
        self.behavior_gate = bool(behavior_gate)
        self.input_dims = None if input_dims is None else tuple(int(d) for d in input_dims)
        if self.input_dims is not None and (len(self.input_dims) != 3 or min(self.input_dims) <= 0):
            raise ValueError(f"`input_dims` must be three positive widths (x, a, Δ), got {input_dims}")

    @property
    def state_size(self):
        return [self.units, self.units]

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        # Projected step inputs do not tell the widths of x, a and Δ: `input_dims` does.
        x_dim, a_dim, delta_dim = self.input_dims or (int(shape[-1]) for shape in input_shape)
        # I, F, C̃, O from [h, x] in one matrix, as keras.layers.LSTMCell does.
        self.kernel = self.add_weight("kernel", shape=(x_dim + self.units, 4 * self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight("bias", shape=(4 * self.units,), initializer=self._lstm_bias)
        if self.time_gate:
            self.time_kernel = self.add_weight("time_kernel", shape=(x_dim + delta_dim, self.units),
                                               initializer="glorot_uniform")
            self.time_bias = self.add_weight("time_bias", shape=(self.units,), initializer="zeros")
        if self.behavior_gate:
            self.behavior_kernel = self.add_weight("behavior_kernel", shape=(x_dim + a_dim, self.units),
                                                   initializer="glorot_uniform")
            self.behavior_bias = self.add_weight("behavior_bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def _lstm_bias(self, shape, dtype=None):
        # Forget-gate bias 1 (Jozefowicz et al., 2015; Keras' unit_forget_bias).
        return tf.concat([tf.zeros([self.units]), tf.ones([self.units]), tf.zeros([2 * self.units])], 0)

    def project(self, x, behavior, delta):
        """(W_{I,F,C,O} x + b [..., 4·units], T ⊙ A [..., units]) of inputs of any
        leading shape: [B, d] one step, [B, T, d] a whole sequence."""
        widths = tuple(int(v.shape[-1]) for v in (x, behavior, delta))
        if self.input_dims and widths != self.input_dims:
            raise ValueError(f"{self.name}: inputs of widths {widths}, built for input_dims {self.input_dims}")
        if not self.built:
            self.build((x.shape, behavior.shape, delta.shape))
        dtype = x.dtype  # read outside the layer's call, where Keras would cast the weights itself

        def dense(v, kernel, bias):
            flat = tf.reshape(v, [-1, v.shape[-1]])  # one matmul for every position
            out = tf.matmul(flat, tf.cast(kernel, dtype)) + tf.cast(bias, dtype)
            return tf.reshape(out, tf.concat([tf.shape(v)[:-1], tf.shape(out)[-1:]], 0))

        gates = dense(x, self.kernel[self.units:], self.bias)
        scale = tf.ones_like(gates[..., :self.units])
        if self.time_gate:
            scale *= tf.sigmoid(dense(tf.concat([x, delta], -1), self.time_kernel, self.time_bias))
        if self.behavior_gate:
            scale *= tf.sigmoid(dense(tf.concat([x, behavior], -1), self.behavior_kernel, self.behavior_bias))
        return gates, scale

    def call(self, inputs, states, training=None):
        gates, scale = inputs if self.input_dims else self.project(*inputs)
        h, c = states
        z = gates + tf.matmul(h, self.kernel[:self.units])
        input_gate, forget_gate, candidate, output_gate = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(forget_gate) * c + tf.sigmoid(input_gate) * scale * tf.tanh(candidate)
        h = tf.sigmoid(output_gate) * tf.tanh(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "time_gate": self.time_gate, "behavior_gate": self.behavior_gate,
                       "input_dims": self.input_dims})
        return config
