"""RDRSR's Dynamic Interest Discriminator (Shao et al., 2022, sec. 3.3, eq. 1-8)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.gumbel import gumbel_softmax
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.layers.transformer import CausalTransformerBlock


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class DynamicInterestDiscriminator(keras.layers.Layer):
    """Decides how many interests (1..k) a sequence shows.

    1. Bidirectional self-attention blocks (eq. 1-3) give item representations
       F that see the whole window (padding masked).
    2. User attention (eq. 4-5): a_i = softmax_i(w2 · tanh(F_i W_f1 + e_u W_u) + b),
       then f = W_k Σ_i a_i F_i gives k logits, one per interest count.  The
       paper writes no non-linearity inside; without one the user's term is the
       same at every position and cancels in the softmax, so we add tanh
       (additive attention, Bahdanau et al.).
    3. The count is sampled with straight-through Gumbel-softmax at temperature
       τ (eq. 6-8; the paper uses τ = 10) in training: exactly one-hot forward,
       gradients of the relaxed sample backward. At inference it is the arg-max.

    The paper's user embedding e_u is a free per-user vector; here the caller
    passes a summary of the window (RDRSR passes the mean item embedding), so
    the layer serves users it never saw in training.

    With `fixed_interests=n` the count head is off (no weights, no sampling)
    and every sequence gets n interests: RDRSR-F, the paper's ablation.

    Call: `did(x, item_ids, user, training=...)` with embedded items x [B, T, d],
    the ids [B, T] (0 = padding) and user vectors [B, d]. Returns
    `(items, count_one_hot, count_logits)`: F [B, T, d]; [B, k] one-hot over the
    counts 1..k; [B, k] logits (zeros when the count is fixed).

    Args:
      max_interests: k.
      num_blocks: bidirectional self-attention blocks.
      num_heads: attention heads.
      dropout: dropout in the blocks.
      temperature: Gumbel-softmax τ.
      attention_dim: width of the user-attention hidden layer (default d).
      fixed_interests: None (learn the count) or a fixed count in 1..k.

    Example:
    >>> did = DynamicInterestDiscriminator(max_interests=4)
    >>> items, count, _ = did(tf.ones([2, 5, 8]), tf.ones([2, 5], tf.int32), tf.ones([2, 8]))
    >>> items.shape, count.shape
    (TensorShape([2, 5, 8]), TensorShape([2, 4]))
    """

    def __init__(self, max_interests=4, num_blocks=1, num_heads=1, dropout=0.0, temperature=10.0,
                 attention_dim=None, fixed_interests=None, **kwargs):
        super().__init__(**kwargs)
        if int(max_interests) <= 0:
            raise ValueError(f"`max_interests` must be positive, got max_interests={max_interests}")
        if float(temperature) <= 0:
            raise ValueError(f"`temperature` must be positive, got temperature={temperature}")
        if fixed_interests is not None and not 1 <= int(fixed_interests) <= int(max_interests):
            raise ValueError(f"`fixed_interests` must be in 1..{max_interests}, got {fixed_interests}")
        self.max_interests = int(max_interests)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.temperature = float(temperature)
        self.attention_dim = None if attention_dim is None else int(attention_dim)
        self.fixed_interests = None if fixed_interests is None else int(fixed_interests)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.blocks = [CausalTransformerBlock(self.num_heads, dropout=self.dropout, causal=False,
                                              name=f"block_{i}", dtype=self.dtype_policy)
                       for i in range(self.num_blocks)]
        for block in self.blocks:
            block.build(input_shape)
        if self.fixed_interests is None:
            width = self.attention_dim or d
            self.item_projection = keras.layers.Dense(width, use_bias=False, name="item_projection",
                                                      dtype=self.dtype_policy)            # W_f1
            self.user_projection = keras.layers.Dense(width, use_bias=False, name="user_projection",
                                                      dtype=self.dtype_policy)            # W_u
            self.attention_score = keras.layers.Dense(1, name="attention_score", dtype=self.dtype_policy)  # W_f2, b
            self.count_head = keras.layers.Dense(self.max_interests, use_bias=False, name="count_head",
                                                 dtype=self.dtype_policy)                 # W_k
            self.item_projection.build(input_shape)
            self.user_projection.build((input_shape[0], d))
            self.attention_score.build(tuple(input_shape[:-1]) + (width,))
            self.count_head.build((input_shape[0], d))
        super().build(input_shape)

    def call(self, x, item_ids, user, training=None):
        for block in self.blocks:
            x = block(x, item_ids, training=training)
        batch = tf.shape(x)[0]
        if self.fixed_interests is not None:
            count = tf.one_hot(tf.fill([batch], self.fixed_interests - 1), self.max_interests)
            return x, count, tf.zeros([batch, self.max_interests])
        user = tf.cast(user, x.dtype)
        scores = self.attention_score(tf.tanh(self.item_projection(x) + self.user_projection(user)[:, tf.newaxis]))
        scores = tf.where(padding_mask(item_ids)[..., tf.newaxis], tf.cast(scores, tf.float32), -1e9)
        weights = tf.nn.softmax(scores, axis=1)                                     # a_i, eq. 4
        summary = tf.reduce_sum(weights * tf.cast(x, tf.float32), axis=1)         # Σ a_i F_i
        logits = tf.nn.log_softmax(tf.cast(self.count_head(summary), tf.float32))  # log f, eq. 5
        if training:
            count, _ = gumbel_softmax(logits, self.temperature)                   # eq. 6-8
        else:
            count = tf.one_hot(tf.argmax(logits, axis=-1), self.max_interests)
        return x, count, logits

    def get_config(self):
        config = super().get_config()
        config.update({
            "max_interests": self.max_interests, "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "dropout": self.dropout, "temperature": self.temperature, "attention_dim": self.attention_dim,
            "fixed_interests": self.fixed_interests,
        })
        return config


def active_interests(count_one_hot: tf.Tensor) -> tf.Tensor:
    """[B, k] one-hot over the counts 1..k -> [B, k] with 1 for interests 1..h.

    Interest j is active when the count is at least j: a reversed cumulative sum,
    so it carries the count's straight-through gradient.
    """
    return tf.cumsum(count_one_hot, axis=-1, reverse=True)
