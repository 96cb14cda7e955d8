"""Loss reduction that gives the same update under any `tf.distribute` strategy.

`tf.distribute` *sums* the replicas' gradients, so each replica's loss must be
its share of the global mean, Σ_local w·l / Σ_global w, not its local mean (that
would make every gradient R× too large with R replicas). This is what
`tf.nn.compute_average_loss` does with a global batch size; here the weight
total itself is summed across replicas, so replicas whose batches hold
different numbers of target positions still weigh every position alike, and
one step on R replicas equals one step on one device with the whole batch.

    loss = global_mean(per_position_loss, weights)   # in a train_step, any strategy

Outside a replica context (or with one replica) these are the plain mean and
sum.
"""

import tensorflow as tf


def num_replicas() -> int:
    """Replicas taking part in the current step (1 outside `strategy.run`)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_sum(value: tf.Tensor) -> tf.Tensor:
    """`value` summed over the replicas of the current step (for batch totals
    such as counts and baselines; not differentiated through)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(values: tf.Tensor, weights=None) -> tf.Tensor:
    """This replica's share of the weighted mean of `values` over the global batch.

    >>> float(global_mean(tf.constant([1.0, 3.0, 5.0]), tf.constant([1.0, 1.0, 0.0])))
    2.0
    """
    values = tf.cast(values, tf.float32)
    weights = tf.ones_like(values) if weights is None else tf.cast(weights, tf.float32)
    total = replica_sum(tf.reduce_sum(weights))
    return tf.reduce_sum(values * weights) / tf.maximum(total, 1.0)
