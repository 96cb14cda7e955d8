"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.models.base import SequentialRecommender


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class GRU4Rec(SequentialRecommender):
    """A GRU over the item sequence; its state at each position scores the next item.

    Choices (the paper trains session-parallel mini-batches with TOP1/BPR
    losses): here the GRU runs over each user's whole left-padded window with
    padding masked out, the hidden state is projected to the embedding width
    and scored against the input item table (tied), and the default loss is
    full-softmax cross-entropy, which later GRU4Rec work found strongest
    (`loss="bce"` uses sampled negatives instead).

    Args:
      embed_dim: item embedding width d.
      hidden_dim: GRU state width.
      num_layers: stacked GRU layers.
      dropout: dropout on embeddings and between layers.

    Example:
    >>> model = GRU4Rec(vocab_size=100, max_len=20)
    >>> model({"item_ids": tf.constant([[0, 5, 9]])}).shape
    TensorShape([1, 3, 64])
    """

    def __init__(self, vocab_size, max_len, embed_dim=64, hidden_dim=128, num_layers=1,
                 dropout=0.2, loss="ce", **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        self.embed_dim = int(embed_dim)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.item_embedding = keras.layers.Embedding(vocab_size, embed_dim, name="item_embedding")
        self.input_dropout = ByteDropout(dropout, name="input_dropout")
        self.grus = [keras.layers.GRU(hidden_dim, return_sequences=True, dropout=dropout if i else 0.0,
                                      name=f"gru_{i}") for i in range(self.num_layers)]
        self.projection = keras.layers.Dense(embed_dim, name="projection")

    def call(self, inputs, training=False):
        item_ids = inputs["item_ids"]
        mask = padding_mask(item_ids)
        x = self.input_dropout(self.item_embedding(item_ids), training=training)
        for gru in self.grus:
            x = gru(x, mask=mask, training=training)
        x = self.projection(x)
        return x * tf.cast(mask, x.dtype)[..., tf.newaxis]

    def output_embeddings(self):
        return self.item_embedding.embeddings

    def get_config(self):
        config = super().get_config()
        config.update({"embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim,
                       "num_layers": self.num_layers, "dropout": self.dropout})
        return config
