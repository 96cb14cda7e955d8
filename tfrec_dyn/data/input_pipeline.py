"""`tf.data` input pipelines for next-item training and evaluation.

Training examples follow SASRec: for a user's (encoded) training sequence
s_1..s_n the input is s_1..s_{n-1} and the target at every position is the
next item s_2..s_n; both are truncated to the last `max_len` items and left
padded with 0.  Negatives (for sampled losses) are drawn per position,
uniformly or by popularity, and are never an item of the user's training
sequence.  Everything random is seeded: the same seed gives the same batches.

Batch keys: `item_ids` [B, L], `targets` [B, L], `negatives` [B, L, n]
(when `num_negatives > 0`), and for each requested side field its aligned
input window (`behavior_ids`, `category_ids` for categorical fields; the field
name for numeric ones) and, for categorical fields, the next event's value at
every position (`next_category_ids`: what HUP's category level predicts).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.interactions import CATEGORICAL_SIDE_FIELDS
from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID

SAMPLERS = ("uniform", "popularity")
_MAX_REJECTION_ROUNDS = 100


def feature_name(side_field: str) -> str:
    """Model input name of a side field (`behavior` -> `behavior_ids`)."""
    return f"{side_field}_ids" if side_field in CATEGORICAL_SIDE_FIELDS else side_field


def pad_left(sequences: Sequence[np.ndarray], length: int, dtype=np.int32, value=PAD_ID) -> np.ndarray:
    """[N, length] array of the last `length` entries of each sequence, left padded."""
    out = np.full((len(sequences), length), value, dtype=dtype)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq)[-length:] if length else np.asarray(seq)[:0]
        if len(tail):
            out[row, length - len(tail):] = tail
    return out


def trainable_rows(sequences: Sequence[np.ndarray]) -> List[int]:
    """Indices of the sequences with an (input, target) pair: 2 or more items."""
    return [i for i, s in enumerate(sequences) if len(s) >= 2]


def next_item_arrays(sequences: Sequence[np.ndarray], max_len: int, side: Optional[Dict[str, Sequence[np.ndarray]]] = None):
    """Input/target arrays for every user with at least 2 items.

    Returns (features dict, kept row indices).  Features: `item_ids` and
    `targets` [U, max_len] plus each side field's input window (and its
    `next_` window for categorical fields).
    """
    rows = trainable_rows(sequences)
    features = {
        "item_ids": pad_left([sequences[i][:-1] for i in rows], max_len),
        "targets": pad_left([sequences[i][1:] for i in rows], max_len),
    }
    for name, seqs in (side or {}).items():
        dtype = np.int32 if name in CATEGORICAL_SIDE_FIELDS else np.float32
        features[feature_name(name)] = pad_left([seqs[i][:-1] for i in rows], max_len, dtype=dtype)
        if name in CATEGORICAL_SIDE_FIELDS:
            features["next_" + feature_name(name)] = pad_left([seqs[i][1:] for i in rows], max_len, dtype=dtype)
    return features, rows


def _sorted_histories(sequences: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Each user's distinct items sorted ascending, right padded with `vocab_size`
    (larger than any id), for `tf.searchsorted` membership tests."""
    uniques = [np.unique(s) for s in sequences]
    width = max([len(u) for u in uniques] + [1])
    out = np.full((len(uniques), width), vocab_size, dtype=np.int32)
    for row, u in enumerate(uniques):
        out[row, : len(u)] = u
    return out


class NegativeSampler:
    """Draws item ids (2..V-1) uniformly or by popularity, never from a history.

    `sample(histories, shape, seed)` rejection-samples with stateless RNG: every
    draw that hits the user's (sorted) history is redrawn until none does.
    """

    def __init__(self, vocab_size: int, sampler: str = "uniform", item_counts=None):
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
        if sampler == "popularity" and item_counts is None:
            raise ValueError("the popularity sampler needs `item_counts`")
        self.vocab_size = int(vocab_size)
        self.sampler = sampler
        if sampler == "popularity":
            counts = np.asarray(item_counts, dtype=np.float64)[NUM_RESERVED:]
            with np.errstate(divide="ignore"):
                self._log_probs = tf.constant(np.log(counts / counts.sum())[np.newaxis], tf.float32)

    def _draw(self, shape, seed):
        if self.sampler == "uniform":
            return tf.random.stateless_uniform(shape, seed, minval=NUM_RESERVED, maxval=self.vocab_size,
                                               dtype=tf.int32)
        flat = tf.random.stateless_categorical(self._log_probs, tf.reduce_prod(shape), seed, dtype=tf.int32)
        return tf.reshape(flat, shape) + NUM_RESERVED

    def sample(self, histories: tf.Tensor, shape, seed: tf.Tensor) -> tf.Tensor:
        """histories: sorted [B, H] (padded with vocab_size); shape [B, ...]; seed: int64 [2]."""
        batch = tf.shape(histories)[0]

        def collisions(candidates):
            flat = tf.reshape(candidates, [batch, -1])
            position = tf.minimum(tf.searchsorted(histories, flat), tf.shape(histories)[1] - 1)
            hit = tf.equal(tf.gather(histories, position, batch_dims=1), flat)
            return tf.reshape(hit, tf.shape(candidates))

        def redraw(round_, candidates):
            fresh = self._draw(shape, seed + tf.cast(tf.stack([0, round_ + 1]), seed.dtype))
            return round_ + 1, tf.where(collisions(candidates), fresh, candidates)

        def pending(round_, candidates):
            return tf.logical_and(round_ < _MAX_REJECTION_ROUNDS, tf.reduce_any(collisions(candidates)))

        _, candidates = tf.while_loop(pending, redraw, (tf.constant(0), self._draw(shape, seed)))
        tf.debugging.assert_equal(
            tf.reduce_any(collisions(candidates)), False,
            message="could not draw negatives outside a user's history: does a user have (almost) every item?")
        return candidates


def training_dataset(
    sequences: Sequence[np.ndarray],
    vocab_size: int,
    max_len: int,
    batch_size: int,
    num_negatives: int = 1,
    sampler: str = "uniform",
    item_counts=None,
    side: Optional[Dict[str, Sequence[np.ndarray]]] = None,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
    epochs: Optional[range] = None,
) -> tf.data.Dataset:
    """Shuffled, batched next-item examples with negatives; see the module docstring.

    `sequences` are encoded training sequences (int arrays, oldest first);
    users with fewer than 2 items have no (input, target) pair and are left out.

    Each epoch's order and negatives are a function of (`seed`, epoch number)
    alone. With `epochs=range(first, stop)` the dataset is those epochs one
    after the other (`steps_per_epoch(...)` batches each), so training that
    resumes at epoch `first` sees exactly what an uninterrupted run saw; with
    `epochs=None` every iteration over the dataset is one epoch under a fresh
    seeded epoch number.
    """
    if batch_size <= 0 or max_len <= 0:
        raise ValueError(f"`batch_size` and `max_len` must be positive, got {batch_size}, {max_len}")
    features, rows = next_item_arrays(sequences, max_len, side)
    if not rows:
        raise ValueError("no training sequence has 2 or more items: nothing to train on")
    if num_negatives > 0:
        features["history"] = _sorted_histories([sequences[i] for i in rows], vocab_size)
    features = {name: tf.constant(values) for name, values in features.items()}
    num_rows = len(rows)
    negative_sampler = NegativeSampler(vocab_size, sampler, item_counts) if num_negatives > 0 else None

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.range(num_rows, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, epoch_seed)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        return batches.enumerate().map(lambda index, rows_: make_batch(epoch_seed, index, rows_),
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def make_batch(epoch_seed, index, batch_rows):
        batch = {name: tf.gather(values, batch_rows) for name, values in features.items()}
        if negative_sampler is not None:
            history = batch.pop("history")
            shape = tf.concat([tf.shape(batch["item_ids"]), [num_negatives]], 0)
            # Distinct from the shuffle's key: the epoch goes in the high bits, the batch in the low ones.
            batch["negatives"] = negative_sampler.sample(history, shape,
                                                         epoch_seed * [1, 1 << 32] + [0, index + 1])
        return batch

    if epochs is None:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        keys = keys.map(lambda key: key % (1 << 30))
    else:
        keys = tf.data.Dataset.range(epochs.start, epochs.stop)
    return keys.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(sequences: Sequence[np.ndarray], batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one epoch of `training_dataset` over `sequences`."""
    examples = len(trainable_rows(sequences))
    return examples // batch_size if drop_remainder else -(-examples // batch_size)
