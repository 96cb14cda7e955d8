"""The pieces of HUP's pyramid RNN (Gu et al., WSDM 2020, sec. 4.2 and 4.4):
a level that steps only at segment ends, and its prefix attention."""

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class SegmentCell(keras.layers.Layer):
    """Wraps an RNN cell so that its state advances only at the end of a segment.

    The item level of HUP's pyramid updates "only after a user has transferred
    her focus from one item to another", the category level only when she
    moves to another category. Over micro-behaviours, a segment is a run of
    consecutive behaviours on one item (or category). At every step the
    wrapped cell is applied to the state *committed at the last segment end*,
    and that new state is committed only where the step ends a segment:

        out_t, s' = cell(x_t, committed)        committed ← s' if end_t

    so `out_t` is exactly what the level outputs for the behaviours up to t
    if the user stopped there (the current, unfinished run counted as a
    segment). One pass over a sequence thus gives every prefix's output, which
    is how the model trains on every position at once, as SASRec does.

    Inputs per step: `(cell_inputs, end)`, with `end` [B, 1] in {0, 1}; use
    it with `keras.layers.RNN`.

    Args:
      cell: the wrapped cell (e.g. `BehaviorLSTMCell`), its config or its
        registered serialisation.

    Example:
    >>> from tfrec_dyn.layers import BehaviorLSTMCell
    >>> rnn = keras.layers.RNN(SegmentCell(BehaviorLSTMCell(8)), return_sequences=True)
    >>> x = (tf.ones([2, 5, 4]), tf.ones([2, 5, 3]), tf.ones([2, 5, 2]))
    >>> rnn((x, tf.constant([[[0.], [1.], [0.], [0.], [1.]]] * 2))).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        if isinstance(cell, dict):
            cell = keras.layers.deserialize(cell)
        self.cell = cell

    @property
    def state_size(self):
        return self.cell.state_size

    @property
    def output_size(self):
        return self.cell.output_size

    def build(self, input_shape):
        cell_shape, _ = input_shape
        if not self.cell.built:
            self.cell.build(cell_shape)
        super().build(input_shape)

    def call(self, inputs, states, training=None):
        cell_inputs, end = inputs
        output, new_states = self.cell(cell_inputs, states, training=training)
        end = tf.cast(end, tf.bool)
        committed = [tf.where(end, new, old) for new, old in zip(new_states, states)]
        return output, committed

    def get_config(self):
        config = super().get_config()
        config["cell"] = keras.layers.serialize(self.cell)
        return config


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class PrefixAttention(keras.layers.Layer):
    """HUP's attention over one level's outputs (eq. 5), for every prefix at once.

    For the prefix ending at step t, the keys are the level's outputs at the
    segment ends before t and the output at t itself (the current segment):

        e_{t,i} = f(y_i, y_t, a_i),  α_t = softmax_i(e_{t,·}),  s_t = Σ_i α_{t,i} y_i

    with f the paper's two-layer feed-forward alignment model, here
    w2ᵀ tanh(W1 [y_i; y_t; a_i] + b1) (+ b2, which cancels in the softmax,
    so it is left out), and a_i the attention signal: the behaviour type at
    the micro level, the dwell time at the item and category levels.

    Call: `attention(outputs [B, T, d] or (outputs, signal [B, T, d_a]), ends
    [B, T], valid [B, T])`; returns `(contexts [B, T, d], weights [B, T, T])`
    (row t: the weights of the prefix ending at t; rows of padding are 0).

    Args:
      units: hidden width of the alignment model.

    Example:
    >>> attention = PrefixAttention(16)
    >>> y, valid = tf.random.normal([2, 4, 8]), tf.constant([[0., 1., 1., 1.]] * 2)
    >>> s, alpha = attention(y, ends=valid, valid=valid)
    >>> s.shape, round(float(tf.reduce_sum(alpha[0, 3])), 6)
    (TensorShape([2, 4, 8]), 1.0)
    """

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"`units` must be positive, got units={units}")
        self.units = int(units)

    def build(self, input_shape):
        with_signal = isinstance(input_shape, (list, tuple)) and not isinstance(input_shape[0], (int, type(None)))
        output_shape, signal_shape = input_shape if with_signal else (input_shape, None)
        d = int(output_shape[-1])
        self.key_weights = self.add_weight("key_weights", shape=(d, self.units), initializer="glorot_uniform")
        self.query_weights = self.add_weight("query_weights", shape=(d, self.units), initializer="glorot_uniform")
        self.hidden_bias = self.add_weight("hidden_bias", shape=(self.units,), initializer="zeros")
        self.score_weights = self.add_weight("score_weights", shape=(self.units,), initializer="glorot_uniform")
        self.signal_weights = None if signal_shape is None else self.add_weight(
            "signal_weights", shape=(int(signal_shape[-1]), self.units), initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, inputs, ends, valid):
        outputs, signal = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        outputs = tf.cast(outputs, self.compute_dtype)
        # W1 [y_i; y_t; a_i] splits into a key term, a query term and a signal
        # term: computed apart and broadcast to [B, T(query), T(key), units].
        keys = tf.matmul(outputs, self.key_weights)
        if signal is not None:
            keys += tf.matmul(tf.cast(signal, self.compute_dtype), self.signal_weights)
        queries = tf.matmul(outputs, self.query_weights)
        hidden = tf.tanh(queries[:, :, tf.newaxis] + keys[:, tf.newaxis] + self.hidden_bias)
        scores = tf.cast(tf.einsum("bqkh,h->bqk", hidden, self.score_weights), tf.float32)
        length = tf.shape(outputs)[1]
        earlier = tf.linalg.band_part(tf.ones([length, length]), -1, 0) - tf.eye(length)  # key i < query t
        ends = tf.cast(ends, tf.float32) * tf.cast(valid, tf.float32)
        allowed = (earlier[tf.newaxis] * ends[:, tf.newaxis] + tf.eye(length)[tf.newaxis]) > 0
        weights = tf.nn.softmax(tf.where(allowed, scores, -1e9), axis=-1)
        weights *= tf.cast(valid, tf.float32)[..., tf.newaxis]
        contexts = tf.einsum("bqk,bkd->bqd", tf.cast(weights, outputs.dtype), outputs)
        return contexts, weights

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config
