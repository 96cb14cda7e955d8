"""Reusable Keras layers (all registered under the `tfrec_dyn` package)."""

from tfrec_dyn.layers.embedding import ItemPositionEmbedding
from tfrec_dyn.layers.masks import attention_mask, causal_mask, padding_mask
from tfrec_dyn.layers.transformer import CausalTransformerBlock

__all__ = [
    "CausalTransformerBlock",
    "ItemPositionEmbedding",
    "attention_mask",
    "causal_mask",
    "padding_mask",
]
