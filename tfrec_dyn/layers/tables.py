"""Reading rows of an item table without reading the whole table.

Slicing a table variable (`bias[:, 0]`), casting it to another dtype (mixed
precision) or normalising it before a gather reads the whole variable: O(V·d)
per call, where the caller needed a few rows.  Worse, after a variable's
first sparse access (an embedding lookup, a sparse optimizer update)
TensorFlow keeps it in copy-on-read mode, where every whole read is a full
copy of the table: per scored chunk in serving, per training step.
`gather_rows` gathers from the variable first (a `ResourceGather` of only the
rows asked for; its gradient stays sparse), then casts.

>>> table = tf.Variable([[1., 2.], [3., 4.], [5., 6.]])
>>> gather_rows(table, [2, 0]).numpy().tolist()
[[5.0, 6.0], [1.0, 2.0]]
"""

import tensorflow as tf


def gather_rows(table, ids, dtype=tf.float32) -> tf.Tensor:
    """Rows `ids` (any shape [...]) of `table` [V, ...] (a variable or a
    tensor) as `dtype` [..., ...], never reading the rows not asked for."""
    return tf.cast(tf.gather(table, tf.cast(ids, tf.int32)), dtype)


def bias_rows(bias, ids) -> tf.Tensor:
    """float32 [...]: the entries `ids` [...] of an item bias [V] or [V, 1]."""
    return tf.reshape(gather_rows(bias, ids), tf.shape(ids))
