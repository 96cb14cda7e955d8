"""PopRec: recommend the most popular items (the baseline every comparison needs)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.vocabulary import PAD_ID
from tfrec_dyn.layers.reduction import global_mean, replica_sum
from tfrec_dyn.models.base import SequentialRecommender


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class PopRec(SequentialRecommender):
    """Scores every user's next item by how often it was a training target.

    "Training" counts targets: one pass (`fit(..., epochs=1)`) over the
    training batches fills the count table; later epochs keep adding, which
    does not change the ranking.  It has no trainable weights and ignores the
    history except to exclude already-seen items in `recommend`.

    Example:
    >>> model = PopRec(vocab_size=10, max_len=5)
    >>> model.score({"item_ids": tf.constant([[0, 2]])}).shape
    TensorShape([1, 10])
    """

    supports_jit_compile = False  # counting, not gradients: nothing for XLA to compile

    def __init__(self, vocab_size, max_len, loss="ce", **kwargs):
        super().__init__(vocab_size, max_len, loss=loss, **kwargs)
        # Every replica adds the counts summed over all replicas (`train_step`): the copies stay equal.
        self.counts = self.add_weight(name="counts", shape=(self.vocab_size,), initializer="zeros",
                                      trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def call(self, inputs, training=False):
        # Every position holds the same "user state": the popularity vector.
        item_ids = inputs["item_ids"]
        return tf.zeros(tf.concat([tf.shape(item_ids), [1]], 0))

    def score_items(self, state, item_ids):
        item_ids = tf.cast(item_ids, tf.int32)
        counts = tf.gather(self.counts, item_ids)
        if item_ids.shape.rank == 1:  # one chunk of the catalogue for every row
            counts = tf.broadcast_to(counts, tf.stack([tf.shape(state)[0], tf.size(item_ids)]))
        return counts

    def sequence_loss(self, batch, training=False):
        # Nothing to optimise; report the CE of the popularity distribution.
        targets = tf.reshape(tf.cast(batch["targets"], tf.int32), [-1])
        probs = (tf.gather(self.counts, targets) + 1.0) / (tf.reduce_sum(self.counts) + self.vocab_size)
        return global_mean(-tf.math.log(probs), tf.not_equal(targets, PAD_ID))

    def train_step(self, data):
        self(data)  # a forward pass builds the model, which saving requires
        targets = tf.reshape(tf.cast(data["targets"], tf.int32), [-1])
        counts = tf.math.bincount(targets, minlength=self.vocab_size, maxlength=self.vocab_size, dtype=tf.float32)
        self.counts.assign_add(replica_sum(counts) * tf.cast(tf.range(self.vocab_size) != PAD_ID, tf.float32))
        return self._update_trackers(self.sequence_loss(data), 0.0)
