"""AdaSplit's Attention-GRU (Shao et al., 2022, "Adaptive Behaviour Allocation", eq. 9-10)."""

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class AttentionGRU(keras.layers.Layer):
    """One GRU step whose update and reset gates are scalars (attention gates).

        z = σ(W_z v + U_z p)              (1 value per row: how much of p to keep)
        s = σ(W_r v + U_r p)              (1 value per row)
        h = tanh(W v + U (s · p))
        p' = z · p + (1 − z) · h

    The scalar gates make each step a soft "how much does this item change the
    sub-sequence" decision, which is what the paper calls attention.

    Call: `gru(state, inputs)` with the sub-sequence representation p [..., d]
    and the item v [..., d] (same width); returns p' [..., d].

    W, W_z, W_r are Glorot-uniform, the U's orthogonal (Keras' GRU defaults).

    Example:
    >>> gru = AttentionGRU()
    >>> gru(tf.zeros([2, 8]), tf.ones([2, 8])).shape
    TensorShape([2, 8])
    """

    def build(self, input_shape):
        d = int(input_shape[-1])

        def dense(units, name, **kwargs):
            return keras.layers.Dense(units, name=name, dtype=self.dtype_policy, **kwargs)

        # Input terms carry the biases; state terms have none (one bias per gate).
        self.update_input = dense(1, "update_input")      # W_z
        self.update_state = dense(1, "update_state", use_bias=False, kernel_initializer="orthogonal")  # U_z
        self.reset_input = dense(1, "reset_input")        # W_r
        self.reset_state = dense(1, "reset_state", use_bias=False, kernel_initializer="orthogonal")   # U_r
        self.candidate_input = dense(d, "candidate_input")  # W
        self.candidate_state = dense(d, "candidate_state", use_bias=False, kernel_initializer="orthogonal")  # U
        for layer in (self.update_input, self.update_state, self.reset_input, self.reset_state,
                      self.candidate_input, self.candidate_state):
            layer.build(input_shape)
        super().build(input_shape)

    def call(self, state, inputs):
        state = tf.cast(state, self.compute_dtype)
        inputs = tf.cast(inputs, self.compute_dtype)
        update = tf.sigmoid(self.update_input(inputs) + self.update_state(state))
        reset = tf.sigmoid(self.reset_input(inputs) + self.reset_state(state))
        candidate = tf.tanh(self.candidate_input(inputs) + self.candidate_state(reset * state))
        return update * state + (1.0 - update) * candidate
