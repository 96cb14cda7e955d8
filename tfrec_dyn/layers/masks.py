"""Padding and causal masks for left-padded item sequences.

Conventions used across the library: item id 0 is padding, sequences are left
padded (the most recent item is always at the last position), and a boolean
mask is True where a position may be used.
"""

import tensorflow as tf

from tfrec_dyn.data.vocabulary import PAD_ID


def padding_mask(item_ids: tf.Tensor) -> tf.Tensor:
    """True where `item_ids` holds a real (non-padding) id. Shape as `item_ids`.

    >>> padding_mask(tf.constant([[0, 5, 7]])).numpy().tolist()
    [[False, True, True]]
    """
    return tf.not_equal(item_ids, PAD_ID)


def causal_mask(length) -> tf.Tensor:
    """[length, length] boolean; entry (i, j) is True when query i may see key j <= i."""
    return tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)


def attention_mask(item_ids: tf.Tensor, causal: bool = True, segments=None) -> tf.Tensor:
    """[B, L, L] mask for `MultiHeadAttention(attention_mask=...)`.

    Query i may attend key j when j is a real item and (if `causal`) j <= i,
    and, in packed rows (`segments` [B, L], see
    `tfrec_dyn.data.input_pipeline.pack_rows`), j is in i's segment.
    Rows of padding queries only see other padding-free keys to their left, i.e.
    nothing; their outputs are zeroed by the caller with `padding_mask`.
    """
    keys = padding_mask(item_ids)[:, tf.newaxis, :]  # [B, 1, L]
    if segments is not None:
        keys = tf.logical_and(keys, tf.equal(segments[:, :, tf.newaxis], segments[:, tf.newaxis, :]))
    if not causal:
        return tf.broadcast_to(keys, [tf.shape(item_ids)[0], tf.shape(item_ids)[1], tf.shape(item_ids)[1]])
    return tf.logical_and(keys, causal_mask(tf.shape(item_ids)[1])[tf.newaxis])
