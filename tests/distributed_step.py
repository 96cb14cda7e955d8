"""One training step on one device and on `MirroredStrategy` over 2 logical CPUs, same global batch.

Run by `tests/test_training.py` in a fresh interpreter (logical devices must be configured before
TensorFlow starts); prints, per model, how far the step moved the weights and how far the two
results are apart, as one JSON line.  Plain SGD, so that a wrongly scaled gradient changes the
step (Adam's first step is nearly its sign and would hide it).
"""

import json

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tfrec_dyn  # noqa: E402,F401  (Keras 2)
import tf_keras as keras  # noqa: E402

keras.utils.set_random_seed(0)
from tfrec_dyn.layers import gumbel, policy  # noqa: E402
# The policies sample with Gumbel noise that each replica draws on its own; without it they take
# the arg-max, so one device and two replicas take the same actions and only the loss reduction differs.
gumbel.gumbel_noise = policy.gumbel_noise = lambda shape, dtype=tf.float32: tf.zeros(shape, dtype)
from tfrec_dyn.data.input_pipeline import training_dataset  # noqa: E402
from tfrec_dyn.data.user_tasks import user_task_dataset  # noqa: E402
from tfrec_dyn.models import build_model  # noqa: E402
from tfrec_dyn.training.transfer import TransferrableTrainer  # noqa: E402

VOCAB, MAX_LEN, BATCH = 40, 12, 16  # BATCH: the global batch, 2 × 8
rng = np.random.default_rng(0)
sequences = [rng.integers(2, VOCAB, size=rng.integers(3, 20)).astype(np.int32) for _ in range(BATCH)]
one_device, mirrored = tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
HP = {"sasrec": {"dropout": 0.0}, "gru4rec": {"dropout": 0.0}, "rdrsr": {"dropout": 0.0, "window_len": 8}}


def step(strategy, name, weights, batch):
    with strategy.scope():
        model = build_model(name, VOCAB, MAX_LEN, **HP[name])
        model(batch)
        if weights is not None:
            model.set_weights(weights)
        start = model.get_weights()
        trainable = [v.numpy() for v in model.trainable_variables]
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    return start, trainable, [v.numpy() for v in model.trainable_variables], history.history["loss"][0]


def tp_step(strategy, weights, data):
    with strategy.scope():
        trainer = TransferrableTrainer(build_model("sasrec", VOCAB, MAX_LEN, dropout=0.0), inner_steps=2,
                                       inner_learning_rate=0.5)
        trainer.compile(optimizer=keras.optimizers.SGD(1.0))
        trainer.build_for({key: value[0, 0] for key, value in data.items()})
        if weights is not None:
            trainer.set_weights(weights)
        start = trainer.get_weights()
        trainable = [v.numpy() for v in trainer.trainable_variables]
    history = trainer.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0)
    return start, trainable, [v.numpy() for v in trainer.trainable_variables], history.history["loss"][0]


report = {}
for name in ("sasrec", "gru4rec", "rdrsr"):
    model = build_model(name, VOCAB, MAX_LEN)
    negatives = getattr(model, "num_negatives", 0)
    batch = next(iter(training_dataset(sequences, VOCAB, MAX_LEN, BATCH, num_negatives=negatives, shuffle=False)))
    start, initial, single, single_loss = step(one_device, name, None, batch)
    _, _, replicated, replicated_loss = step(mirrored, name, start, batch)
    report[name] = (initial, single, replicated, single_loss, replicated_loss)

# TP: one outer iteration over 2N users; the two replicas each get N of them.
tasks = next(iter(user_task_dataset(sequences, np.arange(BATCH) % 2 == 0, VOCAB, MAX_LEN, inner_steps=2,
                                    users_per_step=8, windows_per_user=1, num_negatives=1)))
whole = {key: value[tf.newaxis] for key, value in tasks.items()}                      # [1, k, 2N, ...]
halves = {key: tf.stack(tf.split(value, 2, axis=1)) for key, value in tasks.items()}  # [2, k, N, ...]
start, initial, single, single_loss = tp_step(one_device, None, whole)
_, _, replicated, replicated_loss = tp_step(mirrored, start, halves)
report["tp"] = (initial, single, replicated, single_loss, replicated_loss)

out = {}
for name, (start, single, replicated, single_loss, replicated_loss) in report.items():
    out[name] = {"moved": max(float(np.abs(a - b).max()) for a, b in zip(start, single)),
                 "diff": max(float(np.abs(a - b).max()) for a, b in zip(single, replicated)),
                 "loss": [single_loss, replicated_loss]}
print(json.dumps(out))
