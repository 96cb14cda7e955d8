"""Episodes of the allocation models (RDRSR, AdaSplit): windows of a sequence's items."""

import tensorflow as tf

from tfrec_dyn.data.vocabulary import PAD_ID
from tfrec_dyn.layers.tables import gather_rows

# Candidates scored at a time by the allocation models' policy scoring, which
# routes every candidate (rows × chunk × interests × hidden units).
POLICY_CHUNK = 1024


def episode_windows(item_ids: tf.Tensor, targets: tf.Tensor, window_len: int):
    """One episode per position that has a target: (windows [N, t], targets [N], keep [B·L]).

    The window of position p holds the t items up to and including p (left
    padded with 0); positions whose target is padding are dropped. Built in
    the graph, so a batch of B sequences of length L gives up to B·L episodes
    without a Python loop.

    >>> windows, targets, _ = episode_windows(tf.constant([[0, 3, 4]]), tf.constant([[0, 4, 5]]), 2)
    >>> windows.numpy().tolist(), targets.numpy().tolist()
    ([[0, 3], [3, 4]], [4, 5])
    """
    item_ids = tf.cast(item_ids, tf.int32)
    targets = tf.reshape(tf.cast(targets, tf.int32), [-1])
    padded = tf.pad(item_ids, [[0, 0], [window_len - 1, 0]])
    windows = tf.reshape(tf.signal.frame(padded, window_len, 1, axis=1), [-1, window_len])
    keep = tf.not_equal(targets, PAD_ID)
    return tf.boolean_mask(windows, keep), tf.boolean_mask(targets, keep), keep


def last_window(item_ids: tf.Tensor, window_len: int) -> tf.Tensor:
    """[B, t]: the last t items of each row of [B, L], left padded with 0 when L < t.

    >>> last_window(tf.constant([[0, 3, 4]]), 2).numpy().tolist(), last_window(tf.constant([[3]]), 2).numpy().tolist()
    ([[3, 4]], [[0, 3]])
    """
    item_ids = tf.cast(item_ids, tf.int32)
    padded = tf.concat([tf.zeros([tf.shape(item_ids)[0], window_len], tf.int32), item_ids], 1)
    return tf.ensure_shape(padded[:, -window_len:], [None, window_len])


def window_groups(model, inputs) -> dict:
    """Inference-time grouping of each row's last `model.window_len` items by an
    allocation model (RDRSR's interests, AdaSplit's sub-sequences): `count` [B]
    (groups used), `assignment` [B, t] (0-based group of each item, −1 at
    padding) and `item_ids` [B, t]. The model's call returns `active` [B, K]
    and `actions` [B, t]."""
    if not isinstance(inputs, dict):
        inputs = {"item_ids": inputs}
    episode = model(inputs, training=False)
    return {"count": tf.cast(tf.reduce_sum(episode["active"], -1), tf.int32), "assignment": episode["actions"],
            "item_ids": last_window(inputs["item_ids"], model.window_len)}


class EpisodeScoring:
    """Scoring of the allocation models (RDRSR, AdaSplit), mixed in before
    `SequentialRecommender`: the user state is the episode of the last window
    (`call`), and `_scores(episode, vectors)` scores candidate vectors [C, d]
    shared by every row or [N, C, d] per row."""

    def user_state(self, inputs, training=False):
        return self(inputs, training=training)

    def score_items(self, state, item_ids):
        return self._scores(state, gather_rows(self._table(), item_ids))

    @property
    def score_chunk_size(self):
        """Candidates scored at a time: policy scoring routes each one."""
        return POLICY_CHUNK if self.scoring == "policy" else None
