"""Item + learned position embedding (SASRec, eq. 2 of Kang & McAuley 2018)."""

import math

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import padding_mask


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class ItemPositionEmbedding(keras.layers.Layer):
    """Embeds left-padded item ids and adds a learned position embedding.

    Item embeddings are scaled by sqrt(embed_dim) as in SASRec, padding
    positions are zeroed, and the item table is exposed as `item_embedding` so a
    model can reuse it as its output layer (weight tying).

    Args:
      vocab_size: number of item ids including padding (0) and OOV (1).
      embed_dim: embedding width d.
      max_len: longest input sequence L (number of position embeddings).
      dropout: dropout rate applied to the sum.
      scale: multiply item embeddings by sqrt(d) (SASRec's choice).
      positions: False leaves the position embedding out (no position table).

    Input: int `item_ids` [B, L<=max_len] and optionally `positions` [B, L],
    each item's position (default: its column; packed rows give their own,
    see `tfrec_dyn.data.input_pipeline.pack_rows`). Output: float [B, L, d].

    Example:
    >>> layer = ItemPositionEmbedding(vocab_size=10, embed_dim=4, max_len=3)
    >>> layer(tf.constant([[0, 2, 3]])).shape
    TensorShape([1, 3, 4])
    """

    def __init__(self, vocab_size, embed_dim, max_len, dropout=0.0, scale=True,
                 embeddings_initializer="glorot_uniform", positions=True, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim), ("max_len", max_len)):
            if int(value) <= 0:
                raise ValueError(f"`{name}` must be positive, got {name}={value}")
        self.vocab_size = int(vocab_size)
        self.embed_dim = int(embed_dim)
        self.max_len = int(max_len)
        self.dropout = float(dropout)
        self.scale = bool(scale)
        self.positions = bool(positions)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape):
        # A fresh initializer per table: one shared instance would give both the same values.
        def initializer():
            return keras.initializers.get(keras.initializers.serialize(self.embeddings_initializer))

        self.item_embedding = keras.layers.Embedding(
            self.vocab_size, self.embed_dim,
            embeddings_initializer=initializer(), name="item_embedding", dtype=self.dtype_policy)
        self.item_embedding.build(input_shape)
        if self.positions:
            self.position_embedding = keras.layers.Embedding(
                self.max_len, self.embed_dim,
                embeddings_initializer=initializer(), name="position_embedding", dtype=self.dtype_policy)
            self.position_embedding.build((self.max_len,))
        self.dropout_layer = ByteDropout(self.dropout, name="dropout", dtype=self.dtype_policy)
        super().build(input_shape)

    def call(self, item_ids, positions=None, training=None):
        x = self.item_embedding(item_ids)
        if self.scale:
            x = x * math.sqrt(self.embed_dim)
        if self.positions:
            if positions is None:
                # Positions count from the left edge of the (left-padded) window.
                positions = tf.range(tf.shape(item_ids)[1])[tf.newaxis]
            x = x + self.position_embedding(positions)
        x = self.dropout_layer(x, training=training)
        return x * tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocab_size": self.vocab_size, "embed_dim": self.embed_dim,
            "max_len": self.max_len, "dropout": self.dropout, "scale": self.scale, "positions": self.positions,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        })
        return config
