"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers import CausalTransformerBlock, ItemPositionEmbedding, LastAxisLayerNormalization
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.models.base import SequentialRecommender


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class SASRec(SequentialRecommender):
    """Causal self-attention over the item sequence, item table tied to the output.

    Args:
      vocab_size, max_len, loss: see `SequentialRecommender`.  The paper trains
        with `loss="bce"` (one sampled negative per position); `"ce"` (full
        softmax) is the option that usually ranks better on small data.
      embed_dim: d (paper: 50).
      num_blocks: transformer blocks (paper: 2).
      num_heads: attention heads (paper: 1).
      dropout: dropout rate (paper: 0.2 on ML-1M, 0.5 on sparse data).
      embeddings_initializer: the item and position tables' Keras initializer.
        The default, "glorot_uniform", is the reference code's (Xavier over
        the [V, d] table): its scale shrinks as 1/sqrt(V), so with a large
        catalogue the items start far smaller than the positions and the
        first epochs learn little (at 1M items one epoch stays at
        popularity's level, docs/scale.md).  For large catalogues pass
        "uniform" (Keras' Embedding default, ±0.05, independent of V): at
        1M items 15× the default's one-epoch NDCG@10, on ML-100K the same.

    Example:
    >>> model = SASRec(vocab_size=100, max_len=20)
    >>> model.score({"item_ids": tf.constant([[0, 5, 9]])}).shape
    TensorShape([1, 100])
    """

    supports_packing = True  # its attention and positions read `pack_rows`' segments and positions

    def __init__(self, vocab_size, max_len, embed_dim=64, num_blocks=2, num_heads=1,
                 dropout=0.2, embeddings_initializer="glorot_uniform", loss="bce", **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        self.embed_dim = int(embed_dim)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.embedding = ItemPositionEmbedding(vocab_size, embed_dim, max_len, dropout=dropout,
                                               embeddings_initializer=embeddings_initializer, name="embedding")
        self.blocks = [CausalTransformerBlock(num_heads, dropout=dropout, name=f"block_{i}")
                       for i in range(self.num_blocks)]
        self.final_norm = LastAxisLayerNormalization(epsilon=1e-8, name="final_norm")

    def call(self, inputs, training=False):
        item_ids = inputs["item_ids"]
        # Packed rows (training, `pack_rows`) carry each item's position and segment.
        x = self.embedding(item_ids, inputs.get("positions"), training=training)
        for block in self.blocks:
            x = block(x, item_ids, inputs.get("segments"), training=training)
        x = self.final_norm(x)
        return x * tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]

    def output_embeddings(self):
        return self.embedding.item_embedding.embeddings

    def get_config(self):
        config = super().get_config()
        config.update({"embed_dim": self.embed_dim, "num_blocks": self.num_blocks,
                       "num_heads": self.num_heads, "dropout": self.dropout,
                       "embeddings_initializer": self.embedding.get_config()["embeddings_initializer"]})
        return config


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class GSASRec(SASRec):
    """gSASRec (Petrov & Macdonald, RecSys 2023): SASRec trained with gBCE over
    many negatives, so its scores are calibrated instead of overconfident.

    The same network as `SASRec`; only the training defaults differ: the
    "gbce" loss, `num_negatives` k = 256 per user and calibration
    t = 0.75 (the paper's ML-1M settings; `SequentialRecommender` documents
    both and the logit offset the library adds, see `logit_offset`).  Any
    of them, and every SASRec argument, can still be set.

    Example:
    >>> model = GSASRec(vocab_size=1000, max_len=20)
    >>> model.loss_name, model.num_negatives, model.negative_layout
    ('gbce', 256, 'per_sequence')
    """

    def __init__(self, vocab_size, max_len, loss="gbce", num_negatives=256, gbce_calibration=0.75, **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, num_negatives=num_negatives,
                         gbce_calibration=gbce_calibration, **kwargs)
