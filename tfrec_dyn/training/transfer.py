"""Learning transferrable parameters for long-tailed users (Yin et al., KDD 2020):
first-order meta-learning (gradient alignment) plus an adversarial head/tail
discriminator, around any `SequentialRecommender`.

    trainer = TransferrableTrainer(SASRec(vocab_size, 50), inner_steps=2)
    trainer.compile(optimizer=keras.optimizers.Adam(0.001))     # the outer optimizer, β
    trainer.fit(user_task_dataset(sequences, heads, vocab_size, 50), steps_per_epoch=..., epochs=...)
    trainer.model.save(...)                                     # the wrapped model, unchanged

`tfrec_dyn.training.train` does all of this with `TrainConfig(trainer="tp")`.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.layers.head_tail_discriminator import HeadTailDiscriminator
from tfrec_dyn.layers.reduction import num_replicas
from tfrec_dyn.models.base import SequentialRecommender
from tfrec_dyn.training.optimizers import PlainSGD


def sequence_embeddings(representations):
    """φ(S): the representation at the last position of each window [N, L, d] -> [N, d]
    (windows are left padded, so the last position always holds an item)."""
    if not isinstance(representations, tf.Tensor) or representations.shape.rank != 3:
        raise ValueError("the transferrable-parameters trainer needs a model whose call returns "
                         f"representations [batch, length, dim], got {representations!r}")
    return representations[:, -1]


def sum_updates(updates):
    """The sum of a variable's gradients over several steps: `tf.IndexedSlices`
    when every one is (a table's touched rows; the result is their rows, an
    id repeated where several steps touched it), a dense tensor otherwise."""
    if all(isinstance(u, tf.IndexedSlices) for u in updates):
        return tf.IndexedSlices(tf.concat([u.values for u in updates], 0),
                                tf.concat([u.indices for u in updates], 0), updates[0].dense_shape)
    return tf.add_n([tf.convert_to_tensor(u) for u in updates])


def add_to_variables(variables, updates):
    """`variable += Σ over replicas of update` for every pair (sparse updates
    add only their rows), from replica context under any `tf.distribute`
    strategy; every replica's copy gets the same sum."""
    context = tf.distribute.get_replica_context()
    totals = [context.all_reduce(tf.distribute.ReduceOp.SUM, update) for update in updates]

    def add(variable, total):
        return variable.scatter_add(total) if isinstance(total, tf.IndexedSlices) else variable.assign_add(total)

    def merge(strategy, totals):
        for variable, total in zip(variables, totals):
            strategy.extended.update(variable, add, args=(total,))

    context.merge_call(merge, args=(totals,))


@keras.utils.register_keras_serializable(package="tfrec_dyn")
class TransferrableTrainer(keras.Model):
    """Trains `model` (and a head/tail discriminator) by Algorithm 1 of the paper.

    One `train_step` is one outer iteration. From θ (the model) and θ_d (the
    discriminator), k inner SGD updates with learning rate α, each on one
    mini-batch of `user_task_dataset` (windows of `users_per_step` users drawn
    at random; the paper: one user), minimise

        L(D; θ) − λ · BCE_d(D; θ, θ_d)   for θ,     BCE_d(D; θ, θ_d)   for θ_d,

    L being the model's own next-item loss and BCE_d the discriminator's
    head/tail cross-entropy on the window embeddings (eq. 9-10; the reversed
    gradient of `HeadTailDiscriminator`). That gives θ_k; then θ and θ_d go
    back to where the iteration started and the compiled optimizer (Adam with
    β = 0.001 in the paper) takes one step along the pseudo-gradient θ − θ_k:
    with plain SGD at rate β that is Reptile's θ ← θ + β(θ_k − θ) (eq. 7).

    The inner optimizer is plain SGD, so θ − θ_k is α times the sum of the
    inner steps' gradients: the step keeps that sum instead of a copy of θ.
    An item table's gradients are the rows the batches touched
    (`tf.IndexedSlices`), so going back and the pseudo-gradient cost those
    rows, not the catalogue; with a sparse outer optimizer (`lazy_adam`) the
    whole outer step does.

    The per-user mini-batches come from `user_task_dataset`
    (`tfrec_dyn.data.user_tasks`): every sequence sits once in one flat id
    array with row offsets, and each outer iteration draws its users and
    window ends with stateless random ops and gathers the windows inside the
    `tf.data` graph. No Python loop runs over users, per epoch or per step, so
    millions of users cost their interactions' memory and nothing more.

    k = 1 is plain joint training: the pseudo-gradient is α·∇L, and Adam
    ignores the scale α (up to its ε), so it is Adam on the same batches.

    Under `tf.distribute`, each replica draws its own users; every loss is
    the replica's share of the mean over all replicas' users, so the inner
    optimizer's sum over replicas is the gradient of one device holding the
    whole batch (an inner step covers `users_per_step` × replicas users, at
    rate α) and the weights stay identical across replicas throughout.

    Choices of ours (the paper leaves them open): α defaults to 0.1; the
    sequence embedding φ is the model's representation at the last position
    of each window (`sequence_embeddings`); the discriminator is an MLP with
    one hidden layer of 64 units.

    Args:
      model: a `SequentialRecommender` whose `call` returns [B, L, d]
        (GRU4Rec, Caser, SASRec, RETR) and whose loss is the shared one.
      inner_steps: k.
      inner_learning_rate: α, the inner SGD rate.
      adversarial_weight: λ (0 turns the adversary's pull on the model off;
        the discriminator still learns).
      discriminator_units: hidden widths of the discriminator.
    """

    def __init__(self, model, inner_steps=2, inner_learning_rate=0.1, adversarial_weight=0.1,
                 discriminator_units=(64,), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, SequentialRecommender):
            raise TypeError(f"`model` must be a SequentialRecommender, got {type(model).__name__}")
        if type(model).sequence_loss is not SequentialRecommender.sequence_loss:
            raise ValueError(f"{type(model).__name__} has a loss of its own (`sequence_loss`); the "
                             "transferrable-parameters trainer wraps models trained with the shared next-item "
                             "loss (GRU4Rec, Caser, SASRec, RETR)")
        if int(inner_steps) <= 0:
            raise ValueError(f"`inner_steps` must be positive, got inner_steps={inner_steps}")
        if float(inner_learning_rate) <= 0:
            raise ValueError(f"`inner_learning_rate` must be positive, got {inner_learning_rate}")
        self.model = model
        self.inner_steps = int(inner_steps)
        self.inner_learning_rate = float(inner_learning_rate)
        self.discriminator = HeadTailDiscriminator(discriminator_units, adversarial_weight=adversarial_weight,
                                                   name="discriminator")
        self.inner_optimizer = PlainSGD(self.inner_learning_rate)  # no momentum slots: see PlainSGD
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            # float16 gradients of the inner steps need loss scaling like any other.
            self.inner_optimizer = keras.mixed_precision.LossScaleOptimizer(self.inner_optimizer)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.discriminator_loss_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.discriminator_accuracy = keras.metrics.BinaryAccuracy(name="discriminator_accuracy", threshold=0.0)

    @property
    def metrics(self):
        return [self.loss_tracker, self.discriminator_loss_tracker, self.discriminator_accuracy]

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def score(self, inputs):
        """The wrapped model's scores (what validation and serving use)."""
        return self.model.score(inputs)

    @property
    def vocab_size(self):
        return self.model.vocab_size

    @property
    def score_chunk_size(self):
        return getattr(self.model, "score_chunk_size", None)

    def user_state(self, inputs, training=False):
        return self.model.user_state(inputs, training=training)

    def score_items(self, state, item_ids):
        return self.model.score_items(state, item_ids)

    def build_for(self, batch):
        """Creates every variable (model, discriminator, both optimizers) from one
        inner batch, so that `fit` under a strategy starts from built weights."""
        embeddings = sequence_embeddings(self.model(batch))
        self.discriminator(embeddings)
        variables = self._variables()
        self.inner_optimizer.build(variables)
        self.optimizer.build(variables)

    @property
    def _loss_scaled(self):
        return isinstance(self.inner_optimizer, keras.mixed_precision.LossScaleOptimizer)

    def _variables(self):
        return self.model.trainable_variables + self.discriminator.trainable_variables

    def inner_step(self, batch):
        """One SGD update of θ and θ_d on one mini-batch; returns (L, BCE_d,
        the discriminator's logits before the update)."""
        variables = self._variables()
        with tf.GradientTape() as tape:
            representations = self.model(batch, training=True)
            # Both losses are this replica's share of the global mean (`tfrec_dyn.layers.reduction`), so
            # the inner optimizer's sum over replicas is the gradient of one device with every user: α stays α.
            loss = self.model.next_item_loss(representations, batch)
            loss += self.model.regularization_loss() / num_replicas()
            discriminator_loss, logits = self.discriminator.loss(sequence_embeddings(representations),
                                                                 batch["heads"])
            total = loss + discriminator_loss
            scaled = self.inner_optimizer.get_scaled_loss(total) if self._loss_scaled else total
        gradients = tape.gradient(scaled, variables)
        if self._loss_scaled:
            gradients = self.inner_optimizer.get_unscaled_gradients(gradients)
        self.inner_optimizer.apply_gradients(zip(gradients, variables))
        return loss, discriminator_loss, logits, gradients

    def _applied(self, gradients):
        """1.0 when the inner optimizer applied `gradients`: always, except under
        loss scaling, which skips a step whose gradients (summed over
        replicas) are not all finite."""
        if not self._loss_scaled:
            return tf.constant(1.0)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(
            g.values if isinstance(g, tf.IndexedSlices) else g)) for g in gradients])
        not_finite = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
        return tf.cast(tf.equal(not_finite, 0.0), tf.float32)

    def train_step(self, data):
        steps = {value.shape[1] for value in data.values()} - {None}
        if steps and steps != {self.inner_steps}:
            # A dataset built for another k would silently train on its first k steps only.
            raise ValueError(f"the task batches hold {sorted(steps)} inner steps on axis 1 but the trainer "
                             f"takes inner_steps={self.inner_steps}; build the dataset with "
                             f"user_task_dataset(..., inner_steps={self.inner_steps})")
        variables = self._variables()
        displacements = [[] for _ in variables]  # each variable's α·gradient of every inner step, this replica's
        for step in range(self.inner_steps):
            # A replica's share of the batch: [G, k, N, ...] -> step `step` -> [G·N, ...]
            batch = {key: tf.reshape(value[:, step], tf.concat([[-1], tf.shape(value)[3:]], 0))
                     for key, value in data.items()}
            loss, discriminator_loss, logits, gradients = self.inner_step(batch)
            # α, or 0 for a step that loss scaling skipped (whose gradients are not finite: 0·inf is NaN).
            rate = self.inner_learning_rate * self._applied(gradients)
            for updates, gradient in zip(displacements, gradients):
                if isinstance(gradient, tf.IndexedSlices):
                    updates.append(tf.IndexedSlices(tf.math.multiply_no_nan(gradient.values, rate),
                                                    gradient.indices, gradient.dense_shape))
                elif gradient is not None:
                    updates.append(tf.math.multiply_no_nan(gradient, rate))
            self.loss_tracker.update_state(loss * num_replicas())
            self.discriminator_loss_tracker.update_state(discriminator_loss * num_replicas())
            self.discriminator_accuracy.update_state(batch["heads"], logits)
        # Θ − θ_k, this replica's share: the inner optimizer summed the replicas' gradients, and so
        # do `add_to_variables` and the outer optimizer.
        moved = [(variable, sum_updates(updates)) for variable, updates in zip(variables, displacements) if updates]
        add_to_variables([v for v, _ in moved], [u for _, u in moved])  # back to Θ, Θ_d
        self.optimizer.apply_gradients([(u, v) for v, u in moved])
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {"model": keras.saving.serialize_keras_object(self.model), "inner_steps": self.inner_steps,
                "inner_learning_rate": self.inner_learning_rate,
                "adversarial_weight": self.discriminator.adversarial_weight,
                "discriminator_units": list(self.discriminator.hidden_units), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
