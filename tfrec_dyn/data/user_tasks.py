"""Per-user training tasks for meta-learning trainers ("transferrable
parameters", Yin et al., KDD 2020, sec. 3.1-3.2).

A user's task is every (window, next items) pair of their sequence. One
element of `user_task_dataset` is one outer iteration: `inner_steps` mini-
batches, each of `windows_per_user` windows from each of `users_per_step`
users drawn at random:

    item_ids [k, u·b, L], targets [k, u·b, L], heads [k, u·b] (1 = head user),
    negatives [k, u·b, L, n] (when the loss samples them)

How it stays cheap with millions of users: every sequence is concatenated
into one flat id array with row offsets, built once; each element then
draws users and window ends with stateless random ops and gathers the
windows from the flat array, all inside the `tf.data` graph. Nothing
iterates over users in Python, and memory is the interactions themselves
(plus the sorted distinct items per user when negatives are sampled).

A window ending at position e (1 ≤ e < n, e drawn uniformly) holds items
e − L … e − 1 (left padded with 0) and the targets e − L + 1 … e: the same
"next item at every position" examples as `training_dataset`, from anywhere
in the sequence rather than only its end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tfrec_dyn.data.input_pipeline import NegativeSampler, trainable_rows
from tfrec_dyn.data.vocabulary import PAD_ID


def user_task_dataset(sequences: Sequence[np.ndarray], heads: Sequence[bool], vocab_size: int, max_len: int,
                      inner_steps: int = 2, users_per_step: int = 1, windows_per_user: int = 16,
                      num_negatives: int = 0, sampler: str = "uniform", item_counts=None,
                      seed: int = 0, first_step: int = 0, negative_layout: str = "per_position") -> tf.data.Dataset:
    """An endless dataset of outer iterations (see the module docstring).

    `sequences`: encoded training sequences; `heads`: whether each sequence's
    user is a head user. Users with fewer than 2 items have no window and are
    never drawn. `negative_layout`: the model's (`negatives` [.., L, n] per
    position, or [.., n] per window for "per_sequence" losses such as "gbce").
    """
    if negative_layout not in ("per_position", "per_sequence"):
        raise ValueError(f"the transferrable-parameters trainer draws negatives per position or per user, not "
                         f"{negative_layout!r}: use a loss such as 'bce' or 'gbce' with it")
    if len(sequences) != len(heads):
        raise ValueError(f"`heads` must have one entry per sequence: {len(heads)} for {len(sequences)} sequences")
    for name, value in (("inner_steps", inner_steps), ("users_per_step", users_per_step),
                        ("windows_per_user", windows_per_user), ("max_len", max_len)):
        if int(value) <= 0:
            raise ValueError(f"`{name}` must be positive, got {name}={value}")
    rows = trainable_rows(sequences)
    if not rows:
        raise ValueError("no training sequence has 2 or more items: nothing to train on")
    kept = [np.asarray(sequences[i], np.int32) for i in rows]
    lengths = np.array([len(s) for s in kept], np.int32)
    flat = tf.constant(np.concatenate(kept))
    starts = tf.constant(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32))
    lengths_t = tf.constant(lengths)
    heads_t = tf.constant(np.asarray(heads, np.float32)[rows])
    negative_sampler = NegativeSampler(vocab_size, kept, sampler, item_counts) if num_negatives > 0 else None
    num_users = len(rows)
    k, u, b, length = int(inner_steps), int(users_per_step), int(windows_per_user), int(max_len)

    def outer_iteration(step):
        step_seed = tf.stack([tf.constant(seed, tf.int64), step])
        users = tf.random.stateless_uniform([k, u], step_seed, 0, num_users, tf.int32)
        # Window ends e in 1..n-1 for each of the b windows of each drawn user.
        fractions = tf.random.stateless_uniform([k, u, b], step_seed + [0, 1 << 40])
        span = tf.cast(tf.gather(lengths_t, users) - 1, tf.float32)[..., tf.newaxis]
        ends = 1 + tf.minimum(tf.cast(fractions * span, tf.int32), tf.cast(span, tf.int32) - 1)
        positions = ends[..., tf.newaxis] + tf.range(-length, 0)                      # [k, u, b, L] inputs
        offsets = tf.gather(starts, users)[..., tf.newaxis, tf.newaxis]
        present = positions >= 0
        item_ids = tf.where(present, tf.gather(flat, offsets + tf.maximum(positions, 0)), PAD_ID)
        targets = tf.where(present, tf.gather(flat, offsets + tf.maximum(positions, 0) + 1), PAD_ID)
        element = {
            "item_ids": tf.reshape(item_ids, [k, u * b, length]),
            "targets": tf.reshape(targets, [k, u * b, length]),
            "heads": tf.reshape(tf.broadcast_to(tf.gather(heads_t, users)[..., tf.newaxis], [k, u, b]), [k, u * b]),
        }
        if negative_sampler is not None:
            per_window = [length] if negative_layout == "per_position" else []  # "per_sequence": [n] a window
            negatives = negative_sampler.sample(tf.reshape(users, [k * u]),
                                                [k * u, b] + per_window + [num_negatives], step_seed + [0, 2 << 40])
            element["negatives"] = tf.reshape(negatives, [k, u * b] + per_window + [num_negatives])
        return element

    # Outer iteration i is a function of (seed, i) alone: training resumed at `first_step` sees what it would have.
    counter = tf.data.Dataset.counter(start=first_step, dtype=tf.int64)
    return counter.map(outer_iteration, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
