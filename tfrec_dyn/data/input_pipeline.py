"""`tf.data` input pipelines for next-item training and evaluation.

Two sources, one batch rule: `training_dataset` takes the training
sequences in memory; `streamed_training_dataset` takes a `UserStream`, a
`tf.data.Dataset` of users read from storage as training needs them (the
TFX Trainer's TFRecords), for data that does not fit.

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

With `pack=True` a batch's windows are packed (`pack_rows`): the same users
and positions in fewer rows R <= B, each user a segment of a row, with
`positions` [R, L] and `segments` [R, L] added, for models that take them
(`SequentialRecommender.supports_packing`).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.interactions import CATEGORICAL_SIDE_FIELDS
from tfrec_dyn.data.vocabulary import NUM_RESERVED, PAD_ID

SAMPLERS = ("uniform", "popularity")  # per-position and per-user negatives
SHARED_SAMPLERS = SAMPLERS + ("in_batch", "mixed")  # negatives shared by a batch
NEGATIVE_LAYOUTS = ("per_position", "per_sequence", "shared")  # see the module docstring
_MAX_REJECTION_ROUNDS = 100
USER_ITEMS = "items"  # a user's item sequence, in the users a batch is built from


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


def _ragged_constant(sequences: Sequence[np.ndarray], dtype) -> tf.RaggedTensor:
    """[N, None] RaggedTensor of `sequences`: their items once, no padding."""
    lengths = np.fromiter((len(s) for s in sequences), np.int64, count=len(sequences))
    flat = np.concatenate([np.asarray(s, dtype) for s in sequences] + [np.zeros(0, dtype)])
    return tf.RaggedTensor.from_row_lengths(tf.constant(flat), tf.constant(lengths))


def next_item_windows(sequences: tf.RaggedTensor, max_len: int):
    """[B, None] sequences -> (inputs, nexts) [B, max_len]: the last `max_len`
    entries of each sequence but its last, and of each but its first, left
    padded with 0. Only those 2·B·max_len entries are read, however long a
    sequence is."""
    pairs = tf.maximum(sequences.row_lengths() - 1, 0)  # (input, next) pairs of each row
    offset = tf.range(max_len, dtype=tf.int64)[tf.newaxis] - (max_len - pairs[:, tf.newaxis])
    present = offset >= 0  # left padding where the row has fewer than max_len pairs
    # The padding points at one 0 appended to the values (there may be no others).
    values = tf.concat([sequences.values, tf.zeros([1], sequences.dtype)], 0)
    padding = tf.size(sequences.values, out_type=tf.int64)
    index = sequences.row_starts()[:, tf.newaxis] + offset
    return (tf.gather(values, tf.where(present, index, padding)),
            tf.gather(values, tf.where(present, index + 1, padding)))


def _window_features(users: Dict[str, tf.RaggedTensor], max_len: int) -> Dict[str, tf.Tensor]:
    """A batch of users (`items` and side fields, [B, None] each) -> the batch
    keys of the module docstring, negatives aside."""
    features = {}
    features["item_ids"], features["targets"] = next_item_windows(users[USER_ITEMS], max_len)
    for name, values in users.items():
        if name != USER_ITEMS:
            inputs, nexts = next_item_windows(values, max_len)
            features[feature_name(name)] = inputs
            if name in CATEGORICAL_SIDE_FIELDS:
                features["next_" + feature_name(name)] = nexts
    return features


def history_keys(sequences: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Every (sequence, item) pair once, as sorted int64 keys `row * vocab_size +
    item`: a set of all the histories in O(distinct interactions) memory."""
    lengths = np.fromiter((len(s) for s in sequences), np.int64, count=len(sequences))
    flat = np.concatenate([np.asarray(s, np.int64) for s in sequences] + [np.zeros(0, np.int64)])
    return np.unique(np.repeat(np.arange(len(sequences), dtype=np.int64), lengths) * vocab_size + flat)


class NegativeSampler:
    """Draws item ids (2..V-1) uniformly or by popularity, never from a history.

    `sample(rows, shape, seed)` rejection-samples with stateless RNG: every
    draw that hits its row's history is redrawn until none does (only those
    draws, so each is uniform, or popularity-weighted, over the items
    outside its row's history). The
    histories are either `sequences` (one per row, given once) or the
    `histories` of one call ([B, None] RaggedTensor, row i for `rows` i).
    Membership is one binary search in the sorted keys `row * V + item` of
    the histories (`history_keys`), so memory is the number of distinct
    interactions, whatever the longest history (a dense [users, longest
    history] matrix is 80 GB for one user with 20k items among 1M users).
    """

    def __init__(self, vocab_size: int, sequences: Optional[Sequence[np.ndarray]] = None, sampler: str = "uniform",
                 item_counts=None):
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
        if sampler == "popularity" and item_counts is None:
            raise ValueError("the popularity sampler needs `item_counts`")
        self.vocab_size = int(vocab_size)
        self.sampler = sampler
        self._keys = None
        if sequences is not None:
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

    def sample(self, rows: tf.Tensor, shape, seed: tf.Tensor, histories: Optional[tf.RaggedTensor] = None) -> tf.Tensor:
        """rows: [B] indices into `sequences` (or `histories`); shape [B, ...]; seed: int64 [2]."""
        rows = tf.cast(rows, tf.int64)
        if histories is None:
            if self._keys is None:
                raise ValueError("this sampler was built without `sequences`: pass the batch's `histories`")
            keys = self._keys
        else:
            keys = tf.sort(histories.value_rowids() * self.vocab_size + tf.cast(histories.values, tf.int64))
        keys = tf.concat([[-1], keys], 0)  # a sentinel below every key: the search never falls off an empty set
        per_row = tf.cast(tf.reduce_prod(shape[1:]), tf.int64)

        def collisions(candidates, positions):
            """Whether each draw (flat `positions` of the batch's draws) is in its row's history."""
            wanted = tf.gather(rows, positions // per_row) * self.vocab_size + tf.cast(candidates, tf.int64)
            found = tf.minimum(tf.searchsorted(keys, wanted, out_type=tf.int64), tf.size(keys, tf.int64) - 1)
            return tf.equal(tf.gather(keys, found), wanted)

        # Only the draws that hit a history are drawn again, each round: the work after the first
        # pass is the hits', not the batch's (a few percent of it when histories are short).
        candidates = tf.reshape(self._draw(shape, seed), [-1])
        hits = tf.where(collisions(candidates, tf.range(tf.size(candidates, tf.int64))))[:, 0]

        def redraw(round_, candidates, hits):
            fresh = self._draw(tf.shape(hits), seed + tf.cast(tf.stack([0, round_ + 1]), seed.dtype))
            candidates = tf.tensor_scatter_nd_update(candidates, hits[:, tf.newaxis], fresh)
            return round_ + 1, candidates, tf.boolean_mask(hits, collisions(fresh, hits))

        def pending(round_, candidates, hits):
            return tf.logical_and(round_ < _MAX_REJECTION_ROUNDS, tf.size(hits) > 0)

        _, candidates, hits = tf.while_loop(
            pending, redraw, (tf.constant(0), candidates, hits),
            shape_invariants=(tf.TensorShape([]), candidates.shape, tf.TensorShape([None])))
        tf.debugging.assert_equal(
            tf.size(hits), 0,
            message="could not draw negatives outside a user's history: does a user have (almost) every item?")
        return tf.reshape(candidates, shape)


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


@dataclasses.dataclass(frozen=True)
class UserStream:
    """Training users read as training needs them, for data that does not fit in memory.

    `users` yields one user at a time: a dict of `items` (int32 [n], the
    user's whole training sequence, oldest first) and the side fields the
    model reads ([n] each, aligned), in a fixed order. `num_trainable`: how
    many of them have 2 or more items (the examples of an epoch).
    """

    users: tf.data.Dataset
    num_trainable: int


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
    pack: bool = False,
) -> tf.data.Dataset:
    """Shuffled, batched next-item examples with negatives; see the module docstring.

    `sequences` are encoded training sequences (int arrays, oldest first);
    users with fewer than 2 items have no (input, target) pair and are left out.
    `negative_layout` ("per_position", "per_sequence" or "shared") and
    `num_negatives`, `sampler`: the negatives of the model's loss (see the
    module docstring). The sequences are held once, unpadded; a batch pads
    only its own windows.

    Each epoch's order and negatives are a function of (`seed`, epoch number)
    alone. With `epochs=range(first, stop)` the dataset is those epochs one
    after the other (`steps_per_epoch(...)` batches each), so training that
    resumes at epoch `first` sees exactly what an uninterrupted run saw; with
    `epochs=None` every iteration over the dataset is one epoch under a fresh
    seeded epoch number.
    """
    rows = trainable_rows(sequences)
    if not rows:
        raise ValueError("no training sequence has 2 or more items: nothing to train on")
    users = {USER_ITEMS: _ragged_constant([sequences[i] for i in rows], np.int32)}
    for name, values in (side or {}).items():
        dtype = np.int32 if name in CATEGORICAL_SIDE_FIELDS else np.float32
        users[name] = _ragged_constant([values[i] for i in rows], dtype)

    def epoch_batches(epoch_seed):
        order = tf.range(len(rows), dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, epoch_seed)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        return batches.map(lambda batch_rows: {name: tf.gather(values, batch_rows) for name, values in users.items()})

    return _next_item_batches(epoch_batches, vocab_size, max_len, batch_size, num_negatives, sampler, item_counts,
                              negative_layout, seed, epochs, pack)


def streamed_training_dataset(
    stream: UserStream,
    vocab_size: int,
    max_len: int,
    batch_size: int,
    num_negatives: int = 1,
    sampler: str = "uniform",
    item_counts=None,
    negative_layout: str = "per_position",
    side_fields: Sequence[str] = (),
    seed: int = 0,
    shuffle_buffer: int = 100_000,
    drop_remainder: bool = False,
    epochs: Optional[range] = None,
    pack: bool = False,
) -> tf.data.Dataset:
    """`training_dataset` over users read from `stream` as they are needed.

    The same batches from the same users, built by the same rule; what
    differs is the order: each epoch permutes the stream's users within
    consecutive blocks of `shuffle_buffer` users (a uniform shuffle when the
    stream has no more users than that; 0: the stream's order). The
    permutation is stateless, a function of (`seed`, epoch, block), so a
    resumed run still sees what an uninterrupted one saw. (A block shuffle
    rather than `Dataset.shuffle`'s sliding buffer, whose seed TF combines
    with the global one.) Memory is one block and one batch of users,
    whatever the size of the data.
    `side_fields`: those of the stream's side fields the batches carry.
    """
    if stream.num_trainable <= 0:
        raise ValueError("no training sequence has 2 or more items: nothing to train on")
    if shuffle_buffer < 0:
        raise ValueError(f"`shuffle_buffer` must be 0 or more, got {shuffle_buffer}")
    missing = sorted(set(side_fields) - set(stream.users.element_spec))
    if missing:
        raise ValueError(f"the users of this stream have no {missing}: they have {sorted(stream.users.element_spec)}")
    trainable = stream.users.filter(lambda user: tf.size(user[USER_ITEMS]) >= 2).map(
        lambda user: {name: user[name] for name in (USER_ITEMS, *side_fields)})

    def permuted(epoch_seed, index, block):
        # Stateless, keyed apart from the negatives' seeds (whose high word is the seed itself): the
        # order is a function of (seed, epoch, block), whatever TF's global seed.
        block_seed = epoch_seed * [1, 1 << 32] + [1 << 48, index]
        order = tf.random.experimental.stateless_shuffle(tf.range(block[USER_ITEMS].nrows()), block_seed)
        return {name: tf.gather(values, order) for name, values in block.items()}

    def epoch_batches(epoch_seed):
        users = trainable
        if shuffle_buffer:
            users = users.ragged_batch(shuffle_buffer).enumerate().map(
                lambda index, block: permuted(epoch_seed, index, block)).unbatch()
        return users.ragged_batch(batch_size, drop_remainder=drop_remainder)

    dataset = _next_item_batches(epoch_batches, vocab_size, max_len, batch_size, num_negatives, sampler,
                                 item_counts, negative_layout, seed, epochs, pack)
    # Replicas and workers split batches, not files: a worker reading a subset of the files would
    # count another number of batches than the steps of an epoch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _next_item_batches(epoch_batches, vocab_size, max_len, batch_size, num_negatives, sampler, item_counts,
                       negative_layout, seed, epochs, pack=False) -> tf.data.Dataset:
    """The batches of both sources: `epoch_batches(epoch_seed)` gives one
    epoch's batches of users ({`items`, side fields: [B, None]}); this adds
    their windows and negatives (and with `pack`, packs them: `pack_rows`),
    and strings the epochs together."""
    if batch_size <= 0 or max_len <= 0:
        raise ValueError(f"`batch_size` and `max_len` must be positive, got {batch_size}, {max_len}")
    if negative_layout not in NEGATIVE_LAYOUTS:
        raise ValueError(f"`negative_layout` must be one of {NEGATIVE_LAYOUTS}, got {negative_layout!r}")
    if pack and num_negatives > 0 and negative_layout == "per_sequence":
        raise ValueError("per-user negatives ([B, n]) cannot be packed: train without packing")
    shared = num_negatives > 0 and negative_layout == "shared"
    if num_negatives > 0 and not shared and sampler not in SAMPLERS:
        raise ValueError(f"the {sampler!r} negative sampler draws negatives shared by a batch: it is for "
                         f"loss='sampled_softmax'; this loss draws them {negative_layout.replace('_', ' ')} "
                         f"({' or '.join(SAMPLERS)})")
    negative_sampler = NegativeSampler(vocab_size, None, sampler, item_counts) \
        if num_negatives > 0 and not shared else None
    shared_sampler = SharedNegativeSampler(vocab_size, num_negatives, sampler, item_counts) if shared else None

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        return epoch_batches(epoch_seed).enumerate().map(lambda index, users: make_batch(epoch_seed, index, users),
                                                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def make_batch(epoch_seed, index, users):
        batch = _window_features(users, max_len)
        # Distinct from the shuffle's key: the epoch goes in the high bits, the batch in the low ones.
        batch_seed = epoch_seed * [1, 1 << 32] + [0, index + 1]
        if negative_sampler is not None:
            per_user = [tf.shape(batch["item_ids"])[0]] if negative_layout == "per_sequence" \
                else tf.unstack(tf.shape(batch["item_ids"]))
            histories = users[USER_ITEMS]  # the whole training sequence, not only the window
            batch["negatives"] = negative_sampler.sample(tf.range(histories.nrows()), tf.stack(per_user + [num_negatives]),
                                                         batch_seed, histories=histories)
        if shared_sampler is not None:
            batch["shared_negatives"], batch["shared_log_q"], batch["target_log_q"] = shared_sampler.sample(
                batch["targets"], batch_seed)
        return pack_rows(batch) if pack else batch

    if epochs is None:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        keys = keys.map(lambda key: key % (1 << 30))
    else:
        keys = tf.data.Dataset.range(epochs.start, epochs.stop)
    return keys.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def pack_rows(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """A batch of left-padded windows packed into as few rows as hold them.

    Short windows leave most of a batch padding (on a log of 9 events a user
    and max_len 50, 86 % of the positions), and every layer computes on the
    padding too. Here each user's window (its real positions) becomes a
    segment of a row of the same length L, rows filled first-fit by
    decreasing window length, so R <= B rows hold the B users. Every tensor
    of rank >= 2 is one of [B, L, ...] (`item_ids`, `targets`, per-position
    negatives, `target_log_q`, side-field windows) and is packed the same
    way; rank-1 ones (a batch's shared negatives) are kept. Added:
    `positions` [R, L], each item's column in its unpacked window (so a model
    embeds the positions it would have embedded unpacked), and `segments`
    [R, L], 1 + the user's row in the unpacked batch (0: padding), which a
    model's attention must not cross. Per-user negatives ([B, n]) cannot be
    packed; nor are batches whose windows are not left padded.

    >>> packed = pack_rows({"item_ids": tf.constant([[0, 0, 5, 6], [0, 0, 0, 7], [0, 8, 9, 4]]),
    ...                     "targets": tf.constant([[0, 0, 6, 3], [0, 0, 0, 2], [0, 9, 4, 3]])})
    >>> packed["item_ids"].numpy().tolist(), packed["segments"].numpy().tolist()
    ([[8, 9, 4, 7], [5, 6, 0, 0]], [[3, 3, 3, 2], [1, 1, 0, 0]])
    >>> packed["positions"].numpy().tolist()
    [[1, 2, 3, 3], [2, 3, 0, 0]]
    """
    item_ids = batch["item_ids"]
    real = tf.not_equal(item_ids, PAD_ID)
    num_users, length = tf.shape(item_ids)[0], tf.shape(item_ids)[1]
    lengths = tf.reduce_sum(tf.cast(real, tf.int32), 1)
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)

    def place(state, window):  # state: room left in each row (rows opened in order), and the last placement
        room, _, _ = state
        row = tf.argmax(tf.cast(room >= window, tf.int32), output_type=tf.int32)  # the first with room
        return tf.tensor_scatter_nd_sub(room, [[row]], [window]), row, length - room[row]

    _, rows, offsets = tf.scan(place, tf.gather(lengths, order),
                               initializer=(tf.fill([num_users], length), tf.constant(0), tf.constant(0)))
    rows = tf.scatter_nd(order[:, tf.newaxis], rows, [num_users])  # back to the batch's order
    offsets = tf.scatter_nd(order[:, tf.newaxis], offsets, [num_users])
    num_rows = tf.reduce_max(rows) + 1
    source = tf.cast(tf.where(real), tf.int32)  # [N, 2]: (user, column) of every real position
    user, column = source[:, 0], source[:, 1]
    destination = tf.stack([tf.gather(rows, user),
                            tf.gather(offsets, user) + column - (length - tf.gather(lengths, user))], 1)

    def packed(values):
        shape = tf.concat([[num_rows, length], tf.shape(values)[2:]], 0)
        return tf.scatter_nd(destination, tf.gather_nd(values, source), shape)

    result = {key: packed(value) if value.shape.rank >= 2 else value for key, value in batch.items()}
    result["positions"] = tf.scatter_nd(destination, column, [num_rows, length])
    result["segments"] = tf.scatter_nd(destination, user + 1, [num_rows, length])
    return result


def steps_per_epoch(sequences, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one epoch of `training_dataset` over `sequences` (or of
    `streamed_training_dataset` over a `UserStream`)."""
    examples = sequences.num_trainable if isinstance(sequences, UserStream) else len(trainable_rows(sequences))
    return examples // batch_size if drop_remainder else -(-examples // batch_size)
