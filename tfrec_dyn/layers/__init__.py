"""Reusable Keras layers (all registered under the `tfrec_dyn` package)."""

from tfrec_dyn.layers.attention import MatmulAttention
from tfrec_dyn.layers.attention_gru import AttentionGRU
from tfrec_dyn.layers.behavior_lstm import BehaviorLSTMCell
from tfrec_dyn.layers.dropout import ByteDropout
from tfrec_dyn.layers.embedding import ItemPositionEmbedding
from tfrec_dyn.layers.gumbel import gumbel_noise, gumbel_softmax
from tfrec_dyn.layers.head_tail_discriminator import HeadTailDiscriminator, reverse_gradient
from tfrec_dyn.layers.hstu import HSTUBlock, RelativeAttentionBias
from tfrec_dyn.layers.interest_allocator import DynamicInterestAllocator
from tfrec_dyn.layers.interest_discriminator import DynamicInterestDiscriminator, active_interests
from tfrec_dyn.layers.masks import attention_mask, causal_mask, padding_mask
from tfrec_dyn.layers.normalization import LastAxisLayerNormalization
from tfrec_dyn.layers.path_attention import PathMultiHeadAttention, PathTransformerBlock
from tfrec_dyn.layers.pathway_router import PathwayRouter
from tfrec_dyn.layers.pyramid import PrefixAttention, SegmentCell
from tfrec_dyn.layers.policy import (CategoricalPolicy, discounted_returns, orthogonality_reward, reinforce_loss,
                                     sample_action)
from tfrec_dyn.layers.subsequence_allocator import SubsequenceAllocator, curriculum_weight
from tfrec_dyn.layers.transformer import CausalTransformerBlock

__all__ = [
    "AttentionGRU",
    "BehaviorLSTMCell",
    "ByteDropout",
    "CategoricalPolicy",
    "CausalTransformerBlock",
    "DynamicInterestAllocator",
    "DynamicInterestDiscriminator",
    "HSTUBlock",
    "HeadTailDiscriminator",
    "ItemPositionEmbedding",
    "LastAxisLayerNormalization",
    "MatmulAttention",
    "PathMultiHeadAttention",
    "PathTransformerBlock",
    "PathwayRouter",
    "PrefixAttention",
    "RelativeAttentionBias",
    "SegmentCell",
    "SubsequenceAllocator",
    "active_interests",
    "attention_mask",
    "causal_mask",
    "curriculum_weight",
    "discounted_returns",
    "gumbel_noise",
    "gumbel_softmax",
    "orthogonality_reward",
    "padding_mask",
    "reinforce_loss",
    "reverse_gradient",
    "sample_action",
]
