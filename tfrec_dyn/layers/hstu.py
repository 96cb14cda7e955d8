"""HSTU: the hierarchical sequential transduction unit (Zhai et al., "Actions
Speak Louder than Words", ICML 2024, sec. 3).

One block, for input X [B, L, d]:

    U, V, Q, K = split(SiLU(f1(LayerNorm(X))))                     (eq. 1)
    A = SiLU(Q Kᵀ + rab^{p,t}) / n, masked to real items j <= i     (eq. 2)
    Y = f2(Dropout(LayerNorm(A V) ⊙ U)) + X                         (eq. 3)

Pointwise SiLU attention instead of a softmax: the weights are not
normalised over the keys, so the strength of a user's engagement with
many related items is kept (the paper's argument).  The paper leaves n
open: the authors' code divides by the window length L (`attention_scale=
"window"`, the default); "items" divides each query's row by the number of
real items it attends to (a TensorFlow port, NetEase's HSTU-Tensorflow,
divides by the user's real length and reports it better on ML-1M; on
ML-100K it did not help: docs/results.md, the HSTU sweep).  `rab^{p,t}` is a learned bias per
relative position and, when the log has timestamps, per bucket of the time
gap between two events (`RelativeAttentionBias`).
"""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import attention_mask, padding_mask
from tfrec_dyn.layers.normalization import LastAxisLayerNormalization

ATTENTION_SCALES = ("window", "items")


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class RelativeAttentionBias(keras.layers.Layer):
    """HSTU's rab^{p,t}: a bias [B, L, L] added to the attention scores of
    query i and key j, learned per relative position i - j (0..max_len-1:
    attention is causal) plus, given timestamps, per bucket of |t_i - t_j|.

    Time buckets follow the authors' code: floor(ln(max(|Δt|, 1)) / 0.301),
    at most `num_time_buckets`.  A negative timestamp is unknown (a served
    request that leaves them out): pairs with one get no time bias.  The gap is taken to the query's own event
    (the authors take it to the *next* event's time, which a server knows as
    "now" but a training window does not for its last position); a
    constructor choice would not change what is learnable here.

    Args:
      max_len: the longest window.
      num_time_buckets: time-gap buckets (0: no time bias, timestamps ignored).
      time_bucket_width: the bucket width in ln-seconds.

    Call: `bias(item_ids, timestamps=None)` with item_ids [B, L] (for the
    window length) and timestamps [B, L] in seconds; returns [B or 1, L, L].

    Example:
    >>> bias = RelativeAttentionBias(max_len=4)
    >>> bias(tf.constant([[0, 5, 6]]), tf.constant([[0.0, 10.0, 3600.0]])).shape
    TensorShape([1, 3, 3])
    """

    def __init__(self, max_len, num_time_buckets=128, time_bucket_width=0.301, **kwargs):
        super().__init__(**kwargs)
        if int(max_len) <= 0:
            raise ValueError(f"`max_len` must be positive, got {max_len}")
        if int(num_time_buckets) < 0 or float(time_bucket_width) <= 0:
            raise ValueError("`num_time_buckets` must be 0 or more and `time_bucket_width` positive, got "
                             f"{num_time_buckets}, {time_bucket_width}")
        self.max_len = int(max_len)
        self.num_time_buckets = int(num_time_buckets)
        self.time_bucket_width = float(time_bucket_width)

    def build(self, input_shape):
        self.position_bias = self.add_weight(name="position_bias", shape=(self.max_len,), initializer="zeros")
        if self.num_time_buckets:
            self.time_bias = self.add_weight(name="time_bias", shape=(self.num_time_buckets + 1,),
                                             initializer="zeros")
        super().build(input_shape)

    def call(self, item_ids, timestamps=None):
        length = tf.shape(item_ids)[1]
        positions = tf.range(length)
        distance = tf.clip_by_value(positions[:, tf.newaxis] - positions[tf.newaxis, :], 0, self.max_len - 1)
        bias = tf.gather(self.position_bias, distance)[tf.newaxis]  # [1, L, L]
        if timestamps is None or not self.num_time_buckets:
            return bias
        timestamps = tf.cast(timestamps, tf.float32)
        gap = tf.abs(timestamps[:, :, tf.newaxis] - timestamps[:, tf.newaxis, :])
        buckets = tf.cast(tf.math.log(tf.maximum(gap, 1.0)) / self.time_bucket_width, tf.int32)
        known = (timestamps >= 0)[:, :, tf.newaxis] & (timestamps >= 0)[:, tf.newaxis, :]
        time_bias = tf.gather(self.time_bias, tf.clip_by_value(buckets, 0, self.num_time_buckets))
        return bias + tf.where(known, time_bias, tf.zeros_like(time_bias))

    def get_config(self):
        config = super().get_config()
        config.update({"max_len": self.max_len, "num_time_buckets": self.num_time_buckets,
                       "time_bucket_width": self.time_bucket_width})
        return config


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class HSTUBlock(keras.layers.Layer):
    """One HSTU layer (module docstring): pointwise aggregated SiLU attention
    with a relative position / time bias, gated by U, with a residual.

    Args:
      max_len: the longest window (the relative bias's size).
      num_heads: heads h.
      attention_dim: width of each head's queries and keys (default: d / h).
      value_dim: width of each head's values and gates (default: d / h).
      dropout: on the gated output (the authors' `linear_dropout_rate`).
      attention_dropout: on the attention weights (the authors'
        `attn_dropout_rate`, 0 in their ML-1M settings); None: `dropout`.
      attention_scale: the n that divides the attention weights: "window"
        (the window length, as the authors' code) or "items" (the real items
        each query attends to).
      num_time_buckets / time_bucket_width: `RelativeAttentionBias`'s.
      layer_norm_epsilon: of both layer norms.

    Call: `block(x, item_ids, timestamps=None, training=...)`, x [B, L, d],
    item_ids [B, L] (padding mask and causality), timestamps [B, L] seconds
    (None: position bias only).  Output [B, L, d], zero at padding.

    Example:
    >>> block = HSTUBlock(max_len=3, num_heads=2)
    >>> block(tf.ones([1, 3, 4]), tf.constant([[0, 5, 6]])).shape
    TensorShape([1, 3, 4])
    """

    def __init__(self, max_len, num_heads=1, attention_dim=None, value_dim=None, dropout=0.0,
                 attention_dropout=None, attention_scale="window", num_time_buckets=128, time_bucket_width=0.301,
                 layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) <= 0:
            raise ValueError(f"`num_heads` must be positive, got num_heads={num_heads}")
        if attention_scale not in ATTENTION_SCALES:
            raise ValueError(f"`attention_scale` must be one of {ATTENTION_SCALES}, got {attention_scale!r}")
        self.max_len = int(max_len)
        self.num_heads = int(num_heads)
        self.attention_dim = None if attention_dim is None else int(attention_dim)
        self.value_dim = None if value_dim is None else int(value_dim)
        self.dropout = float(dropout)
        self.attention_dropout = None if attention_dropout is None else float(attention_dropout)
        self.attention_scale = attention_scale
        self.num_time_buckets = int(num_time_buckets)
        self.time_bucket_width = float(time_bucket_width)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        d = int(input_shape[-1])
        if (self.attention_dim is None or self.value_dim is None) and d % self.num_heads:
            raise ValueError(f"input width {d} is not divisible by num_heads={self.num_heads}")
        self._qk = self.attention_dim or d // self.num_heads
        self._v = self.value_dim or d // self.num_heads
        h = self.num_heads
        policy = self.dtype_policy
        self.input_norm = LastAxisLayerNormalization(epsilon=self.layer_norm_epsilon, name="input_norm", dtype=policy)
        self.uvqk = keras.layers.Dense(h * (2 * self._v + 2 * self._qk), activation="silu", name="uvqk", dtype=policy)
        self.output_norm = LastAxisLayerNormalization(epsilon=self.layer_norm_epsilon, name="output_norm",
                                                      dtype=policy)
        self.output_dense = keras.layers.Dense(d, name="output", dtype=policy)
        self.relative_bias = RelativeAttentionBias(self.max_len, self.num_time_buckets, self.time_bucket_width,
                                                   name="relative_bias", dtype=policy)
        self.dropout_layer = ByteDropout(self.dropout, name="dropout", dtype=policy)
        self.attention_dropout_layer = ByteDropout(
            self.dropout if self.attention_dropout is None else self.attention_dropout, name="attention_dropout",
            dtype=policy)
        self.input_norm.build(input_shape)
        self.uvqk.build(input_shape)
        self.output_norm.build(tuple(input_shape[:-1]) + (h * self._v,))
        self.output_dense.build(tuple(input_shape[:-1]) + (h * self._v,))
        self.relative_bias.build(input_shape)
        super().build(input_shape)

    def call(self, x, item_ids, timestamps=None, training=None):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        h, qk, v = self.num_heads, self._qk, self._v
        u, values, queries, keys = tf.split(self.uvqk(self.input_norm(x)), [h * v, h * v, h * qk, h * qk], -1)

        def heads(t, width):  # [B, L, h * width] -> [B, h, L, width]
            return tf.transpose(tf.reshape(t, [batch, length, h, width]), [0, 2, 1, 3])

        scores = tf.matmul(heads(queries, qk), heads(keys, qk), transpose_b=True)  # [B, h, L, L]
        scores += tf.cast(self.relative_bias(item_ids, timestamps), scores.dtype)[:, tf.newaxis]
        mask = tf.cast(attention_mask(item_ids), scores.dtype)[:, tf.newaxis]
        if self.attention_scale == "items":
            scale = tf.maximum(tf.reduce_sum(mask, -1, keepdims=True), 1.0)
        else:
            scale = tf.cast(length, scores.dtype)
        weights = self.attention_dropout_layer(tf.nn.silu(scores) * mask / scale, training=training)
        attended = tf.reshape(tf.transpose(tf.matmul(weights, heads(values, v)), [0, 2, 1, 3]), [batch, length, h * v])
        y = self.output_dense(self.dropout_layer(self.output_norm(attended) * u, training=training))
        return (x + y) * tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]

    def get_config(self):
        config = super().get_config()
        config.update({"max_len": self.max_len, "num_heads": self.num_heads, "attention_dim": self.attention_dim,
                       "value_dim": self.value_dim, "dropout": self.dropout,
                       "attention_dropout": self.attention_dropout, "attention_scale": self.attention_scale,
                       "num_time_buckets": self.num_time_buckets, "time_bucket_width": self.time_bucket_width,
                       "layer_norm_epsilon": self.layer_norm_epsilon})
        return config
