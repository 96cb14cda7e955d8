"""Path-MSA and the RETR block (Recommender Transformers with Behavior Pathways, eq. 6)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.attention import MatmulAttention
from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import attention_mask, padding_mask
from tfrec_dyn.layers.normalization import LastAxisLayerNormalization
from tfrec_dyn.layers.pathway_router import PathwayRouter


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class PathMultiHeadAttention(keras.layers.Layer):
    """Multi-head attention whose queries come from the routed behaviours only (eq. 6).

    Q = (Z ⊙ R) W_Q, K = Z W_K, V = Z W_V, softmax(Q Kᵀ / sqrt(d/h)) V per head,
    with the causal and padding masks of the sequence. With R all ones it is
    ordinary (causal) multi-head attention with the same weights.

    Eq. 6 masks the queries only, so a dropped position still reads the whole
    history (with a zero query its attention is uniform). `mask_keys=True` is the
    stricter reading of "attends only over routed behaviours": keys are also
    limited to routed positions, plus each position itself so no row is empty.
    The default follows the equation.

    Args:
      num_heads: h.
      dropout: dropout on the attention probabilities.
      causal: position i sees positions j <= i only.
      mask_keys: also restrict keys/values to routed positions (see above).

    Call: `attention(z, route_mask, item_ids, training=...)` with z [B, L, d],
    route_mask [B, L] (1.0 = routed) and item_ids [B, L] (0 = padding).

    Example:
    >>> attention = PathMultiHeadAttention(num_heads=2)
    >>> attention(tf.ones([1, 3, 4]), tf.ones([1, 3]), tf.constant([[0, 5, 6]])).shape
    TensorShape([1, 3, 4])
    """

    def __init__(self, num_heads=1, dropout=0.0, causal=True, mask_keys=False, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) <= 0:
            raise ValueError(f"`num_heads` must be positive, got num_heads={num_heads}")
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.causal = bool(causal)
        self.mask_keys = bool(mask_keys)

    def build(self, input_shape):
        d = int(input_shape[-1])
        if d % self.num_heads:
            raise ValueError(f"input width {d} is not divisible by num_heads={self.num_heads}")
        self.attention = MatmulAttention(
            self.num_heads, d // self.num_heads, dropout=self.dropout, name="attention", dtype=self.dtype_policy)
        # Built now, not lazily: weights created at call time are not restored from a SavedModel.
        self.attention._build_from_signature(query=input_shape, value=input_shape)
        super().build(input_shape)

    def call(self, z, route_mask, item_ids, training=None):
        route_mask = tf.cast(route_mask, z.dtype)
        mask = attention_mask(item_ids, causal=self.causal)
        if self.mask_keys:
            length = tf.shape(item_ids)[1]
            routed_keys = tf.logical_or(tf.cast(route_mask, tf.bool)[:, tf.newaxis, :],
                                        tf.eye(length, dtype=tf.bool)[tf.newaxis])
            mask = tf.logical_and(mask, routed_keys)
        query = z * route_mask[..., tf.newaxis]
        return self.attention(query, z, z, attention_mask=mask, training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "dropout": self.dropout, "causal": self.causal,
                       "mask_keys": self.mask_keys})
        return config


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class PathTransformerBlock(keras.layers.Layer):
    """One RETR block: router, Path-MSA, residual + LayerNorm, FFN, residual + LayerNorm.

        R^l, Ẑ = Path-MSA(Z^{l-1}, R^{l-1});  Ẑ = LN(Ẑ + Z^{l-1});  Z^l = LN(FFN(Ẑ) + Ẑ)

    (post-norm, as the paper's block). `norm_first=True` uses the SASRec
    reference code's arrangement instead (layer-normalised query, un-normalised
    residuals), for comparisons where only the routing should differ; the model
    then adds a final LayerNorm.

    Args:
      num_heads: attention heads h.
      ff_dim: hidden width of the FFN (default: input width).
      dropout: dropout on attention probabilities, attention output and FFN.
      temperature, hierarchical, router_hidden_dim, keep_rate_weight: see
        `PathwayRouter`.
      use_router: False routes every real item (R = padding mask): the paper's
        "w/o pathway router" ablation.
      mask_keys: see `PathMultiHeadAttention`.
      norm_first: see above.

    Call: `block(z, previous_mask, item_ids, training=...)` -> (Z^l [B, L, d],
    R^l [B, L]); padding positions of Z^l are zero.

    Example:
    >>> block = PathTransformerBlock(num_heads=2)
    >>> ids = tf.constant([[0, 5, 6]])
    >>> z, mask = block(tf.ones([1, 3, 4]), tf.constant([[0., 1, 1]]), ids)
    >>> z.shape, mask.shape
    (TensorShape([1, 3, 4]), TensorShape([1, 3]))
    """

    def __init__(self, num_heads=1, ff_dim=None, dropout=0.0, temperature=0.8, hierarchical=True,
                 router_hidden_dim=None, keep_rate_weight=0.0, use_router=True, mask_keys=False, norm_first=False,
                 layer_norm_epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        if float(temperature) <= 0:
            raise ValueError(f"`temperature` must be positive, got temperature={temperature}")
        if float(keep_rate_weight) < 0:
            raise ValueError(f"`keep_rate_weight` must be >= 0, got keep_rate_weight={keep_rate_weight}")
        self.num_heads = int(num_heads)
        self.ff_dim = None if ff_dim is None else int(ff_dim)
        self.dropout = float(dropout)
        self.temperature = float(temperature)
        self.hierarchical = bool(hierarchical)
        self.router_hidden_dim = None if router_hidden_dim is None else int(router_hidden_dim)
        self.keep_rate_weight = float(keep_rate_weight)
        self.use_router = bool(use_router)
        self.mask_keys = bool(mask_keys)
        self.norm_first = bool(norm_first)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        d = int(input_shape[-1])
        ff_dim = self.ff_dim or d
        self.router = PathwayRouter(self.temperature, self.hierarchical, self.router_hidden_dim,
                                    self.keep_rate_weight, name="router", dtype=self.dtype_policy) if self.use_router else None
        self.path_attention = PathMultiHeadAttention(self.num_heads, self.dropout, mask_keys=self.mask_keys,
                                                     name="path_attention", dtype=self.dtype_policy)
        self.attention_norm = LastAxisLayerNormalization(epsilon=self.layer_norm_epsilon, name="attention_norm", dtype=self.dtype_policy)
        self.ffn_norm = LastAxisLayerNormalization(epsilon=self.layer_norm_epsilon, name="ffn_norm", dtype=self.dtype_policy)
        self.ffn_hidden = keras.layers.Dense(ff_dim, activation="relu", name="ffn_hidden", dtype=self.dtype_policy)
        self.ffn_output = keras.layers.Dense(d, name="ffn_output", dtype=self.dtype_policy)
        self.dropout_layer = ByteDropout(self.dropout, name="dropout", dtype=self.dtype_policy)
        if self.router is not None:
            self.router.build(input_shape)
        self.path_attention.build(input_shape)
        self.attention_norm.build(input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_hidden.build(input_shape)
        self.ffn_output.build(tuple(input_shape[:-1]) + (ff_dim,))
        super().build(input_shape)

    def _ffn(self, x, training):
        hidden = self.dropout_layer(self.ffn_hidden(x), training=training)
        return self.dropout_layer(self.ffn_output(hidden), training=training)

    def call(self, z, previous_mask, item_ids, training=None):
        padding = tf.cast(padding_mask(item_ids), z.dtype)
        if self.router is None:
            mask = padding
        else:
            mask = self.router(z, previous_mask, padding, training=training)
        if self.norm_first:
            query = self.attention_norm(z)
            x = query + self.dropout_layer(self.path_attention(query, mask, item_ids, training=training),
                                           training=training)
            x = x + self._ffn(self.ffn_norm(x), training)
        else:
            x = self.attention_norm(z + self.dropout_layer(self.path_attention(z, mask, item_ids, training=training),
                                                           training=training))
            x = self.ffn_norm(x + self._ffn(x, training))
        return x * padding[..., tf.newaxis], mask

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout,
            "temperature": self.temperature, "hierarchical": self.hierarchical,
            "router_hidden_dim": self.router_hidden_dim, "keep_rate_weight": self.keep_rate_weight,
            "use_router": self.use_router,
            "mask_keys": self.mask_keys, "norm_first": self.norm_first,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        })
        return config
