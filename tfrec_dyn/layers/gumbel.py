"""Straight-through Gumbel-softmax (Jang et al., 2017; Maddison et al., 2017).

Shared by the methods that make discrete choices inside a differentiable
model: RETR's pathway router (keep / drop each behaviour) and RDRSR's interest
discriminator (how many interests a user has).
"""

import tensorflow as tf


def gumbel_noise(shape, dtype=tf.float32) -> tf.Tensor:
    """Standard Gumbel samples G = -log(-log U), U ~ Uniform(0, 1)."""
    uniform = tf.random.uniform(shape, minval=1e-10, maxval=1.0, dtype=dtype)
    return -tf.math.log(-tf.math.log(uniform))


def gumbel_softmax(logits: tf.Tensor, temperature, noise=None, hard: bool = True):
    """Samples from the categorical of `logits` [..., K] (unnormalised log-probabilities).

    Returns `(sample, soft)`:
      * `soft` = softmax((logits + G) / temperature), the relaxed sample (eq. 4 of
        the RETR paper);
      * `sample` = one-hot arg-max of `logits + G` (eq. 3) when `hard`, with the
        gradient of `soft` (straight-through estimator); `soft` itself otherwise.

    Args:
      logits: [..., K] log-probabilities (log π) or any unnormalised logits.
      temperature: τ > 0; small τ makes `soft` close to one-hot.
      noise: optional Gumbel noise of the same shape (tests pass a fixed draw);
        drawn with `gumbel_noise` when None.
      hard: one-hot forward pass with straight-through gradients.

    >>> sample, soft = gumbel_softmax(tf.math.log([[0.3, 0.7]]), 0.8, noise=tf.zeros([1, 2]))
    >>> sample.numpy().tolist()
    [[0.0, 1.0]]
    """
    logits = tf.convert_to_tensor(logits)
    if noise is None:
        noise = gumbel_noise(tf.shape(logits), logits.dtype)
    perturbed = logits + tf.cast(noise, logits.dtype)
    soft = tf.nn.softmax(perturbed / tf.cast(temperature, logits.dtype), axis=-1)
    if not hard:
        return soft, soft
    one_hot = tf.one_hot(tf.argmax(perturbed, axis=-1), tf.shape(logits)[-1], dtype=logits.dtype)
    # (soft - stop_gradient(soft)) is exactly 0 forward, so the sample is exactly one-hot.
    return one_hot + (soft - tf.stop_gradient(soft)), soft
