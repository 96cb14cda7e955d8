"""Layer normalisation over the last axis with a hand-written gradient (same weights as Keras')."""

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class LastAxisLayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, computed in fewer passes.

    Keras normalises with `tf.nn.moments` and `tf.nn.batch_normalization` and
    lets TensorFlow differentiate them; at the epsilons of the SASRec reference
    (1e-8, below what Keras' fused kernel accepts) that is some fifteen
    element-wise passes over the activations for the forward and backward
    pass, a large share of a small transformer's step on CPU
    (docs/performance.md). This layer computes y = x̂·γ + β with
    x̂ = (x - mean) / sqrt(var + ε) and the closed-form gradient
    dx = r·(g - mean(g) - x̂·mean(g·x̂)), g = dy·γ, r = 1/sqrt(var + ε).
    Weights (`gamma`, `beta`) and arguments are Keras', so checkpoints load
    either way; half-precision inputs are normalised in float32, as Keras does.

    Args: those of `keras.layers.LayerNormalization`, with `axis` the last one
    (-1, the default).

    Example:
    >>> norm = LastAxisLayerNormalization(epsilon=1e-8)
    >>> y = norm(tf.constant([[1.0, 2.0, 3.0]]))
    >>> [round(v, 4) for v in y.numpy()[0].tolist()]
    [-1.2247, 0.0, 1.2247]
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(axis=axis, **kwargs)
        if self.axis not in (-1, [-1]):
            raise ValueError(f"LastAxisLayerNormalization normalises the last axis: leave `axis` -1, got {axis}")

    def build(self, input_shape):
        super().build(input_shape)
        # Keras records the axis as a positive index once built; keep the config as it was given.
        self.axis = [-1]

    def call(self, inputs):
        dtype = inputs.dtype
        x = tf.cast(inputs, tf.float32) if dtype in (tf.float16, tf.bfloat16) else inputs
        width = x.shape[-1]
        gamma = tf.cast(self.gamma, x.dtype) if self.gamma is not None else tf.ones([width], x.dtype)
        beta = tf.cast(self.beta, x.dtype) if self.beta is not None else tf.zeros([width], x.dtype)
        return tf.cast(_normalize(x, gamma, beta, self.epsilon), dtype)


def _normalize(x, gamma, beta, epsilon):
    @tf.custom_gradient
    def normalize(x, gamma, beta):
        centred = x - tf.reduce_mean(x, -1, keepdims=True)
        inverse_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), -1, keepdims=True) + epsilon)
        normalized = centred * inverse_std

        def gradient(upstream):
            scaled = upstream * gamma
            dx = inverse_std * (scaled - tf.reduce_mean(scaled, -1, keepdims=True)
                                - normalized * tf.reduce_mean(scaled * normalized, -1, keepdims=True))
            rows = tf.range(tf.rank(x) - 1)
            return dx, tf.reduce_sum(upstream * normalized, rows), tf.reduce_sum(upstream, rows)

        return normalized * gamma + beta, gradient

    return normalize(x, gamma, beta)
