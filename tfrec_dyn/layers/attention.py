"""Keras multi-head attention computed with matmuls (same weights, faster on CPU)."""

import math

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.dropout import ByteDropout


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class MatmulAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with its products written as matmuls.

    Keras computes the projections and the two attention products with
    `einsum`; on CPU (oneDNN) those are the largest share of a SASRec step, and
    the same products through `tf.matmul` on reshaped tensors cost less
    (docs/performance.md). The weights, their names and shapes, and the
    arguments are Keras' own, so a checkpoint of either layer loads into the
    other and gives the same outputs. The dropout on the attention
    probabilities is `ByteDropout` (its rate rounded to a multiple of 1/256).

    What the library needs is supported, nothing more: inputs [B, T, d],
    attention over the sequence axis (`attention_axes=None`), an optional boolean
    `attention_mask` [B, T, S], dense inputs; `use_causal_mask` and Keras
    masks are not (pass the mask, e.g. `tfrec_dyn.layers.attention_mask`).

    Example:
    >>> attention = MatmulAttention(num_heads=2, key_dim=2)
    >>> x = tf.ones([1, 3, 4])
    >>> attention(x, x, attention_mask=tf.ones([1, 3, 3], tf.bool)).shape
    TensorShape([1, 3, 4])
    """

    def __init__(self, num_heads, key_dim, **kwargs):
        super().__init__(num_heads, key_dim, **kwargs)
        # Keras records the default, the sequence axis of [B, T, d] inputs, as (1,) once built.
        if self._attention_axes is not None and tuple(self._attention_axes) != (1,):
            raise ValueError("MatmulAttention attends over the sequence axis of [B, T, d] inputs only: "
                             f"leave `attention_axes` None, got {self._attention_axes}")

    def _build_from_signature(self, query, value, key=None):
        super()._build_from_signature(query, value, key)
        # Keras builds its projections at their first call; their kernels are read directly here.
        self._query_dense.build(self._query_shape)
        self._key_dense.build(self._key_shape)
        self._value_dense.build(self._value_shape)
        self._output_dense.build(self._query_shape[:-1].concatenate([self._num_heads, self._value_dim]))

    def _build_attention(self, rank):
        super()._build_attention(rank)
        self._dropout_layer = ByteDropout(self._dropout, dtype=self._dtype_policy)

    def _project(self, x, dense):
        """x [B, T, d] through an EinsumDense [d, N, H] -> [B, N, T, H] (or [B, T, H] for one head)."""
        kernel = tf.cast(dense.kernel, x.dtype)
        flat = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), tf.reshape(kernel, [kernel.shape[0], -1]))
        if dense.bias is not None:
            flat += tf.reshape(tf.cast(dense.bias, x.dtype), [-1])
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        if self._num_heads == 1:
            return tf.reshape(flat, [batch, length, kernel.shape[-1]])
        return tf.transpose(tf.reshape(flat, [batch, length, self._num_heads, kernel.shape[-1]]), [0, 2, 1, 3])

    def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False, training=None,
             use_causal_mask=False):
        if use_causal_mask:
            raise ValueError("MatmulAttention takes its mask as `attention_mask`, not `use_causal_mask`")
        if not self._built_from_signature:
            self._build_from_signature(query=query, value=value, key=key)
        key = value if key is None else key
        q = self._project(query, self._query_dense) * tf.cast(1.0 / math.sqrt(float(self._key_dim)), query.dtype)
        k = self._project(key, self._key_dense)
        v = self._project(value, self._value_dense)
        scores = tf.matmul(q, k, transpose_b=True)  # [B, (N,) T, S]
        if attention_mask is not None:
            mask = tf.cast(attention_mask, tf.bool)
            if self._num_heads > 1:
                mask = mask[:, tf.newaxis]
            # Keras' softmax adds -1e9 where masked (float16's lowest value in float16): the same
            # constant, so that a row with no key is uniform as there.
            masked = tf.float16.min if scores.dtype == tf.float16 else -1e9
            scores = tf.where(mask, scores, tf.cast(masked, scores.dtype))
        probabilities = tf.nn.softmax(scores)
        context = tf.matmul(self._dropout_layer(probabilities, training=training), v)  # [B, (N,) T, H]
        if self._num_heads > 1:
            context = tf.transpose(context, [0, 2, 1, 3])
        batch, length = tf.shape(query)[0], tf.shape(query)[1]
        kernel = tf.cast(self._output_dense.kernel, context.dtype)  # [N, H, d_out]
        output = tf.matmul(tf.reshape(context, [-1, self._num_heads * self._value_dim]),
                           tf.reshape(kernel, [-1, kernel.shape[-1]]))
        if self._output_dense.bias is not None:
            output += tf.cast(self._output_dense.bias, output.dtype)
        output = tf.reshape(output, [batch, length, kernel.shape[-1]])
        if return_attention_scores:
            return output, probabilities if self._num_heads > 1 else probabilities[:, tf.newaxis]
        return output
