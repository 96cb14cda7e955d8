"""Caser: convolutional sequence embedding (Tang & Wang, WSDM 2018)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.models.base import SequentialRecommender


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class Caser(SequentialRecommender):
    """Horizontal and vertical convolutions over the last `window` items.

    The paper scores the next item from the embedding matrix of the previous
    `window` (its L) items: horizontal filters of every height h = 1..window
    with max-pooling over time, and vertical filters that take weighted sums
    over the window.  We compute that for *every* position at once, causally:
    a causal Conv1D of height h followed by a max-pool over the window's
    `window - h + 1` placements gives exactly the paper's horizontal features of
    the window ending at that position, and the vertical filters are a causal
    weighted sum over the same window.  Training then uses every position as a
    (window -> next item) example, like the paper's sliding windows with T = 1.

    Choices: no user embedding (so new users can be scored; the paper
    concatenates one), separate output item embeddings with a bias (as the
    paper), loss "bce" with sampled negatives as the paper.

    Args:
      window: L, the number of previous items a prediction looks at (paper: 5).
      embed_dim: d. num_horizontal: n_h filters per height. num_vertical: n_v.
      dropout: dropout before the fully connected layer (paper: 0.5).

    Example:
    >>> model = Caser(vocab_size=100, max_len=20)
    >>> model({"item_ids": tf.constant([[0, 5, 9]])}).shape
    TensorShape([1, 3, 64])
    """

    def __init__(self, vocab_size, max_len, window=5, embed_dim=64, num_horizontal=16,
                 num_vertical=4, dropout=0.5, loss="bce", **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        if int(window) <= 0:
            raise ValueError(f"`window` must be positive, got window={window}")
        self.window = int(window)
        self.embed_dim = int(embed_dim)
        self.num_horizontal = int(num_horizontal)
        self.num_vertical = int(num_vertical)
        self.dropout = float(dropout)
        self.item_embedding = keras.layers.Embedding(vocab_size, embed_dim, name="item_embedding")
        self.horizontal = [keras.layers.Conv1D(num_horizontal, h, padding="causal", activation="relu",
                                               name=f"horizontal_{h}") for h in range(1, self.window + 1)]
        self.vertical = keras.layers.Dense(num_vertical, use_bias=False, name="vertical")
        self.fc_dropout = ByteDropout(dropout, name="fc_dropout")
        self.fc = keras.layers.Dense(embed_dim, activation="relu", name="fc")
        self.output_item_embedding = keras.layers.Embedding(vocab_size, embed_dim, name="output_item_embedding")
        self.output_item_bias = keras.layers.Embedding(vocab_size, 1, embeddings_initializer="zeros",
                                                       name="output_item_bias")

    def build(self, input_shape):
        # Output tables are only read through their weights, so build them here.
        self.output_item_embedding.build((None,))
        self.output_item_bias.build((None,))
        super().build(input_shape)

    def call(self, inputs, training=False):
        item_ids = inputs["item_ids"]
        mask = padding_mask(item_ids)
        x = self.item_embedding(item_ids)
        x = x * tf.cast(mask, x.dtype)[..., tf.newaxis]
        features = []
        for h, conv in enumerate(self.horizontal, start=1):
            # ReLU outputs are >= 0, so zero left-padding does not change the max.
            pool = self.window - h + 1
            y = tf.pad(conv(x), [[0, 0], [pool - 1, 0], [0, 0]])
            features.append(tf.nn.max_pool1d(y, ksize=pool, strides=1, padding="VALID"))
        # Vertical filters: windows [B, L, window, d] -> weighted sums over the window.
        padded = tf.pad(x, [[0, 0], [self.window - 1, 0], [0, 0]])
        windows = tf.signal.frame(padded, self.window, 1, axis=1)  # [B, L, window, d]
        vertical = self.vertical(tf.transpose(windows, [0, 1, 3, 2]))  # [B, L, d, n_v]
        features.append(tf.reshape(vertical, tf.concat([tf.shape(x)[:2], [self.embed_dim * self.num_vertical]], 0)))
        z = self.fc(self.fc_dropout(tf.concat(features, -1), training=training))
        return z * tf.cast(mask, z.dtype)[..., tf.newaxis]

    def output_embeddings(self):
        return self.output_item_embedding.embeddings

    def output_bias(self):
        return self.output_item_bias.embeddings  # [V, 1]

    def get_config(self):
        config = super().get_config()
        config.update({"window": self.window, "embed_dim": self.embed_dim,
                       "num_horizontal": self.num_horizontal, "num_vertical": self.num_vertical,
                       "dropout": self.dropout})
        return config
