"""RDRSR's Dynamic Interest Allocator (Shao et al., 2022, sec. 3.4, eq. 9-12)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.masks import padding_mask
from tfrec_dyn.layers.policy import CategoricalPolicy, interest_attention


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class DynamicInterestAllocator(keras.layers.Layer):
    """Allocates each item of a window to one of the user's active interests.

    An episode walks the window oldest first. At step T the state is
    s_T = W0 [Σ_j α_j p_j ; F_T ; z] with α = softmax over the active interests
    of p_j · F_T (eq. 11-12), the policy π(a | s_T) (eq. 9, a
    `CategoricalPolicy` restricted to the active interests) picks an interest –
    sampled in training, arg-max at inference – and that interest's
    representation becomes the average of its items (eq. 10).

    Every interest starts from the caller's `init` vector p^0 (RDRSR passes the
    mean item embedding of the window, standing in for the paper's user
    embedding) and that vector counts as one element of the average, so an
    interest that receives no item keeps its initial value. The window length
    is static, so the T steps are unrolled in the graph: vectorised over users,
    no Python loop over users.

    Call: `dia(items, item_ids, z, active, init, training=...)` with item
    representations F [B, T, d], ids [B, T] (0 = padding: no action), the
    count one-hot z [B, k], the active-interest mask [B, k] and p^0 [B, d].
    Returns `(interests, actions, log_probs)`: P^T [B, k, d], the interest of
    each item [B, T] (−1 at padding) and log π of each action [B, T] (0 at
    padding).

    `route(interests, vectors, z, active, training)` runs the policy for extra
    vectors [B, d] or [B, C, d] against finished interests (the target step of
    the paper's reward, or candidate items at prediction time).

    Args:
      max_interests: k, the number of actions.
      policy_hidden_dim: hidden width of the policy MLP (default d).

    Example:
    >>> dia = DynamicInterestAllocator(max_interests=3)
    >>> active = tf.constant([[1.0, 1.0, 0.0]])
    >>> interests, actions, _ = dia(tf.ones([1, 4, 8]), tf.constant([[0, 3, 4, 5]]),
    ...                             tf.constant([[0.0, 1.0, 0.0]]), active, tf.zeros([1, 8]))
    >>> interests.shape, actions.numpy()[0, 0], bool(tf.reduce_all(actions < 2))
    (TensorShape([1, 3, 8]), -1, True)
    """

    def __init__(self, max_interests=4, policy_hidden_dim=None, **kwargs):
        super().__init__(**kwargs)
        if int(max_interests) <= 0:
            raise ValueError(f"`max_interests` must be positive, got max_interests={max_interests}")
        self.max_interests = int(max_interests)
        self.policy_hidden_dim = None if policy_hidden_dim is None else int(policy_hidden_dim)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.state_projection = keras.layers.Dense(d, use_bias=False, name="state_projection",
                                                   dtype=self.dtype_policy)  # W0
        self.state_projection.build((None, 2 * d + self.max_interests))
        self.policy = CategoricalPolicy(self.max_interests, self.policy_hidden_dim, name="policy",
                                        dtype=self.dtype_policy)
        self.policy.build((None, d))
        super().build(input_shape)

    def state(self, interests, vectors, z, active):
        """s = W0 [Σ_j α_j p_j ; v ; z] for vectors [B, d] or [B, C, d]."""
        single = vectors.shape.rank == 2
        if single:
            vectors = vectors[:, tf.newaxis]
        _, context = interest_attention(tf.cast(interests, vectors.dtype), active, vectors)  # Σ_j α_j p_j, eq. 12
        z = tf.cast(z, vectors.dtype)[:, tf.newaxis] + tf.zeros_like(context[..., :1])  # one copy per vector
        state = self.state_projection(tf.concat([context, vectors, z], axis=-1))         # eq. 11
        return state[:, 0] if single else state

    def route(self, interests, vectors, z, active, training=None):
        """(action, log_prob) of the policy for vectors [B, d] or [B, C, d]."""
        state = self.state(interests, vectors, z, active)
        allowed = tf.cast(active, tf.bool)
        if vectors.shape.rank == 3:
            allowed = tf.logical_and(allowed[:, tf.newaxis], tf.ones_like(state[..., :1], tf.bool))
        action, log_prob, _ = self.policy(state, allowed, training=training)
        return action, log_prob

    def call(self, items, item_ids, z, active, init, training=None):
        valid = padding_mask(item_ids)
        init = tf.cast(init, items.dtype)[:, tf.newaxis]                                 # p^0, [B, 1, d]
        sums = tf.zeros_like(init) * tf.zeros([1, self.max_interests, 1], items.dtype)   # [B, k, d]
        counts = tf.zeros_like(sums[..., :1])                                             # [B, k, 1]
        interests = init + sums
        actions, log_probs = [], []
        # Unstacked once: a slice per step would make its gradient a whole [B, T, d] tensor each step.
        for vector, real in zip(tf.unstack(items, axis=1), tf.unstack(valid, axis=1), strict=True):  # unrolled
            action, log_prob = self.route(interests, vector, z, active, training=training)
            chosen = tf.one_hot(action, self.max_interests, dtype=items.dtype) * tf.cast(real, items.dtype)[:, None]
            sums += chosen[..., tf.newaxis] * vector[:, tf.newaxis]
            counts += chosen[..., tf.newaxis]
            interests = (init + sums) / (1.0 + counts)                                    # eq. 10
            actions.append(tf.where(real, action, -1))
            log_probs.append(tf.where(real, log_prob, 0.0))
        return interests, tf.stack(actions, axis=1), tf.stack(log_probs, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({"max_interests": self.max_interests, "policy_hidden_dim": self.policy_hidden_dim})
        return config
