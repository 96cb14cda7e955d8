"""`tf.data` input pipelines for next-item training and evaluation.

Training examples follow SASRec: for a user's (encoded) training sequence
s_1..s_n the input is s_1..s_{n-1} and the target at every position is the
next item s_2..s_n; both are truncated to the last `max_len` items and left
padded with 0.  Negatives (for sampled losses) come in the layout the model's
loss asks for (`SequentialRecommender.negative_layout`): drawn per position
(`negatives` [B, L, n]) or per user (`negatives` [B, n]), uniformly or by
popularity and never an item of the user's training sequence; or shared by
the batch (`shared_negatives` [n], `shared_log_q` [n], `target_log_q` [B, L];
`SharedNegativeSampler`: uniform, popularity, in-batch or mixed).  No batch
holds anything of catalogue size.  Everything random is seeded: the same seed
gives the same batches.

Batch keys: `item_ids` [B, L], `targets` [B, L], the negatives above (when
`num_negatives > 0`), and for each requested side field its aligned
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

SAMPLERS = ("uniform", "popularity")  # per-position and per-user negatives
SHARED_SAMPLERS = SAMPLERS + ("in_batch", "mixed")  # negatives shared by a batch
NEGATIVE_LAYOUTS = ("per_position", "per_sequence", "shared")  # see the module docstring
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


def history_keys(sequences: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Every (sequence, item) pair once, as sorted int64 keys `row * vocab_size +
    item`: a set of all the histories in O(distinct interactions) memory."""
    lengths = np.fromiter((len(s) for s in sequences), np.int64, count=len(sequences))
    flat = np.concatenate([np.asarray(s, np.int64) for s in sequences] + [np.zeros(0, np.int64)])
    return np.unique(np.repeat(np.arange(len(sequences), dtype=np.int64), lengths) * vocab_size + flat)


class NegativeSampler:
    """Draws item ids (2..V-1) uniformly or by popularity, never from a history.

    `sequences` are the histories, one per row.  `sample(rows, shape, seed)`
    rejection-samples with stateless RNG: every draw that hits its row's
    history is redrawn until none does.  Membership is one binary search in
    the sorted keys of all histories (`history_keys`), so memory is the
    number of distinct interactions, whatever the longest history (a dense
    [users, longest history] matrix is 80 GB for one user with 20k items
    among 1M users).
    """

    def __init__(self, vocab_size: int, sequences: Sequence[np.ndarray], sampler: str = "uniform",
                 item_counts=None):
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
        if sampler == "popularity" and item_counts is None:
            raise ValueError("the popularity sampler needs `item_counts`")
        self.vocab_size = int(vocab_size)
        self.sampler = sampler
        keys = history_keys(sequences, vocab_size)
        if not len(keys):
            raise ValueError("the negative sampler needs the histories it keeps negatives out of; got none")
        self._keys = tf.constant(keys)
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

    def sample(self, rows: tf.Tensor, shape, seed: tf.Tensor) -> tf.Tensor:
        """rows: [B] indices into `sequences`; shape [B, ...]; seed: int64 [2]."""
        rows = tf.cast(rows, tf.int64)

        def collisions(candidates):
            flat = tf.reshape(candidates, [tf.shape(rows)[0], -1])
            keys = tf.reshape(rows[:, tf.newaxis] * self.vocab_size + tf.cast(flat, tf.int64), [-1])
            position = tf.minimum(tf.searchsorted(self._keys, keys, out_type=tf.int64),
                                  tf.size(self._keys, tf.int64) - 1)
            hit = tf.equal(tf.gather(self._keys, position), keys)
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


class SharedNegativeSampler:
    """The `num_negatives` negatives a batch shares, and the log expected counts
    of the logQ correction ("sampled_softmax").

    * "uniform": items drawn uniformly;
    * "popularity": items drawn in proportion to `item_counts`, by inverse CDF
      (O(n log V) per batch, no [V] draw);
    * "in_batch": the targets of positions drawn uniformly among the batch's
      target positions (the other users' next items), so an item is drawn in
      proportion to how often it is a target, estimated by `item_counts`;
    * "mixed": half in-batch, half uniform (mixed negative sampling, Yi et al.,
      RecSys 2019): popular items from the batch, tail items from the catalogue.

    Item j's expected number of draws is E_j = n_uniform / |I| + n_frequency p_j
    (p_j = count_j / Σ count); `log_q[j] = log E_j` is what the loss subtracts
    from j's logit, as target and as negative.  `sample(targets, seed)` returns
    (negatives [n], their log_q [n], the targets' log_q [B, L]).
    """

    def __init__(self, vocab_size: int, num_negatives: int, sampler: str = "uniform", item_counts=None):
        if sampler not in SHARED_SAMPLERS:
            raise ValueError(f"`sampler` for negatives shared by a batch must be one of {SHARED_SAMPLERS}, "
                             f"got {sampler!r}")
        if sampler != "uniform" and item_counts is None:
            raise ValueError(f"the {sampler!r} sampler needs `item_counts`")
        if num_negatives <= 0:
            raise ValueError(f"`num_negatives` must be positive, got {num_negatives}")
        self.vocab_size, self.num_negatives, self.sampler = int(vocab_size), int(num_negatives), sampler
        self.num_frequency = {"uniform": 0, "popularity": num_negatives, "in_batch": num_negatives,
                              "mixed": num_negatives // 2}[sampler]
        self.num_uniform = num_negatives - self.num_frequency
        num_items = self.vocab_size - NUM_RESERVED
        expected = np.full(num_items, self.num_uniform / num_items)
        if self.num_frequency:
            counts = np.asarray(item_counts, dtype=np.float64)[NUM_RESERVED:]
            probabilities = counts / counts.sum()
            expected += self.num_frequency * probabilities
            self._cdf = tf.constant(np.cumsum(probabilities), tf.float64)
        # Reserved ids (padding: positions without a target) get 0, never -inf; an item that is
        # never drawn gets a floor instead of -inf (it is never a negative, and a target only in data
        # the counts did not see).
        log_q = np.concatenate([np.zeros(NUM_RESERVED), np.log(np.maximum(expected, 1e-30))])
        self.log_q = tf.constant(log_q, tf.float32)

    def sample(self, targets: tf.Tensor, seed: tf.Tensor):
        targets = tf.cast(targets, tf.int32)
        parts = []
        if self.num_uniform:
            parts.append(tf.random.stateless_uniform([self.num_uniform], seed, minval=NUM_RESERVED,
                                                     maxval=self.vocab_size, dtype=tf.int32))
        if self.num_frequency:
            frequency_seed = seed + tf.constant([0, 1 << 20], seed.dtype)
            if self.sampler == "popularity":
                uniforms = tf.random.stateless_uniform([self.num_frequency], frequency_seed, dtype=tf.float64)
                index = tf.minimum(tf.searchsorted(self._cdf, uniforms, side="right"),
                                   self.vocab_size - NUM_RESERVED - 1)
                parts.append(tf.cast(index, tf.int32) + NUM_RESERVED)
            else:  # in-batch: targets at positions drawn among those that have one
                in_batch = tf.boolean_mask(tf.reshape(targets, [-1]), tf.reshape(targets, [-1]) != PAD_ID)
                picks = tf.random.stateless_uniform([self.num_frequency], frequency_seed, minval=0,
                                                    maxval=tf.shape(in_batch)[0], dtype=tf.int32)
                parts.append(tf.gather(in_batch, picks))
        negatives = tf.concat(parts, 0)
        return negatives, tf.gather(self.log_q, negatives), tf.gather(self.log_q, targets)


def training_dataset(
    sequences: Sequence[np.ndarray],
    vocab_size: int,
    max_len: int,
    batch_size: int,
    num_negatives: int = 1,
    sampler: str = "uniform",
    item_counts=None,
    negative_layout: str = "per_position",
    side: Optional[Dict[str, Sequence[np.ndarray]]] = None,
    seed: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
    epochs: Optional[range] = None,
) -> tf.data.Dataset:
    """Shuffled, batched next-item examples with negatives; see the module docstring.

    `sequences` are encoded training sequences (int arrays, oldest first);
    users with fewer than 2 items have no (input, target) pair and are left out.
    `negative_layout` ("per_position", "per_sequence" or "shared") and
    `num_negatives`, `sampler`: the negatives of the model's loss (see the
    module docstring).

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
    if negative_layout not in NEGATIVE_LAYOUTS:
        raise ValueError(f"`negative_layout` must be one of {NEGATIVE_LAYOUTS}, got {negative_layout!r}")
    shared = num_negatives > 0 and negative_layout == "shared"
    if num_negatives > 0 and not shared and sampler not in SAMPLERS:
        raise ValueError(f"the {sampler!r} negative sampler draws negatives shared by a batch: it is for "
                         f"loss='sampled_softmax'; this loss draws them {negative_layout.replace('_', ' ')} "
                         f"({' or '.join(SAMPLERS)})")
    features = {name: tf.constant(values) for name, values in features.items()}
    num_rows = len(rows)
    negative_sampler = NegativeSampler(vocab_size, [sequences[i] for i in rows], sampler, item_counts) \
        if num_negatives > 0 and not shared else None
    shared_sampler = SharedNegativeSampler(vocab_size, num_negatives, sampler, item_counts) if shared else None

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
        # Distinct from the shuffle's key: the epoch goes in the high bits, the batch in the low ones.
        batch_seed = epoch_seed * [1, 1 << 32] + [0, index + 1]
        if negative_sampler is not None:
            per_user = [tf.shape(batch["item_ids"])[0]] if negative_layout == "per_sequence" \
                else tf.unstack(tf.shape(batch["item_ids"]))
            batch["negatives"] = negative_sampler.sample(batch_rows, tf.stack(per_user + [num_negatives]), batch_seed)
        if shared_sampler is not None:
            batch["shared_negatives"], batch["shared_log_q"], batch["target_log_q"] = shared_sampler.sample(
                batch["targets"], batch_seed)
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
