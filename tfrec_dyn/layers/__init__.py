"""Reusable Keras layers (all registered under the `tfrec_dyn` package)."""

from tfrec_dyn.layers.embedding import ItemPositionEmbedding
from tfrec_dyn.layers.gumbel import gumbel_noise, gumbel_softmax
from tfrec_dyn.layers.masks import attention_mask, causal_mask, padding_mask
from tfrec_dyn.layers.path_attention import PathMultiHeadAttention, PathTransformerBlock
from tfrec_dyn.layers.pathway_router import PathwayRouter
from tfrec_dyn.layers.transformer import CausalTransformerBlock

__all__ = [
    "CausalTransformerBlock",
    "ItemPositionEmbedding",
    "PathMultiHeadAttention",
    "PathTransformerBlock",
    "PathwayRouter",
    "attention_mask",
    "causal_mask",
    "gumbel_noise",
    "gumbel_softmax",
    "padding_mask",
]
