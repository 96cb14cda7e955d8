"""`tf.distribute` strategy and precision chosen from the config, never hard-coded."""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from typing import Iterator, Optional

import tensorflow as tf
import tf_keras as keras

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the distribution strategy called `name`.

    * "auto": `MirroredStrategy` over all visible GPUs when there are several,
      one device otherwise.
    * "one_device": TensorFlow's default strategy, which places ops on the
      first GPU when there is one, else the CPU.  (Not `OneDeviceStrategy`:
      Keras' `BackupAndRestore`, used to resume interrupted training, does not
      support it.)
    * "mirrored": `MirroredStrategy` over all local GPUs (or, with no GPU, all
      logical CPU devices, which is how it is tested on CPU machines); one
      per process, which every training in it shares.
    * "multi_worker": `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`;
      create it before running any other TensorFlow op in the process.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if name == "multi_worker":
        # Must come before anything initialises the TF runtime (even listing
        # devices): collective ops are configured at program start-up.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return _mirrored(tuple(devices))


@functools.lru_cache(maxsize=None)
def _mirrored(devices) -> tf.distribute.MirroredStrategy:
    # One per device set and process: a second MirroredStrategy starts its collective instance keys
    # where the first did, and the next model's all-reduce then fails with "Shape mismatch in the
    # collective instance" (tensorflow/tensorflow#62790), e.g. the second model of a benchmark on
    # a machine with several GPUs, where "auto" is mirrored.
    return tf.distribute.MirroredStrategy(list(devices))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the
    non-chief workers of a multi-worker cluster."""
    return strategy.extended.should_checkpoint


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns only when every worker of the cluster has reached it (at once
    for one process): a one-element all-reduce, which no worker can finish
    alone.  The chief calls it before deleting what other workers may still
    be writing under a shared directory."""
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


@contextlib.contextmanager
def chief_dir(path: Optional[str], strategy: tf.distribute.Strategy) -> Iterator[Optional[str]]:
    """`path` on the chief; a temporary directory, removed on exit, on every
    other worker.

    The other workers still write: saving a model under
    `MultiWorkerMirroredStrategy` is a collective operation every worker must
    take part in; their copies just must not land where the chief's do.
    `None` stays `None`.
    """
    if path is None or is_chief(strategy):
        yield path
        return
    temporary = tempfile.mkdtemp(prefix="tfrec_dyn_worker_")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@contextlib.contextmanager
def precision_scope(mixed_precision: bool):
    """Layers built inside use mixed_float16 when asked; the previous global
    policy is restored on exit so nothing leaks into other models."""
    previous = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
