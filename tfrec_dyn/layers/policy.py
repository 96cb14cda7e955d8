"""Policy-gradient machinery shared by the allocation methods (RDRSR, AdaSplit).

Both methods assign each behaviour of a sequence to one of several interests
with a stochastic policy trained by REINFORCE (Williams, 1992):

* `CategoricalPolicy` – an MLP state -> logits over actions, with a mask of the
  actions allowed for each row; samples in training (Gumbel-max, so the draw
  uses the same noise as `gumbel_softmax`), takes the arg-max at inference, and
  returns the log-probability of the action it took;
* `sample_action` – that draw for logits computed elsewhere (AdaSplit scores
  each sub-sequence separately);
* `reinforce_loss` – −Σ_t log π(a_t | s_t) · (R − b), rewards held constant;
* `discounted_returns` – G_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'} over the valid steps;
* `orthogonality_reward` – −mean |p_i · p_j| over pairs of active interests;
* `interest_attention` – each vector's similarity to every interest and the
  softmax-weighted mix of the active ones, the state both policies read.
"""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.gumbel import gumbel_noise
from tfrec_dyn.layers.reduction import global_mean

# Logit given to actions a row may not take: exp() underflows to exactly 0.
_DISALLOWED = -1e9


def masked_log_softmax(logits: tf.Tensor, allowed: tf.Tensor) -> tf.Tensor:
    """log-softmax of `logits` [..., A] over the actions where `allowed` is true."""
    logits = tf.where(tf.cast(allowed, tf.bool), tf.cast(logits, tf.float32), _DISALLOWED)
    return tf.nn.log_softmax(logits, axis=-1)


def sample_action(log_probs: tf.Tensor, training=None):
    """(action [...], its log-probability [...]) from log-probabilities [..., A]:
    a Gumbel-max sample in training, the arg-max at inference."""
    if training:
        action = tf.argmax(log_probs + gumbel_noise(tf.shape(log_probs)), axis=-1, output_type=tf.int32)
    else:
        action = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
    return action, tf.gather(log_probs, action, batch_dims=len(action.shape))


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class CategoricalPolicy(keras.layers.Layer):
    """π(a | s) = softmax(W2 · ReLU(W1 s + b1) + b2) over `num_actions` actions.

    Call: `policy(state, allowed, training=...)` with state [..., d_s] and a
    boolean (or 0/1) mask `allowed` [..., A]; returns `(action, log_prob,
    log_probs)`: the action taken [...] (int32; sampled in training, arg-max at
    inference), its log-probability [...] and all log-probabilities [..., A]
    (−1e9-masked actions have probability 0).  `logits(state)` gives the raw
    logits, for actions that are scored rather than taken.

    Args:
      num_actions: A.
      hidden_dim: width of the hidden layer (default: the state width).

    Example:
    >>> policy = CategoricalPolicy(num_actions=3)
    >>> action, log_prob, _ = policy(tf.ones([2, 8]), tf.constant([[True, True, False]] * 2))
    >>> action.shape, bool(tf.reduce_all(action < 2))
    (TensorShape([2]), True)
    """

    def __init__(self, num_actions, hidden_dim=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_actions) <= 0:
            raise ValueError(f"`num_actions` must be positive, got num_actions={num_actions}")
        self.num_actions = int(num_actions)
        self.hidden_dim = None if hidden_dim is None else int(hidden_dim)

    def build(self, input_shape):
        state_dim = int(input_shape[-1])
        self.hidden = keras.layers.Dense(self.hidden_dim or state_dim, activation="relu", name="hidden",
                                         dtype=self.dtype_policy)
        self.output_layer = keras.layers.Dense(self.num_actions, name="logits", dtype=self.dtype_policy)
        self.hidden.build(input_shape)
        self.output_layer.build(tuple(input_shape[:-1]) + (self.hidden_dim or state_dim,))
        super().build(input_shape)

    def logits(self, state):
        return tf.cast(self.output_layer(self.hidden(state)), tf.float32)

    def call(self, state, allowed, training=None):
        log_probs = masked_log_softmax(self.logits(state), allowed)
        action, log_prob = sample_action(log_probs, training)
        return action, log_prob, log_probs

    def get_config(self):
        config = super().get_config()
        config.update({"num_actions": self.num_actions, "hidden_dim": self.hidden_dim})
        return config


def reinforce_loss(log_probs: tf.Tensor, rewards: tf.Tensor, mask=None, baseline=None) -> tf.Tensor:
    """REINFORCE surrogate loss, averaged over episodes (of the global batch:
    `tfrec_dyn.layers.reduction.global_mean`).

    −mean_episodes Σ_t log π(a_t) · stop_gradient(R_t − b): its gradient is the
    policy gradient of the expected reward.

    Args:
      log_probs: [N, T] log-probabilities of the actions taken (or [N]).
      rewards: [N] episode rewards (broadcast over steps) or [N, T] per-step
        returns (e.g. `discounted_returns`).
      mask: [N, T] 1 for real steps (0 = padding, no action taken).
      baseline: optional [N] or [N, T] baseline b subtracted from the rewards.

    >>> round(float(reinforce_loss(tf.math.log([[0.5, 0.5]]), tf.constant([2.0]))), 4)
    2.7726
    """
    log_probs = tf.cast(log_probs, tf.float32)
    if log_probs.shape.rank == 1:
        log_probs = log_probs[:, tf.newaxis]
    rewards = tf.cast(rewards, tf.float32)
    if baseline is not None:
        rewards = rewards - tf.cast(baseline, tf.float32)
    if rewards.shape.rank == 1:
        rewards = rewards[:, tf.newaxis]
    mask = tf.ones_like(log_probs) if mask is None else tf.cast(mask, tf.float32)
    per_episode = -tf.reduce_sum(log_probs * tf.stop_gradient(rewards) * mask, axis=-1)
    return global_mean(per_episode)


def discounted_returns(rewards: tf.Tensor, gamma: float, mask=None) -> tf.Tensor:
    """G_t = Σ_{t' ≥ t} γ^(t'−t) r_t' over each row's real steps; [N, T] -> [N, T].

    Padding steps (mask 0) get return 0 and do not pass reward backwards.

    >>> discounted_returns(tf.constant([[1.0, 0.0, 2.0]]), 0.5).numpy().tolist()
    [[1.5, 1.0, 2.0]]
    """
    rewards = tf.cast(rewards, tf.float32)
    mask = tf.ones_like(rewards) if mask is None else tf.cast(mask, tf.float32)
    rewards = rewards * mask
    # Reverse cumulative sum with decay, as a scan from the last step.
    reversed_returns = tf.scan(lambda running, step: step[0] + gamma * running * step[1],
                               (tf.transpose(tf.reverse(rewards, [1])), tf.transpose(tf.reverse(mask, [1]))),
                               initializer=tf.zeros_like(rewards[:, 0]))
    return tf.reverse(tf.transpose(reversed_returns), [1]) * mask


def orthogonality_reward(interests: tf.Tensor, active: tf.Tensor) -> tf.Tensor:
    """−mean over pairs i < j of active interests of |p_i · p_j| (RDRSR eq. 16,
    AdaSplit eq. 15); [B, k, d], [B, k] -> [B]. 0 for a single interest (no pair).

    >>> orthogonality_reward(tf.constant([[[1.0, 0.0], [1.0, 1.0]]]), tf.constant([[1.0, 1.0]])).numpy().tolist()
    [-1.0]
    """
    interests = tf.cast(interests, tf.float32)
    active = tf.cast(active, tf.float32)
    dots = tf.abs(tf.einsum("bid,bjd->bij", interests, interests))
    k = tf.shape(active)[-1]
    upper = tf.linalg.band_part(tf.ones([k, k]), 0, -1) - tf.eye(k)          # i < j
    pairs = upper[tf.newaxis] * active[:, :, tf.newaxis] * active[:, tf.newaxis, :]
    return -tf.reduce_sum(dots * pairs, [1, 2]) / tf.maximum(tf.reduce_sum(pairs, [1, 2]), 1.0)


def interest_attention(interests: tf.Tensor, active: tf.Tensor, vectors: tf.Tensor):
    """(similarity [B, C, K], context [B, C, d]) of vectors [B, C, d] and interests
    [B, K, d] of which `active` [B, K] exist: p_k · v for every k (unmasked), and
    Σ_k softmax_k(p_k · v) p_k over the active ones (RDRSR eq. 12, AdaSplit eq. 12).
    The similarity is float32, the context in the interests' dtype.

    One vector a row (an episode's step, a training target) is computed as a
    product and a sum: as a batched matmul of B tiny [1, d] x [d, K] products it
    cost AdaSplit a third of its training step on CPU (docs/performance.md,
    "AdaSplit's allocator"). Many vectors a row (candidates) are batched matmuls.

    >>> similarity, context = interest_attention(tf.constant([[[1.0, 0.0], [0.0, 1.0]]]),
    ...                                          tf.constant([[1.0, 0.0]]), tf.constant([[[2.0, 3.0]]]))
    >>> similarity.numpy().tolist(), context.numpy().tolist()
    ([[[2.0, 3.0]]], [[[1.0, 0.0]]])
    """
    vectors = tf.cast(vectors, interests.dtype)
    one = vectors.shape[1] == 1
    similarity = tf.cast(tf.reduce_sum(vectors * interests, -1)[:, tf.newaxis] if one
                         else tf.einsum("bkd,bcd->bck", interests, vectors), tf.float32)
    affinity = tf.where(tf.cast(active, tf.bool)[:, tf.newaxis], similarity, _DISALLOWED)
    weights = tf.cast(tf.nn.softmax(affinity, axis=-1), interests.dtype)
    context = (tf.reduce_sum(tf.transpose(weights, [0, 2, 1]) * interests, 1, keepdims=True) if one
               else tf.einsum("bck,bkd->bcd", weights, interests))
    return similarity, context
