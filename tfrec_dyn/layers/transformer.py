"""Causal transformer block as in SASRec (Kang & McAuley, ICDM 2018, sec. III-B/C)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.attention import MatmulAttention
from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import attention_mask, padding_mask
from tfrec_dyn.layers.normalization import LastAxisLayerNormalization


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class CausalTransformerBlock(keras.layers.Layer):
    """Self-attention block where position i only attends to real items j <= i.

    Follows the SASRec reference code: the query is layer-normalised first,
    attention output is added to it (residual), then a layer-normalised
    point-wise feed-forward network with its own residual; padding positions
    are zeroed at the output.

    Args:
      num_heads: attention heads h.
      ff_dim: hidden width of the feed-forward network (default: input width).
      dropout: dropout after attention and in the feed-forward network.
      causal: if False the block is bidirectional (padding still masked).
      layer_norm_epsilon: epsilon of the layer norms.

    Call: `block(x, item_ids, segments=None, training=...)` with x [B, L, d],
    the item ids [B, L] that give the padding mask and, in packed rows, the
    `segments` [B, L] attention stays within (`attention_mask`). Output
    [B, L, d].

    Example:
    >>> block = CausalTransformerBlock(num_heads=2)
    >>> block(tf.ones([1, 3, 4]), tf.constant([[0, 5, 6]])).shape
    TensorShape([1, 3, 4])
    """

    def __init__(self, num_heads=1, ff_dim=None, dropout=0.0, causal=True,
                 layer_norm_epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) <= 0:
            raise ValueError(f"`num_heads` must be positive, got num_heads={num_heads}")
        self.num_heads = int(num_heads)
        self.ff_dim = None if ff_dim is None else int(ff_dim)
        self.dropout = float(dropout)
        self.causal = bool(causal)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        d = int(input_shape[-1])
        if d % self.num_heads:
            raise ValueError(f"input width {d} is not divisible by num_heads={self.num_heads}")
        ff_dim = self.ff_dim or d
        self.attention_norm = LastAxisLayerNormalization(epsilon=self.layer_norm_epsilon, name="attention_norm", dtype=self.dtype_policy)
        self.attention = MatmulAttention(
            self.num_heads, d // self.num_heads, dropout=self.dropout, name="attention", dtype=self.dtype_policy)
        self.ffn_norm = LastAxisLayerNormalization(epsilon=self.layer_norm_epsilon, name="ffn_norm", dtype=self.dtype_policy)
        self.ffn_hidden = keras.layers.Dense(ff_dim, activation="relu", name="ffn_hidden", dtype=self.dtype_policy)
        self.ffn_output = keras.layers.Dense(d, name="ffn_output", dtype=self.dtype_policy)
        self.ffn_dropout = ByteDropout(self.dropout, name="ffn_dropout", dtype=self.dtype_policy)
        self.attention_norm.build(input_shape)
        # Build attention now, not lazily at first call: weights created at call
        # time are not restored when a SavedModel is loaded.
        self.attention._build_from_signature(query=input_shape, value=input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_hidden.build(input_shape)
        self.ffn_output.build(tuple(input_shape[:-1]) + (ff_dim,))
        super().build(input_shape)

    def call(self, x, item_ids, segments=None, training=None):
        mask = attention_mask(item_ids, causal=self.causal, segments=segments)
        query = self.attention_norm(x)
        x = query + self.attention(query, x, x, attention_mask=mask, training=training)
        y = self.ffn_norm(x)
        y = self.ffn_dropout(self.ffn_hidden(y), training=training)
        x = x + self.ffn_dropout(self.ffn_output(y), training=training)
        return x * tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout,
            "causal": self.causal, "layer_norm_epsilon": self.layer_norm_epsilon,
        })
        return config
