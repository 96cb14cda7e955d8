"""Training speed, as ratios to baselines measured in the same run.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/train_speed.py --out benchmarks/results/train_speed.md

Prints Markdown tables and the machine's CPU count; absolute seconds depend on
the machine and on whatever else runs on it (the load average is printed too),
the ratios much less.

0. Now against before: the training sequences per second of each of
   `SPEED_MODELS` with this library and with the library at git revision
   `--against` (default `BASELINE_REVISION`, the state when issue 21 was
   filed: its "today's path"), each measured by `throughput` in a fresh
   process importing one or the other (the old one extracted with
   `git archive`), the two alternating for `--rounds` rounds; the medians'
   ratio against `SPEEDUP_TARGETS`, the issue's targets.
1. Throughput: training sequences per second of SASRec (at the settings of
   the PyTorch comparison in issue 21: d 50, 2 blocks, 1 head, dropout 0.5),
   GRU4Rec, RETR and RDRSR (their defaults), max_len 50, batch 128, each
   through `tfrec_dyn.training.trainer.fit` (what `tfrec-dyn train` runs)
   with `TrainConfig`'s defaults and, in the same run, with each of
   `VARIANTS` (the step under XLA; 8 steps per call into the graph; batches
   not packed, which changes only SASRec's), as
   ratios to the defaults: the measurement behind the defaults.  The first
   epoch (tracing) is dropped and the median of the others is taken.  One
   sequence is one user's training sequence with a next-item target at
   every position, so an epoch is every training user once.  Also the
   step's FLOPs (those of the products in the forward and backward pass on
   a full batch, `matmul_flops`) and the GFLOP/s they make at the default
   path's speed, against a plain float32 matmul measured in the same run
   (the machine's limit).  On each `--data`: MovieLens-100K (943 users, 8
   steps an epoch) and, with `--data ... synthetic:31013:23715:9.3`, a
   generated log of the shape of the PyTorch comparison's data set (31,013
   users, 23,715 items, 9.3 events a user).
2. Evaluation: wall seconds of the full-ranking evaluation of every test user
   of each of `SPEED_MODELS` trained one epoch: what `tfrec-dyn evaluate`
   runs (`evaluate_split`, protocol "full", beyond-accuracy lists included;
   its scorer is traced in the call), and the ranking alone with a scorer
   traced before (median of `--rounds` calls), against issue 21's 1 s.
3. Time to result: wall time of what `tfrec_dyn.training.train` does (read
   and prepare the data, `fit`, evaluate on the test split) for SASRec with
   the settings of `benchmarks/baselines_ml100k.py` (200 epochs, loss "bce",
   max_len 50), once per seed (`--seeds`, default 0 1 2 as there), with the
   mean full-ranking HR@10 and NDCG@10 checked against the target (HR@10 >=
   0.148 and NDCG@10 >= 0.066, the best ML-100K figures of the RDRSR paper)
   and every run's wall time against the 300 s budget; the baseline in the
   same run is GRU4Rec trained with its benchmark budget (100 epochs, loss
   "ce") on the same seeds.  For
   information, every `--check-every` epochs the SASRec run also scores the
   test split (only to time the run, never to pick a model or stop it) and the
   table gives the first epoch, and the training seconds up to it, at which the
   target held; that evaluation time is not counted in the training seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.data.input_pipeline import trainable_rows
from tfrec_dyn.data.synthetic import LogSpec, generate_log
from tfrec_dyn.training import PreparedData, TrainConfig
from tfrec_dyn.metrics.evaluation import model_features
from tfrec_dyn.metrics.protocols import evaluate
from tfrec_dyn.metrics.scoring import Scorer
from tfrec_dyn.training.trainer import evaluate_split, fit

TARGET = {"HR@10": 0.148, "NDCG@10": 0.066}
BUDGET_SECONDS = 300.0


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class TargetWatch(keras.callbacks.Callback):
    """Scores the test split (full protocol) every `every` epochs and records the
    first epoch at which the target held, with the training seconds up to it
    (time spent in these evaluations excluded).  Never stops training."""

    def __init__(self, data: PreparedData, config: TrainConfig, every: int):
        super().__init__()
        self.data, self.config, self.every = data, config, every
        self.first_epoch = self.first_seconds = None
        self.eval_seconds = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.every <= 0 or (epoch + 1) % self.every or self.first_epoch is not None:
            return
        start = time.perf_counter()
        figures = evaluate_split(self.model, self.data, self.config, protocols=("full",), ks=(10,))["full"].metrics
        if all(figures[k] >= v for k, v in TARGET.items()):
            self.first_epoch = epoch + 1
            self.first_seconds = start - self._start - self.eval_seconds
        self.eval_seconds += time.perf_counter() - start


# Issue 21's speed targets: SASRec at the settings of its PyTorch comparison (those of
# pmixer/SASRec.pytorch), the others at their defaults.
SPEED_MODELS = {"sasrec": {"embed_dim": 50, "num_blocks": 2, "num_heads": 1, "dropout": 0.5},
                "gru4rec": {}, "retr": {}, "rdrsr": {}}
# The settings measured against the defaults (`TrainConfig` fields).
VARIANTS = {"XLA": {"jit_compile": True}, "8 steps a call": {"steps_per_execution": 8},
            "unpacked": {"pack_sequences": False}}
# Issue 21's "today's path": the library as it was when the issue was filed, and its targets (sequences/s
# of the library now ÷ at that revision).
BASELINE_REVISION = "9ed9975"
SPEEDUP_TARGETS = {"sasrec": 1.6, "gru4rec": 1.3, "retr": 1.3, "rdrsr": 1.3}


def num_training_sequences(data: PreparedData) -> int:
    """Users with an (input, target) pair: at least 2 training items."""
    return len(trainable_rows(data.train_sequences))


def prepared_data(spec: str) -> PreparedData:
    """A built-in data set by name, or `synthetic:USERS:ITEMS:MEAN_LENGTH`: a generated log of
    that shape (`tfrec_dyn.data.synthetic`, seed 0, at least 5 events a user)."""
    if not spec.startswith("synthetic:"):
        return PreparedData.from_config(TrainConfig(data=spec))
    _, users, items, mean_length = spec.split(":")
    log = generate_log(LogSpec(num_users=int(users), num_items=int(items), mean_length=float(mean_length),
                               min_length=5, seed=0))
    return PreparedData.from_interactions(log.to_interactions())


def median_seconds(function, *args, repeats: int = 20) -> float:
    """Median wall seconds of `function(*args)` after two warm-up calls."""
    def run():
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, function(*args))

    run(), run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(n: int = 1024) -> float:
    """GFLOP/s of a float32 [n, n] x [n, n] matmul: what this machine's cores sustain."""
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    return 2 * n ** 3 / median_seconds(tf.function(tf.matmul), a, b) / 1e9


def gradient_function(model) -> tf.types.experimental.GenericFunction:
    """The forward and backward pass of `model`'s loss on a batch (no optimizer update)."""
    @tf.function
    def gradients(batch):
        with tf.GradientTape() as tape:
            loss = model.sequence_loss(batch, training=True) + model.regularization_loss()
        return loss, tape.gradient(loss, model.trainable_variables)
    return gradients


def matmul_flops(function, batch) -> float:
    """Floating-point operations of the products (MatMul, BatchMatMul, Einsum:
    2 × the size of the index space each multiplies over) in one call of the
    `tf.function` `function` on `batch`; element-wise ops are not counted.
    NaN when a product's shape is not static or the graph has a loop (a
    recurrent layer: its body runs a number of times the graph does not say)."""
    total = 0.0
    for op in function.get_concrete_function(batch).graph.get_operations():
        if op.type in ("While", "StatelessWhile"):
            return float("nan")
        if op.type not in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"):
            continue
        shapes = [x.shape for x in op.inputs]
        if not all(shape.is_fully_defined() for shape in shapes):
            return float("nan")
        if op.type == "Einsum":
            letters = {}
            for term, shape in zip(op.get_attr("equation").decode().split("->")[0].split(","), shapes):
                letters.update(zip(term.replace("...", ""), shape.as_list()[-len(term.replace("...", "")):]))
            size = 1
            for value in letters.values():
                size *= value
            total += 2.0 * size
        else:
            adjoint = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            inner = shapes[0][-2] if adjoint else shapes[0][-1]
            total += 2.0 * op.outputs[0].shape.num_elements() * inner
    return total


def throughput(data: PreparedData, model, max_len: int, epochs: int, seed: int, flops: bool = False,
               **settings) -> dict:
    """Median epoch seconds of `model` (a name, or a TrainConfig whose max_len/epochs/seed are
    replaced), with other `TrainConfig` `settings`; with `flops`, also the forward and backward
    pass's product FLOPs on one full batch (`matmul_flops`)."""
    if isinstance(model, TrainConfig):
        config = dataclasses.replace(model, max_len=max_len, epochs=epochs, seed=seed, **settings)
    else:
        config = TrainConfig(model=model, max_len=max_len, epochs=epochs, seed=seed, **settings)
    timer = EpochTimer()
    net, _, _ = fit(config, data.train_sequences, data.vocab.size, data.item_counts, callbacks=[timer], verbose=0)
    per_epoch = statistics.median(timer.seconds[1:] or timer.seconds)
    row = {"name": f"{config.model}, max_len {max_len}, loss {net.loss_name}", "loss": net.loss_name,
           "epoch_seconds": per_epoch, "sequences_per_second": num_training_sequences(data) / per_epoch}
    if flops:
        # Imported here: `--child` runs `throughput` against a library from before `training_batches`.
        from tfrec_dyn.training.trainer import training_batches  # pylint: disable=import-outside-toplevel

        # Unpacked: the FLOPs of a batch of `batch_size` users' full windows.
        batch = next(iter(training_batches(net, config, data.train_sequences, data.vocab.size, data.item_counts,
                                           config.batch_size, range(1), pack=False)))
        row["batch_flops"] = matmul_flops(gradient_function(net), batch) * config.batch_size / len(batch["item_ids"])
    return row


def speed_table(data: PreparedData, name: str, epochs: int, seed: int, machine_gflops: float,
                models=tuple(SPEED_MODELS), rounds: int = 3) -> list:
    """Markdown rows: each of `SPEED_MODELS` with the defaults and with each of `VARIANTS`, in
    `rounds` interleaved rounds (this machine's speed drifts by tens of percent between runs a
    minute apart; each setting's median over the rounds is taken)."""
    lines = [f"#### Training throughput on {name} ({num_training_sequences(data):,} training sequences, "
             f"{data.vocab.size:,} items; batch 128, max_len 50, median of epochs 2-{epochs}, seed {seed}, "
             f"median of {rounds} interleaved rounds)", "",
             "| model | loss | default seq/s | " + " | ".join(f"{v} ÷ default" for v in VARIANTS) +
             " | GFLOP a step | GFLOP/s | ÷ matmul |", "|---|---|---:|" + "---:|" * (len(VARIANTS) + 3)]
    for model in models:
        config = TrainConfig(model=model, hyperparameters=dict(SPEED_MODELS[model]))
        settings = {"default": {}, **VARIANTS}
        speeds = {variant: [] for variant in settings}
        for _ in range(rounds):
            for variant, overrides in settings.items():
                if speeds[variant] is None:
                    continue
                try:
                    row = throughput(data, config, 50, epochs, seed, flops=variant == "default", **overrides)
                except ValueError as error:  # a setting the model refuses (XLA where it is not checked)
                    print(f"{model} {overrides}: {error}", file=sys.stderr)
                    speeds[variant] = None
                    continue
                speeds[variant].append(row["sequences_per_second"])
                if variant == "default":
                    loss, batch_flops = row["loss"], row["batch_flops"]
        default = statistics.median(speeds["default"])
        ratios = ["refused" if speeds[v] is None else f"{statistics.median(speeds[v]) / default:.2f}×"
                  for v in VARIANTS]
        gflops = batch_flops / 1e9 * default / config.batch_size
        lines.append(f"| {model} | {loss} | {default:,.0f} | " + " | ".join(ratios) +
                     f" | {batch_flops / 1e9:.3f} | {gflops:.1f} | {gflops / machine_gflops:.3f} |")
    defaults = {field: getattr(TrainConfig(), field) for overrides in VARIANTS.values() for field in overrides}
    return lines + ["", f"Defaults: {defaults}; variants: {VARIANTS}; plain float32 1024² matmul in the same run: "
                        f"{machine_gflops:.1f} GFLOP/s; nan: a recurrent model (`matmul_flops`).", ""]


def library_at(revision: str, directory: str) -> str:
    """Writes the `tfrec_dyn` package as of git `revision` of this repository into
    `directory` and returns `directory` (a PYTHONPATH entry that imports it)."""
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", repository, "archive", revision, "tfrec_dyn"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def child_throughput(library: str, model: str, spec: str, epochs: int, seed: int) -> float:
    """Sequences/s of `model` (`SPEED_MODELS` settings, `TrainConfig` defaults) on `spec`,
    measured by `throughput` in a fresh process that imports `tfrec_dyn` from `library`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [library, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, os.path.abspath(__file__), "--child", model, "--data", spec,
               "--throughput-epochs", str(epochs), "--seeds", str(seed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} with PYTHONPATH={library} failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if not row["library"].startswith(os.path.abspath(library)):  # an installed copy shadowed PYTHONPATH
        raise RuntimeError(f"the child imported tfrec_dyn from {row['library']}, not from {library}")
    return row["sequences_per_second"]


def against_table(spec: str, revision: str, epochs: int, seed: int, models=tuple(SPEED_MODELS),
                  rounds: int = 3) -> list:
    """Markdown rows: each model's sequences/s with the library at `revision` and now, each
    measured in its own process, alternating in `rounds` rounds (medians), and the ratio
    against `SPEEDUP_TARGETS`."""
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lines = [f"#### Sequences/s now ÷ at {revision} (issue 21's \"today's path\") on {spec}", "",
             f"Batch 128, max_len 50, `TrainConfig` defaults, median of epochs 2-{epochs}, seed {seed}; "
             f"each measurement a fresh process, the two libraries alternating, median of {rounds} rounds.", "",
             f"| model | seq/s at {revision} | seq/s now | now ÷ {revision} | target | met? | each round, "
             f"{revision} / now |", "|---|---:|---:|---:|---:|---|---|"]
    with tempfile.TemporaryDirectory(prefix="tfrec_baseline_") as directory:
        libraries = {"before": library_at(revision, directory), "now": repository}
        for model in models:
            speeds = {name: [] for name in libraries}
            for _ in range(rounds):
                for name, library in libraries.items():
                    speeds[name].append(child_throughput(library, model, spec, epochs, seed))
            before, now = (statistics.median(speeds[name]) for name in libraries)
            ratio, target = now / before, SPEEDUP_TARGETS[model]
            rounds_text = ", ".join(f"{b:,.0f} / {n:,.0f}" for b, n in zip(speeds["before"], speeds["now"]))
            lines.append(f"| {model} | {before:,.0f} | {now:,.0f} | {ratio:.2f}× | {target:.1f}× | "
                         f"{'yes' if ratio >= target else 'no'} | {rounds_text} |")
    return lines + [""]


EVALUATION_BUDGET_SECONDS = 1.0  # issue 21: full ranking of every ML-100K user, per model (SASRec)


def evaluation_table(data: PreparedData, spec: str, seed: int, models=tuple(SPEED_MODELS), repeats: int = 3) -> list:
    """Markdown rows: for each model trained one epoch, the seconds of `evaluate_split` (protocol
    "full", tracing included) and of the ranking alone with a traced scorer (median of `repeats`)."""
    arrays = data.eval_arrays("test", 50)
    lines = [f"#### Full-ranking evaluation of every test user on {spec} ({len(arrays.targets):,} users, "
             f"{data.vocab.size:,} items)", "",
             "| model | `evaluate_split` s (tracing included) | ranking s, traced scorer (median) | "
             f"≤ {EVALUATION_BUDGET_SECONDS:.0f} s? | full HR@10 after one epoch |", "|---|---:|---:|---|---:|"]
    for model in models:
        config = TrainConfig(model=model, hyperparameters=dict(SPEED_MODELS[model]), max_len=50, epochs=1, seed=seed)
        net, _, _ = fit(config, data.train_sequences, data.vocab.size, data.item_counts, verbose=0)
        start = time.perf_counter()
        figures = evaluate_split(net, data, config, protocols=("full",))["full"].metrics
        whole = time.perf_counter() - start
        scorer, features = Scorer(net), model_features(net, arrays.features)

        def rank():
            return evaluate(scorer, arrays.histories, arrays.targets, protocol="full", features=features, top_k=10)

        rank()
        ranking = []
        for _ in range(repeats):
            start = time.perf_counter()
            rank()
            ranking.append(time.perf_counter() - start)
        ranking = statistics.median(ranking)
        lines.append(f"| {model} | {whole:.2f} | {ranking:.2f} | "
                     f"{'yes' if ranking <= EVALUATION_BUDGET_SECONDS else 'no'} | {figures['HR@10']:.4f} |")
    return lines + [""]


def time_to_result(model: str, epochs: int, seed: int, check_every: int = 0) -> dict:
    """What `tfrec_dyn.training.train` does without saving: prepare the data, `fit`,
    evaluate on the test split; wall time of all three."""
    start = time.perf_counter()
    config = TrainConfig(model=model, epochs=epochs, max_len=50, seed=seed)
    data = PreparedData.from_config(config)
    watch = TargetWatch(data, config, check_every)
    net, _, train_seconds = fit(config, data.train_sequences, data.vocab.size, data.item_counts,
                                callbacks=[watch], verbose=0)
    full = evaluate_split(net, data, config)["full"].metrics
    total = time.perf_counter() - start - watch.eval_seconds
    return {"name": f"{model}, {epochs} epochs, loss {net.loss_name}, seed {seed}", "total_seconds": total,
            "train_seconds": train_seconds - watch.eval_seconds, "HR@10": full["HR@10"],
            "NDCG@10": full["NDCG@10"], "first_epoch": watch.first_epoch, "first_seconds": watch.first_seconds}


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpus} CPU core(s) available (os.cpu_count() = {os.cpu_count()}), {platform.machine()}, "
            f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('GPU'))} GPU(s); "
            f"load average (1, 5, 15 min): {load}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throughput-epochs", type=int, default=4, help="per configuration; the first is dropped")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the throughput table")
    parser.add_argument("--models", nargs="+", default=list(SPEED_MODELS), choices=list(SPEED_MODELS))
    parser.add_argument("--data", nargs="+", default=["ml-100k"],
                        help="data sets of the throughput tables: names, or synthetic:USERS:ITEMS:MEAN_LENGTH")
    parser.add_argument("--sasrec-epochs", type=int, default=200)
    parser.add_argument("--gru4rec-epochs", type=int, default=100)
    parser.add_argument("--check-every", type=int, default=10,
                        help="epochs between the informational test-split checks (0: none)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds of the time-to-result runs (throughput uses the first)")
    parser.add_argument("--against", default=BASELINE_REVISION,
                        help="git revision whose library the throughput is compared with ('' to skip)")
    parser.add_argument("--against-epochs", type=int, default=12,
                        help="epochs of each measurement of the --against table (the first is dropped)")
    parser.add_argument("--skip-variants", action="store_true", help="leave out the table of the options")
    parser.add_argument("--skip-evaluation", action="store_true", help="leave out the evaluation table")
    parser.add_argument("--skip-time-to-result", action="store_true", help="throughput only")
    parser.add_argument("--out", help="also write the Markdown to this file")
    parser.add_argument("--child", choices=list(SPEED_MODELS), help=argparse.SUPPRESS)  # see child_throughput
    args = parser.parse_args(argv)
    if args.child:
        config = TrainConfig(model=args.child, hyperparameters=dict(SPEED_MODELS[args.child]))
        row = throughput(prepared_data(args.data[0]), config, 50, args.throughput_epochs, args.seeds[0])
        print(json.dumps({**row, "library": os.path.dirname(os.path.abspath(tfrec_dyn.__file__))}))
        return

    command = "TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/train_speed.py " + \
        " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    lines = [f"Command: `{command.strip()}`  ", f"Machine at start: {machine()}", ""]
    for spec in args.data if args.against else ():
        lines += against_table(spec, args.against, args.against_epochs, args.seeds[0], args.models, args.rounds)
    machine_gflops = matmul_gflops()
    for spec in () if args.skip_variants else args.data:
        lines += speed_table(prepared_data(spec), spec, args.throughput_epochs, args.seeds[0], machine_gflops,
                             args.models, args.rounds)

    if not args.skip_evaluation:
        lines += evaluation_table(prepared_data(args.data[0]), args.data[0], args.seeds[0], args.models, args.rounds)
    if not args.skip_time_to_result:
        sasrec = [time_to_result("sasrec", args.sasrec_epochs, seed, args.check_every) for seed in args.seeds]
        gru = [time_to_result("gru4rec", args.gru4rec_epochs, seed) for seed in args.seeds]
        gru_wall = statistics.mean(r["total_seconds"] for r in gru)
        lines += ["", "#### Time to result (data preparation + training + test evaluation, as `train` does)", "",
                  "| run | wall s | of which training s | full HR@10 | full NDCG@10 | wall ÷ mean GRU4Rec wall |",
                  "|---|---:|---:|---:|---:|---:|"]
        for runs in (sasrec, gru):
            for row in runs:
                lines.append(f"| {row['name']} | {row['total_seconds']:.0f} | {row['train_seconds']:.0f} | "
                             f"{row['HR@10']:.4f} | {row['NDCG@10']:.4f} | {row['total_seconds'] / gru_wall:.2f}× |")
            mean = {k: statistics.mean(r[k] for r in runs) for k in ("total_seconds", "train_seconds", *TARGET)}
            lines.append(f"| **{runs[0]['name'].split(',')[0]}, mean over seeds {' '.join(map(str, args.seeds))}** | "
                         f"{mean['total_seconds']:.0f} | {mean['train_seconds']:.0f} | {mean['HR@10']:.4f} | "
                         f"{mean['NDCG@10']:.4f} | {mean['total_seconds'] / gru_wall:.2f}× |")
        mean = {k: statistics.mean(r[k] for r in sasrec) for k in TARGET}
        reached = all(mean[k] >= v for k, v in TARGET.items())
        per_seed = sum(all(r[k] >= v for k, v in TARGET.items()) for r in sasrec)
        slowest = max(r["total_seconds"] for r in sasrec)
        lines += ["", f"SASRec target (full HR@10 >= {TARGET['HR@10']} and NDCG@10 >= {TARGET['NDCG@10']}, "
                      f"mean over seeds as in baselines_ml100k.py): {'reached' if reached else 'NOT reached'} "
                      f"(HR@10 {mean['HR@10']:.4f}, NDCG@10 {mean['NDCG@10']:.4f}); single runs meeting both: "
                      f"{per_seed} of {len(sasrec)}.  Slowest run {slowest:.0f} s = {slowest / BUDGET_SECONDS:.2f}× "
                      f"the {BUDGET_SECONDS:.0f} s budget ({'within' if slowest <= BUDGET_SECONDS else 'OVER'})."]
        if args.check_every:
            lines.append(f"Test-split check every {args.check_every} epochs (timing only, not model selection): " +
                         "; ".join(f"seed {seed}: " + (f"target first held at epoch {r['first_epoch']} after "
                                                       f"{r['first_seconds']:.0f} s of training" if r["first_epoch"]
                                                       else "never held at a check")
                                   for seed, r in zip(args.seeds, sasrec)) + ".")
    lines += ["", f"Machine at end: {machine()}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
