"""RETR: Recommender Transformers with Behavior Pathways (Chen et al., 2022)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers import ItemPositionEmbedding, LastAxisLayerNormalization, PathTransformerBlock
from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.models.base import SequentialRecommender


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class RETR(SequentialRecommender):
    """A causal transformer whose blocks each attend from a routed "behaviour pathway".

    Every `PathTransformerBlock` has a `PathwayRouter` that keeps or drops each
    behaviour of the sequence (Gumbel-softmax with temperature τ in training,
    arg-max at inference); with `hierarchical=True` a behaviour dropped by one
    block stays dropped in every later block (eq. 5). The user state is the
    last position of the last block, scored against the (tied) item table.

    `pathways(batch)` returns the inference-time masks of every block: which of
    a user's behaviours each layer routed.

    Args:
      vocab_size, max_len: see `SequentialRecommender`.
      embed_dim: d.
      num_blocks: L (paper default 2).
      num_heads: h.
      dropout: dropout rate in the embedding and the blocks.
      temperature: Gumbel-softmax τ (paper: 0.8).
      embeddings_initializer: the item (and position) tables' Keras initializer
        (default: Glorot, as SASRec; see `SASRec` for why a large catalogue
        wants one whose scale does not shrink with V, e.g. "uniform").
      use_router: False gives the "w/o pathway router" ablation (every real
        item routed; the rest of the architecture unchanged).
      hierarchical: False gives the "w/o hierarchical update" ablation.
      router_hidden_dim, keep_rate_weight, mask_keys, norm_first: see
        `PathTransformerBlock`; the defaults follow the paper (eq. 6 masks
        queries only; post-norm; no keep-rate penalty).
      loss: "bpr" (eq. 7, one sampled negative per position, the default),
        "bce" or "ce" (full softmax).

    Example:
    >>> model = RETR(vocab_size=100, max_len=20)
    >>> batch = {"item_ids": tf.constant([[0, 5, 9]])}
    >>> model.score(batch).shape, model.pathways(batch).shape
    (TensorShape([1, 100]), TensorShape([1, 2, 3]))
    """

    # Not checked under XLA: its router's Gumbel noise is drawn another way there (see SequentialRecommender).
    supports_jit_compile = False

    def __init__(self, vocab_size, max_len, embed_dim=64, num_blocks=2, num_heads=1, dropout=0.2,
                 temperature=0.8, use_router=True, hierarchical=True, router_hidden_dim=None,
                 keep_rate_weight=0.0, mask_keys=False, norm_first=False, embeddings_initializer="glorot_uniform",
                 loss="bpr", **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        if int(num_blocks) <= 0:
            raise ValueError(f"`num_blocks` must be positive, got num_blocks={num_blocks}")
        self.embed_dim = int(embed_dim)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.temperature = float(temperature)
        self.use_router = bool(use_router)
        self.hierarchical = bool(hierarchical)
        self.router_hidden_dim = None if router_hidden_dim is None else int(router_hidden_dim)
        self.keep_rate_weight = float(keep_rate_weight)
        self.mask_keys = bool(mask_keys)
        self.norm_first = bool(norm_first)
        self.embedding = ItemPositionEmbedding(vocab_size, embed_dim, max_len, dropout=dropout,
                                               embeddings_initializer=embeddings_initializer, name="embedding")
        self.blocks = [
            PathTransformerBlock(num_heads, dropout=dropout, temperature=temperature, hierarchical=hierarchical,
                                 router_hidden_dim=router_hidden_dim, keep_rate_weight=keep_rate_weight,
                                 use_router=use_router, mask_keys=mask_keys,
                                 norm_first=norm_first, name=f"block_{i}")
            for i in range(self.num_blocks)]
        # Post-norm blocks end in a LayerNorm already; pre-norm ones need a final one.
        self.final_norm = (LastAxisLayerNormalization(epsilon=1e-8, name="final_norm")
                           if self.norm_first else None)

    def encode(self, inputs, training=False):
        """(representations [B, L, d], per-block masks [B, num_blocks, L])."""
        item_ids = inputs["item_ids"]
        x = self.embedding(item_ids, training=training)
        mask = tf.cast(padding_mask(item_ids), x.dtype)  # R^0: every real behaviour
        masks = []
        for block in self.blocks:
            x, mask = block(x, mask, item_ids, training=training)
            masks.append(mask)
        if self.final_norm is not None:
            x = self.final_norm(x) * tf.cast(padding_mask(item_ids), x.dtype)[..., tf.newaxis]
        return x, tf.stack(masks, axis=1)

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    def pathways(self, inputs) -> tf.Tensor:
        """Inference-time routing masks [B, num_blocks, L] (1.0 = the block routed that behaviour)."""
        if not isinstance(inputs, dict):
            inputs = {"item_ids": inputs}
        return tf.cast(self.encode(inputs, training=False)[1], tf.float32)

    def output_embeddings(self):
        return self.embedding.item_embedding.embeddings

    def get_config(self):
        config = super().get_config()
        config.update({
            "embed_dim": self.embed_dim, "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "dropout": self.dropout, "temperature": self.temperature, "use_router": self.use_router,
            "hierarchical": self.hierarchical, "router_hidden_dim": self.router_hidden_dim,
            "keep_rate_weight": self.keep_rate_weight, "mask_keys": self.mask_keys, "norm_first": self.norm_first,
            "embeddings_initializer": self.embedding.get_config()["embeddings_initializer"],
        })
        return config
