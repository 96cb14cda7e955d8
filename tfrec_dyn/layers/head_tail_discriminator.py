"""The head/tail user discriminator of "transferrable parameters" (Yin et al.,
KDD 2020, sec. 3.3, eq. 9-10), with the gradient reversal that trains the
sequence encoder against it."""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.reduction import global_mean


def reverse_gradient(x, weight):
    """Identity forward; backward the gradient times −`weight`.

    Minimising D's loss through it trains D to classify while everything
    before it gets −weight · ∂(D's loss): it learns to fool D (the min-max of
    eq. 10 as one minimisation, Ganin & Lempitsky, 2015). weight 0 cuts the
    encoder off from D's loss.

    >>> x = tf.constant([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = tf.reduce_sum(3.0 * reverse_gradient(x, 0.5))
    >>> tape.gradient(y, x).numpy().tolist()
    [-1.5, -1.5]
    """
    weight = tf.cast(weight, x.dtype)

    @tf.custom_gradient
    def reverse(value):
        return tf.identity(value), lambda upstream: -weight * upstream

    return reverse(x)


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class HeadTailDiscriminator(keras.layers.Layer):
    """f_d: the logit that a sequence embedding belongs to a head user (R = 1).

    A small MLP (`hidden_units`, ReLU) and one logit. `loss(embeddings, heads)`
    returns its binary cross-entropy (the negative of eq. 9's log-likelihood, so
    the discriminator minimises it); `adversarial_weight` λ scales the
    reversed gradient the embeddings get from it (see `reverse_gradient`):
    the sequence model minimises L − λ · BCE, i.e. tries to make the
    discriminator wrong, while the discriminator minimises BCE (eq. 10).

    Example:
    >>> discriminator = HeadTailDiscriminator(hidden_units=(8,))
    >>> discriminator(tf.zeros([3, 4])).shape
    TensorShape([3])
    >>> loss, logits = discriminator.loss(tf.zeros([3, 4]), tf.constant([1.0, 0.0, 0.0]))
    >>> float(loss) > 0, logits.shape
    (True, TensorShape([3]))
    """

    def __init__(self, hidden_units=(64,), adversarial_weight=0.1, **kwargs):
        super().__init__(**kwargs)
        if float(adversarial_weight) < 0:
            raise ValueError(f"`adversarial_weight` must be >= 0, got {adversarial_weight}")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        if any(u <= 0 for u in self.hidden_units):
            raise ValueError(f"`hidden_units` must be positive, got {hidden_units}")
        self.adversarial_weight = float(adversarial_weight)

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.hidden = []
        for i, units in enumerate(self.hidden_units):
            layer = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}", dtype=self.dtype_policy)
            layer.build((None, width))
            self.hidden.append(layer)
            width = units
        self.output_layer = keras.layers.Dense(1, name="logit", dtype=self.dtype_policy)
        self.output_layer.build((None, width))
        super().build(input_shape)

    def call(self, embeddings):
        x = embeddings
        for layer in self.hidden:
            x = layer(x)
        return tf.cast(self.output_layer(x)[..., 0], tf.float32)

    def loss(self, embeddings, heads):
        """(mean BCE — the replica's share under `tf.distribute`, see
        `tfrec_dyn.layers.reduction` —, logits [N]) of head (1) / tail (0) labels [N] from
        embeddings [N, d], with the embeddings' gradient reversed and scaled
        by λ; the logits serve the caller's accuracy metric."""
        logits = self(reverse_gradient(embeddings, self.adversarial_weight))
        bce = tf.nn.sigmoid_cross_entropy_with_logits(tf.cast(heads, tf.float32), logits)
        return global_mean(bce), logits

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_units": list(self.hidden_units), "adversarial_weight": self.adversarial_weight})
        return config
