"""RETR's pathway router (Recommender Transformers with Behavior Pathways, eq. 1-5)."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.gumbel import gumbel_softmax

KEEP = 1  # index of the "route this behaviour" class of the 2-way distribution π


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class PathwayRouter(keras.layers.Layer):
    """Chooses which behaviours of a sequence a RETR block attends from.

    From the block input Z [B, L, d] and the previous layer's mask R^{l-1} [B, L]:

    1. pathway-conditioned embedding (eq. 1): Z_emb = Z + Z ⊙ MLP(mean of Z over
       the positions R^{l-1} keeps);
    2. routing distribution (eq. 2): π = softmax(MLP(Z_emb)) ∈ R^{L×2}, index 1 =
       keep;
    3. binary mask R̂ (eq. 3-4): in training a hard Gumbel-softmax sample with
       temperature τ whose backward pass uses the relaxed sample
       (straight-through), at inference the arg-max of π (deterministic);
    4. hierarchical update (eq. 5): R^l = R̂ ⊙ R^{l-1}, so a behaviour dropped by
       one layer stays dropped in every later layer; with `hierarchical=False`
       R^l = R̂ ⊙ padding (the ablation of the paper's Table 3).

    Padding positions are never routed.

    Empty pathways: when a user's sample keeps none of the behaviours it could
    keep, the mask keeps the single behaviour with the highest keep probability
    π(1) among them instead (still within R^{l-1}, so masks stay monotone). An
    all-zero mask would make eq. 1 of the next layer a 0/0 mean and leave the
    attention without any routed query; keeping the router's own favourite
    is the smallest change that avoids both.

    Unspecified in the paper, chosen here and exposed as arguments: both MLPs
    have one hidden layer of `hidden_dim` units with ReLU (default: the input
    width); the masked mean of eq. 1 divides by max(Σ R, 1).

    Keep-rate penalty (an extension, off by default): nothing in eq. 7 rewards
    dropping a behaviour, and on synthetic data where half the items carry no
    signal the router keeps them all (`tests/test_retr.py`). `keep_rate_weight`
    > 0 adds `keep_rate_weight * (kept real items / real items)` to the model's
    losses in training, so the router pays for every behaviour it keeps and
    drops the ones that do not help the next-item loss first.

    Args:
      temperature: Gumbel-softmax temperature τ (paper: 0.8).
      hierarchical: apply eq. 5 (True) or route each layer independently.
      hidden_dim: hidden width of both MLPs (default: input width d).
      keep_rate_weight: weight of the keep-rate penalty (default 0: the paper).

    Call: `router(z, previous_mask, padding_mask, training=...)` with z [B, L, d],
    previous_mask and padding_mask [B, L] (1.0 = keep / real item). Returns the
    mask R^l [B, L] (0.0 / 1.0 in z's dtype); with `return_details=True` a dict
    with `mask`, `probabilities` (π [B, L, 2]) and `soft` (the relaxed sample
    [B, L, 2]; equal to π at inference).

    Example:
    >>> router = PathwayRouter(temperature=0.8)
    >>> z = tf.random.normal([2, 5, 8])
    >>> pad = tf.constant([[0., 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    >>> router(z, pad, pad).shape
    TensorShape([2, 5])
    """

    def __init__(self, temperature=0.8, hierarchical=True, hidden_dim=None, keep_rate_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        if float(temperature) <= 0:
            raise ValueError(f"`temperature` must be positive, got temperature={temperature}")
        if float(keep_rate_weight) < 0:
            raise ValueError(f"`keep_rate_weight` must be >= 0, got keep_rate_weight={keep_rate_weight}")
        self.temperature = float(temperature)
        self.hierarchical = bool(hierarchical)
        self.hidden_dim = None if hidden_dim is None else int(hidden_dim)
        self.keep_rate_weight = float(keep_rate_weight)

    def build(self, input_shape):
        d = int(input_shape[-1])
        hidden = self.hidden_dim or d
        self.context_hidden = keras.layers.Dense(hidden, activation="relu", name="context_hidden", dtype=self.dtype_policy)
        self.context_output = keras.layers.Dense(d, name="context_output", dtype=self.dtype_policy)
        self.route_hidden = keras.layers.Dense(hidden, activation="relu", name="route_hidden", dtype=self.dtype_policy)
        self.route_output = keras.layers.Dense(2, name="route_output", dtype=self.dtype_policy)
        self.context_hidden.build((None, d))
        self.context_output.build((None, hidden))
        self.route_hidden.build(input_shape)
        self.route_output.build(tuple(input_shape[:-1]) + (hidden,))
        super().build(input_shape)

    def log_probabilities(self, z, previous_mask):
        """log π [B, L, 2] (eq. 1-2), float32."""
        weights = tf.cast(previous_mask, z.dtype)[..., tf.newaxis]
        pooled = tf.reduce_sum(z * weights, 1) / tf.maximum(tf.reduce_sum(weights, 1), 1.0)
        context = self.context_output(self.context_hidden(pooled))
        z_emb = z + z * context[:, tf.newaxis, :]
        logits = tf.cast(self.route_output(self.route_hidden(z_emb)), tf.float32)
        return tf.nn.log_softmax(logits, axis=-1)

    def call(self, z, previous_mask, padding_mask, training=None, return_details=False):
        previous_mask = tf.cast(previous_mask, tf.float32)
        padding_mask = tf.cast(padding_mask, tf.float32)
        allowed = previous_mask * padding_mask if self.hierarchical else padding_mask
        log_pi = self.log_probabilities(z, previous_mask)
        if training:
            sample, soft = gumbel_softmax(log_pi, self.temperature)
        else:
            soft = tf.exp(log_pi)
            sample = tf.one_hot(tf.argmax(log_pi, -1), 2, dtype=tf.float32)
        mask = sample[..., KEEP] * allowed
        # Empty pathway guard (see the class docstring): keep the most probable allowed behaviour.
        empty = tf.equal(tf.reduce_sum(tf.stop_gradient(mask), -1, keepdims=True), 0.0)
        favourite = tf.one_hot(tf.argmax(tf.where(allowed > 0, log_pi[..., KEEP], -1e9), -1),
                               tf.shape(mask)[-1]) * allowed
        mask = tf.where(empty, favourite, mask)
        if training and self.keep_rate_weight > 0:
            self.add_loss(self.keep_rate_weight * tf.reduce_sum(mask) / tf.maximum(tf.reduce_sum(padding_mask), 1.0))
        mask = tf.cast(mask, z.dtype)
        if return_details:
            return {"mask": mask, "probabilities": tf.exp(log_pi), "soft": soft}
        return mask

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "hierarchical": self.hierarchical,
                       "hidden_dim": self.hidden_dim,
                       "keep_rate_weight": self.keep_rate_weight})
        return config
