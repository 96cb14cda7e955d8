"""Optimizers, chosen by name in `TrainConfig.optimizer`.

Keras' Adam turns a sparse gradient (the rows of an item table a batch
touched) into dense work: it decays both moment slots of every row and
updates every row, each step, so a step's cost grows with the catalogue
(at 600k items, about ten passes over three 156 MB tables per step).
`LazyAdam` updates only the rows in the gradient: their moments, then the
rows themselves, as TensorFlow Addons' LazyAdam and the sparse Adam of
embedding libraries do.  The moments of a row not in a batch are not
decayed that step, which is the one way it differs from Adam; dense
gradients (every other weight) get Keras' Adam update unchanged.

>>> optimizer = make_optimizer("lazy_adam", 1e-3)
>>> table = tf.Variable(tf.ones([4, 2]))
>>> _ = optimizer.apply_gradients([(tf.IndexedSlices(tf.ones([1, 2]), tf.constant([2])), table)])
>>> table.numpy()[:, 0].tolist()   # only row 2 moved
[1.0, 1.0, 0.9990000128746033, 1.0]
"""

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.training.config import OPTIMIZERS


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam with each variable's update one kernel (`ResourceApplyAdam`,
    the update of TensorFlow's own Adam) instead of about ten element-wise ops.

    The same update as `keras.optimizers.Adam`, rounding aside: Keras updates
    every row of a table whose gradient is sparse (it decays both moments of
    all of them), so a sparse gradient is summed into a dense one here first,
    which also adds up its duplicate rows (Keras' separate de-duplication is
    skipped). On CPU a SASRec step spends a sixth of its time in Keras' Adam,
    mostly in the sparse path's de-duplication and scatters
    (docs/performance.md). Arguments as `keras.optimizers.Adam`; `amsgrad`
    and `adaptive_epsilon` are refused (the fused kernel has neither).

    >>> table = tf.Variable(tf.ones([3, 2]))
    >>> _ = FusedAdam(0.1).apply_gradients([(tf.IndexedSlices(tf.ones([1, 2]), tf.constant([1])), table)])
    >>> [round(v, 4) for v in table.numpy()[:, 0].tolist()]
    [1.0, 0.9, 1.0]
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad or self.adaptive_epsilon:
            raise ValueError("FusedAdam supports neither amsgrad nor adaptive_epsilon; use keras.optimizers.Adam")

    def _deduplicate_sparse_grad(self, grads):
        return grads  # `update_step` sums a sparse gradient's rows into a dense one

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.math.unsorted_segment_sum(gradient.values, gradient.indices, tf.shape(variable)[0])
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._index_dict[self._var_key(variable)]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(self.learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class LazyAdam(FusedAdam):
    """Adam whose sparse updates touch only the gradient's rows (see the module
    docstring); dense gradients get `FusedAdam`'s update.  Arguments as
    `keras.optimizers.Adam`; `amsgrad` is refused (its running maximum would
    need the dense pass this avoids)."""

    def _deduplicate_sparse_grad(self, grads):
        # Each row must come once: its moments are gathered, updated and scattered back.
        return keras.optimizers.Optimizer._deduplicate_sparse_grad(self, grads)

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        # Keras has summed duplicate indices already (`_deduplicate_sparse_grad`).
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        alpha = tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        epsilon = self.epsilon * tf.sqrt(1 - beta_2_power) if getattr(self, "adaptive_epsilon", False) \
            else self.epsilon
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        rows, values = gradient.indices, tf.cast(gradient.values, dtype)
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class PlainSGD(keras.optimizers.SGD):
    """θ ← θ − α·g and nothing else: a sparse gradient moves only its rows.
    Keras' SGD keeps a momentum copy of every variable even at momentum 0
    and reads it whole each step (an O(catalogue) step for an item table);
    this one has no slots.  `momentum` and `nesterov` are refused.

    >>> table = tf.Variable(tf.ones([3, 2]))
    >>> _ = PlainSGD(0.5).apply_gradients([(tf.IndexedSlices(tf.ones([1, 2]), tf.constant([1])), table)])
    >>> table.numpy()[:, 0].tolist()
    [1.0, 0.5, 1.0]
    """

    def __init__(self, learning_rate=0.01, **kwargs):
        if kwargs.get("momentum") or kwargs.get("nesterov"):
            raise ValueError("PlainSGD has no momentum; use keras.optimizers.SGD")
        super().__init__(learning_rate, **kwargs)

    def build(self, var_list):
        keras.optimizers.Optimizer.build(self, var_list)  # the iteration count, no momentum slots

    def update_step(self, gradient, variable):
        rate = tf.cast(self.learning_rate, variable.dtype)
        if isinstance(gradient, tf.IndexedSlices):
            variable.scatter_sub(tf.IndexedSlices(gradient.values * rate, gradient.indices))
        else:
            variable.assign_sub(gradient * rate)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer called `name` (one of `OPTIMIZERS`) at `learning_rate`."""
    if name == "adam":
        return FusedAdam(learning_rate)
    if name == "lazy_adam":
        return LazyAdam(learning_rate)
    raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {name!r}")
