"""HSTU (Zhai et al., "Actions Speak Louder than Words", ICML 2024) as a
next-item recommender: the causal stack of `tfrec_dyn.layers.HSTUBlock`s,
trained with sampled softmax over L2-normalised vectors."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers import HSTUBlock, ItemPositionEmbedding
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.models.base import SequentialRecommender


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class HSTU(SequentialRecommender):
    """Item + absolute position embeddings, `num_blocks` HSTU layers, and the
    authors' output: user and item vectors L2-normalised, their dot product
    divided by a `temperature`, trained with sampled softmax.

    The time part of the relative bias reads the log's `timestamp` field
    (seconds) when the data has one (`side_fields`; ML-100K does, and the
    pipeline's examples and the served signatures carry it); without it (or
    where a request leaves it out) the bias is by relative position only.  Timestamps
    travel as float32, so gaps under about 2 minutes round off (a seconds
    timestamp of 1.7·10⁹ keeps 128 s steps); the time buckets are
    logarithmic and start at 1 s, so only the shortest gaps blur.

    Args:
      vocab_size, max_len, loss, num_negatives: see `SequentialRecommender`;
        the paper trains with sampled softmax ("sampled_softmax", 128
        negatives by default here, the authors' ML-1M setting).
      embed_dim: d (the authors' ML-1M setting: 50).
      num_blocks: HSTU layers (ML-1M: 8; 2 by default here, for ML-100K-sized logs).
      num_heads: heads per layer (ML-1M: 2).
      dropout: on the embeddings and on every layer's output (ML-1M: 0.2).
      attention_dropout: on the attention weights (ML-1M: 0); None: `dropout`.
      attention_scale: what divides the attention weights, "window" (the
        authors' code) or "items" (`HSTUBlock`).
      temperature: scores are cosine similarities divided by this.  0.2 by
        default: the authors' ML-1M setting, 0.05, is too sharp for smaller
        catalogues; 0.2 was chosen on ML-100K validation and also helps on
        JD-computers, which it was not chosen on (docs/results.md, "The HSTU
        sweep").
      num_time_buckets: time-gap buckets of the relative bias (0: none).
      embeddings_initializer: the item (and position) tables' Keras initializer
        (default: Glorot, as SASRec; see `SASRec` for why a large catalogue
        wants one whose scale does not shrink with V, e.g. "uniform").

    Example:
    >>> model = HSTU(vocab_size=100, max_len=20)
    >>> model.score({"item_ids": tf.constant([[0, 5, 9]])}).shape
    TensorShape([1, 100])
    """

    side_fields = ("timestamp",)  # what the trainer feeds it when the log has it

    def __init__(self, vocab_size, max_len, embed_dim=64, num_blocks=2, num_heads=1, dropout=0.2,
                 attention_dropout=None, attention_scale="window", temperature=0.2, num_time_buckets=128,
                 embeddings_initializer="glorot_uniform", loss="sampled_softmax", num_negatives=128, **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, num_negatives=num_negatives, **kwargs)
        if float(temperature) <= 0:
            raise ValueError(f"`temperature` must be positive, got {temperature}")
        self.embed_dim = int(embed_dim)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.attention_dropout = None if attention_dropout is None else float(attention_dropout)
        self.attention_scale = attention_scale
        self.temperature = float(temperature)
        self.num_time_buckets = int(num_time_buckets)
        self.embedding = ItemPositionEmbedding(vocab_size, embed_dim, max_len, dropout=dropout,
                                               embeddings_initializer=embeddings_initializer, name="embedding")
        self.blocks = [HSTUBlock(max_len, num_heads, dropout=dropout, attention_dropout=attention_dropout,
                                 attention_scale=attention_scale, num_time_buckets=num_time_buckets,
                                 name=f"block_{i}") for i in range(self.num_blocks)]

    def call(self, inputs, training=False):
        item_ids = inputs["item_ids"]
        timestamps = inputs.get("timestamp")
        x = self.embedding(item_ids, training=training)
        for block in self.blocks:
            x = block(x, item_ids, timestamps, training=training)
        # Normalised in float32: under mixed precision the norm's epsilon is 0 in float16, and 0/0 at padding.
        x = tf.cast(tf.math.l2_normalize(tf.cast(x, tf.float32), -1) / self.temperature, x.dtype)
        return x * tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]

    def output_embeddings(self):
        return self.embedding.item_embedding.embeddings

    def scoring_vectors(self, rows):
        return tf.math.l2_normalize(tf.cast(rows, tf.float32), -1)

    def get_config(self):
        config = super().get_config()
        config.update({"embed_dim": self.embed_dim, "num_blocks": self.num_blocks, "num_heads": self.num_heads,
                       "dropout": self.dropout, "attention_dropout": self.attention_dropout,
                       "attention_scale": self.attention_scale, "temperature": self.temperature,
                       "num_time_buckets": self.num_time_buckets,
                       "embeddings_initializer": self.embedding.get_config()["embeddings_initializer"]})
        return config
