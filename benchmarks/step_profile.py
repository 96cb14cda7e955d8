"""Where a training step's time goes, for SASRec, GRU4Rec, RETR and RDRSR on CPU.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/step_profile.py --out benchmarks/results/step_profile.md

For each model, on one full batch (batch 128, max_len 50), the median wall
time of nested pieces of the step, each a `tf.function` run on its own:

* input: one batch from the training pipeline alone (`training_batches`, as
  `fit` builds it: windows, padding, negatives), and the same without
  negatives; the difference is negative sampling;
* forward: `model(batch, training=True)`;
* + loss: `model.sequence_loss` (the forward pass and the loss);
* + gradients: the loss and `tape.gradient`;
* train_step: the model's own `train_step` (gradients and the optimizer);
* fit: an epoch of `model.fit` ÷ its steps, over the whole data (the input
  pipeline, Keras' loop and callbacks); the first epoch (tracing) is dropped.

The differences between neighbours are the pieces' costs. Then the op-level
view: `fit` under the TensorFlow profiler for `--profile-steps` steps, host
self-time summed by op type and by the layer (name scope) the op belongs to.
Last, FLOPs: those of the products in the forward and backward pass
(`train_speed.matmul_flops`; none for a recurrent model, whose loop the graph
does not count) ÷ its time, against a plain [n, n] x [n, n] float32 matmul
measured in the same run (the machine's limit).

`--data synthetic:USERS:ITEMS:MEAN_LENGTH` trains on a generated log of that
shape (`tfrec_dyn.data.synthetic`, seed 0) instead of MovieLens-100K, whose
943 users make 8 steps an epoch, so per-epoch costs weigh more there than on
a data set of tens of thousands of users.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.input_pipeline import steps_per_epoch, training_dataset
from tfrec_dyn.models import build_model
from tfrec_dyn.models.registry import MODELS as MODEL_CLASSES
from tfrec_dyn.training import PreparedData, TrainConfig
from tfrec_dyn.training.optimizers import make_optimizer
from tfrec_dyn.training.trainer import training_batches
from train_speed import (SPEED_MODELS, EpochTimer, gradient_function, matmul_gflops, median_seconds, prepared_data,
                         matmul_flops)


def input_seconds(dataset: tf.data.Dataset, batches: int) -> float:
    """Seconds per batch of pulling `batches` batches from `dataset` (after one)."""
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) / batches


def op_profile(model, dataset, steps: int):
    """Host self-time (µs) of `steps` steps of `model.fit` under the profiler, by op type and by layer."""
    logdir = tempfile.mkdtemp(prefix="step_profile_")
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)  # traced before the profile starts
    tf.profiler.experimental.start(logdir)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    tf.profiler.experimental.stop()
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # pylint: disable=import-outside-toplevel

    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    data, _ = _pywrap_profiler_plugin.xspace_to_tools_data(paths[-1:], "framework_op_stats")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    by_type, by_layer = collections.Counter(), collections.Counter()
    for row in table["rows"]:
        values = dict(zip(columns, (c.get("v") for c in row["c"])))
        if values["host_or_device"] != "Host" or values["type"] == "IDLE":  # threads waiting: not work
            continue
        microseconds = float(values["total_self_time"])
        by_type[values["type"]] += microseconds
        by_layer[layer_of(values["operation"], model.name)] += microseconds
    return by_type, by_layer


def layer_of(operation: str, model_name: str) -> str:
    """The part of the model (or of the step) an op's name places it in."""
    parts = operation.split("/")
    backward = parts[0] == "gradient_tape"
    if backward:
        parts = parts[1:]
    if parts[0] == model_name and len(parts) > 2:
        name = "/".join(parts[1:2] if not parts[1].startswith("block") else parts[1:3])
    elif parts[0] in ("Adam", "LazyAdam") or "Adam" in parts[0]:
        name = "optimizer"
    elif "Iterator" in operation or "Dataset" in operation:
        name = "input (iterator)"
    else:
        name = parts[0] if len(parts) > 1 else "other (unscoped)"
    return f"{name} (backward)" if backward else name


def profile_model(name: str, data: PreparedData, args) -> dict:
    config = TrainConfig(model=name, max_len=args.max_len, batch_size=args.batch_size, seed=0,
                         optimizer=args.optimizer, hyperparameters=dict(SPEED_MODELS.get(name, {})))
    keras.utils.set_random_seed(0)
    model = build_model(name, data.vocab.size, config.max_len, **config.model_kwargs())
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate), jit_compile=args.jit_compile,
                  steps_per_execution=args.steps_per_execution)
    dataset = training_batches(model, config, data.train_sequences, data.vocab.size, data.item_counts,
                               config.batch_size, range(0, 10_000))
    windows_only = training_dataset(data.train_sequences, data.vocab.size, config.max_len, config.batch_size,
                                    num_negatives=0, seed=0)
    batch = next(iter(dataset))
    row = {"model": name, "loss": model.loss_name, "num_negatives": model.num_negatives}
    row["input"] = input_seconds(dataset, args.input_batches)
    row["input, no negatives"] = input_seconds(windows_only.repeat(), args.input_batches)

    pieces = {"forward": tf.function(lambda b: model(b, training=True)),
              "+ loss": tf.function(lambda b: model.sequence_loss(b, training=True)),
              "+ gradients": gradient_function(model),
              "train_step": tf.function(model.train_step),
              "train_step, XLA": tf.function(model.train_step, jit_compile=True)}
    for piece, function in pieces.items():
        try:
            row[piece] = median_seconds(function, batch, repeats=args.repeats)
        except (tf.errors.OpError, ValueError, TypeError) as error:  # a model XLA cannot compile
            row[piece] = float("nan")
            print(f"{name}: {piece} failed: {str(error).splitlines()[0][:300]}", file=sys.stderr)
    row["flops"] = matmul_flops(pieces["+ gradients"], batch)

    steps = steps_per_epoch(data.train_sequences, config.batch_size)
    timer = EpochTimer()
    model.fit(dataset, epochs=args.fit_epochs, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    row["fit"] = statistics.median(timer.seconds[1:]) / steps
    row["by_type"], row["by_layer"] = op_profile(model, dataset, args.profile_steps)
    return row


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def report(rows, data: PreparedData, args, machine_gflops: float, command: str) -> str:
    users = len(data.train_sequences)
    lines = [f"Command: `{command}`  ",
             f"Data: {args.data} ({users:,} users, {data.vocab.size:,} items); batch {args.batch_size}, "
             f"max_len {args.max_len}, optimizer {args.optimizer}; `fit` with jit_compile={args.jit_compile}, "
             f"steps_per_execution={args.steps_per_execution}; {os.cpu_count()} CPU core(s), "
             f"TensorFlow {tf.__version__}; load average at the end "
             f"{os.getloadavg()[0]:.2f}.", "",
             "#### Step pieces (ms, median; each row includes the ones above it but input and fit)", "",
             "| model | loss | input | of which negatives | forward | loss | backward | optimizer | "
             "train_step | train_step, XLA | fit step | fit − train_step | step GFLOP | GFLOP/s | ÷ matmul |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gflops = r["flops"] / 1e9
        lines.append(
            f"| {r['model']} | {r['loss']} ({r['num_negatives']}) | {milliseconds(r['input'])} | "
            f"{milliseconds(r['input'] - r['input, no negatives'])} | {milliseconds(r['forward'])} | "
            f"{milliseconds(r['+ loss'] - r['forward'])} | {milliseconds(r['+ gradients'] - r['+ loss'])} | "
            f"{milliseconds(r['train_step'] - r['+ gradients'])} | {milliseconds(r['train_step'])} | "
            f"{milliseconds(r['train_step, XLA'])} | "
            f"{milliseconds(r['fit'])} | {milliseconds(r['fit'] - r['train_step'])} | {gflops:.3f} | "
            f"{gflops / r['+ gradients']:.1f} | {gflops / r['+ gradients'] / machine_gflops:.3f} |")
    lines += ["", f"Plain float32 {args.matmul_size}² matmul in the same run: {machine_gflops:.1f} GFLOP/s.  "
              "GFLOP/s: the products' FLOPs in the forward and backward pass ÷ that pass's time (nan: a "
              "recurrent model). Negative differences are timing noise between two medians.", ""]
    for key, title in (("by_layer", "layer or part of the step"), ("by_type", "op type")):
        lines += [f"#### Busy CPU time of {args.profile_steps} `fit` steps under the profiler (ops' self-time "
                  f"summed over threads), by {title} (share, top {args.top})", ""]
        for r in rows:
            total = sum(r[key].values())
            top = ", ".join(f"{name} {value / total:.0%}" for name, value in r[key].most_common(args.top))
            lines.append(f"* **{r['model']}** ({total / 1e3 / args.profile_steps:.1f} CPU ms a step): {top}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SPEED_MODELS), choices=sorted(MODEL_CLASSES),
                        help="models to profile (default: the speed benchmark's; others with their defaults)")
    parser.add_argument("--data", default="ml-100k", help="ml-100k or synthetic:USERS:ITEMS:MEAN_LENGTH")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=False,
                        help="the `fit` rows and the profile with the train step under XLA")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--input-batches", type=int, default=50)
    parser.add_argument("--fit-epochs", type=int, default=4)
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    command = "TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/step_profile.py " + \
        " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    data = prepared_data(args.data)
    machine_gflops = matmul_gflops(args.matmul_size)
    rows = [profile_model(name, data, args) for name in args.models]
    text = report(rows, data, args, machine_gflops, command.strip())
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
