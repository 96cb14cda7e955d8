"""Reusable Keras layers (all registered under the `tfrec_dyn` package)."""

from tfrec_dyn.layers.embedding import ItemPositionEmbedding
from tfrec_dyn.layers.gumbel import gumbel_noise, gumbel_softmax
from tfrec_dyn.layers.interest_allocator import DynamicInterestAllocator
from tfrec_dyn.layers.interest_discriminator import DynamicInterestDiscriminator, active_interests
from tfrec_dyn.layers.masks import attention_mask, causal_mask, padding_mask
from tfrec_dyn.layers.path_attention import PathMultiHeadAttention, PathTransformerBlock
from tfrec_dyn.layers.pathway_router import PathwayRouter
from tfrec_dyn.layers.policy import CategoricalPolicy, discounted_returns, reinforce_loss
from tfrec_dyn.layers.transformer import CausalTransformerBlock

__all__ = [
    "CategoricalPolicy",
    "CausalTransformerBlock",
    "DynamicInterestAllocator",
    "DynamicInterestDiscriminator",
    "ItemPositionEmbedding",
    "PathMultiHeadAttention",
    "PathTransformerBlock",
    "PathwayRouter",
    "active_interests",
    "attention_mask",
    "causal_mask",
    "discounted_returns",
    "gumbel_noise",
    "gumbel_softmax",
    "padding_mask",
    "reinforce_loss",
]
