"""Dropout whose keep mask costs one random byte an element."""

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class ByteDropout(keras.layers.Layer):
    """Inverted dropout (as `keras.layers.Dropout`) drawing its mask from random bytes.

    Keras' dropout draws one random float an element; on CPU that draw is a
    large share of a small model's step (7 % of SASRec's, docs/performance.md).
    Here one random 32-bit integer gives four elements their byte, and an
    element is kept when its byte is at least `round(rate * 256)`. So the
    rate is rounded to a multiple of 1/256 (0.5 and 0.25 exactly, 0.2 as
    51/256 = 0.199); the kept values are scaled by 1 / (1 - that rate), so the
    expected output is the input exactly, as with Keras' dropout.

    Args:
      rate: share of the elements set to zero in training, in [0, 1).
      seed: optional op seed of the random draw.

    Example:
    >>> dropout = ByteDropout(0.5)
    >>> out = dropout(tf.ones([2, 4]), training=True)
    >>> sorted(set(out.numpy().ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"`rate` must be in [0, 1), got rate={rate}")
        self.rate = float(rate)
        self.seed = seed
        # The byte value below which an element is dropped, and the kept elements' scale.
        self.threshold = min(int(round(self.rate * 256)), 255)
        self.scale = 256.0 / (256 - self.threshold)

    def call(self, inputs, training=None):
        if training is None:
            training = keras.backend.learning_phase()
        if self.threshold == 0:
            return inputs
        return tf.__internal__.smart_cond.smart_cond(
            training, lambda: self._drop(inputs), lambda: tf.identity(inputs))

    def _drop(self, inputs):
        size = tf.size(inputs)
        words = tf.random.uniform([(size + 3) // 4], minval=-2 ** 31, maxval=2 ** 31 - 1, dtype=tf.int32,
                                  seed=self.seed)
        random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:size]
        keep = tf.reshape(random_bytes >= tf.constant(self.threshold, tf.uint8), tf.shape(inputs))
        return inputs * (tf.cast(keep, inputs.dtype) * tf.constant(self.scale, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
