"""Loops over the item catalogue in fixed-size chunks, inside the graph.

Ranking a user against a catalogue of a million items must not build a
[users, items] tensor: these loops visit the ids `start..stop-1` a chunk at a
time (a `tf.while_loop`, not an unrolled Python loop, so a graph or a
SavedModel holds one copy of the chunk's ops whatever the catalogue size) and
keep only what the caller folds out of each chunk: counts for a rank, a
running top-k for a recommendation list.  Memory is O(rows × chunk).

>>> scores = tf.constant([[1., 9., 4., 7., 2.]])
>>> values, ids = top_k_over_chunks(lambda ids: tf.gather(scores, ids, axis=1), rows=1,
...                                 start=0, stop=5, k=2, chunk_size=2)
>>> ids.numpy().tolist(), values.numpy().tolist()
([[1, 3]], [[9.0, 7.0]])
"""

import tensorflow as tf


def _loose(structure):
    """Shape invariants: every dimension of every tensor may change between chunks."""
    return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), structure)


def fold_chunks(step, initial, start, stop, chunk_size):
    """Folds `state = step(ids, state)` over ids `start..stop-1` in chunks of at
    most `chunk_size` (an int, or an int32 scalar tensor chosen at run time)
    consecutive int32 ids [c]; returns the final state.

    Chunks are visited one after the other (`parallel_iterations=1`): the
    point is bounded memory, and each chunk's matmul is multi-threaded anyway.
    """
    start = tf.convert_to_tensor(start, tf.int32)
    stop = tf.convert_to_tensor(stop, tf.int32)
    if not tf.is_tensor(chunk_size):
        chunk_size = int(chunk_size)
        if chunk_size <= 0:
            raise ValueError(f"`chunk_size` must be positive, got {chunk_size}")

    def body(first, state):
        ids = tf.range(first, tf.minimum(first + chunk_size, stop))
        return first + chunk_size, step(ids, state)

    _, state = tf.while_loop(lambda first, _: first < stop, body, (start, initial),
                             shape_invariants=(start.shape, _loose(initial)), parallel_iterations=1)
    return state


def top_k_over_chunks(score_chunk, rows, start, stop, k, chunk_size):
    """The k best ids of `start..stop-1` for each row, by `score_chunk(ids [c])` -> [rows, c].

    Returns (values float32 [rows, k], ids int32 [rows, k]), best first; equal
    scores go to the smaller id (as one `tf.math.top_k` over all columns
    would); slots left when fewer than k ids score above -inf hold -inf and
    id -1.  The running top-k is merged with each chunk's scores, so the cost
    is O(rows × (k + chunk)) memory.
    """
    k = tf.convert_to_tensor(k, tf.int32)
    step = lambda ids, best: merge_top_k(best, ids, score_chunk(ids), k)  # noqa: E731
    return fold_chunks(step, empty_top_k(rows, k), start, stop, chunk_size)


def empty_top_k(rows, k):
    """The running top-k before any chunk: (values -inf [rows, k], ids -1 [rows, k])."""
    shape = tf.stack([rows, k])
    return tf.fill(shape, tf.constant(-float("inf"))), tf.fill(shape, -1)


def merge_top_k(best, ids, scores, k):
    """The running top-k `best` (values, ids) merged with a chunk's `scores`
    [rows, c] of `ids` [c], which follow every id seen before."""
    values, best_ids = best
    scores = tf.cast(scores, tf.float32)
    # The running best come first: on equal values top_k keeps the earlier column, the smaller id.
    merged_values = tf.concat([values, scores], 1)
    merged_ids = tf.concat([best_ids, tf.broadcast_to(ids[tf.newaxis], tf.shape(scores))], 1)
    top = tf.math.top_k(merged_values, k=k)
    return top.values, tf.gather(merged_ids, top.indices, batch_dims=1)
