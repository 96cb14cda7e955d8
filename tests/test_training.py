"""The trainer end to end, distribution strategies, mixed precision, run directories."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfrec_dyn.data import Interactions
from tfrec_dyn.data.splits import sample_users
from tfrec_dyn.metrics import evaluate
from tfrec_dyn.metrics.evaluation import beyond_accuracy
from tfrec_dyn.training import PreparedData, Run, TrainConfig, train
from tfrec_dyn.training.strategy import make_strategy
from tfrec_dyn.training.trainer import fit
from tfrec_dyn.training.validation import early_stopping

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ml100k_slice(ml100k):
    """300 MovieLens-100K users: small enough for seconds-long tests."""
    return PreparedData.from_interactions(ml100k.subset(range(300)))


@pytest.mark.slow
def test_sasrec_end_to_end_loss_falls_and_beats_random(ml100k_slice, tmp_path):
    config = TrainConfig(model="sasrec", epochs=8, max_len=30, loss="ce", validate_every=4)
    result = train(config, out_dir=str(tmp_path / "run"), verbose=0, data=ml100k_slice)
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert result.history["validation"]["epoch"] == [4, 8]
    with open(tmp_path / "run" / "history.json") as f:
        assert json.load(f)["validation"] == result.history["validation"]  # the curve is saved with the run
    with open(tmp_path / "run" / "metrics.json") as f:  # the protocol is recorded with the figures
        protocol = json.load(f)["protocol"]
    assert protocol["collapse_repeats"] is False and protocol["exclude_seen"] is True
    # A random ranker's expected full-ranking HR@10 is about 10 / #candidates.
    random_hr = 10 / (ml100k_slice.vocab.size - 2 - config.max_len)
    assert result.metrics["full"]["HR@10"] > 2 * random_hr
    assert result.metrics["sampled"]["HR@10"] > 2 * 10 / 101
    # The recorded beyond-accuracy figures are those of the model's own top-10 lists (another code
    # path: the whole score matrix and top_k, not the chunked fold); 1e-3 allows a near-tie at the cut.
    arrays = ml100k_slice.eval_arrays("test", config.max_len)
    lists = result.model.recommend({"item_ids": arrays.histories}, k=10)[0].numpy()
    figures = beyond_accuracy(lists, ml100k_slice.vocab.size, ml100k_slice.item_counts)
    for name, value in figures.items():
        assert abs(result.metrics["full"][name] - value) < 1e-3, (name, result.metrics["full"][name], value)

    run = Run.load(str(tmp_path / "run"))
    assert run.config == config and run.vocab == ml100k_slice.vocab
    batch = {"item_ids": arrays.histories[:20]}
    np.testing.assert_array_equal(run.model.recommend(batch, k=10)[0], result.model.recommend(batch, k=10)[0])
    assert os.path.exists(tmp_path / "run" / "negatives_test.npz")


class _Interrupt(Exception):
    pass


class _Recorder(tf_keras.callbacks.Callback):
    """Records the epochs that start; `stop_at` simulates a crash as that epoch begins."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.epochs, self.stop_at = [], stop_at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            raise _Interrupt()
        self.epochs.append(epoch)


@pytest.mark.parametrize("trainer", ["standard", "tp"])
def test_interrupted_training_resumes_where_it_stopped(ml100k_slice, tmp_path, trainer):
    # Dropout off: its masks come from the process's random generator, which starts afresh on resume
    # (not checkpointed), so with dropout the two runs agree in metrics, not to the last bit.
    config = TrainConfig(model="gru4rec", epochs=4, max_len=20, strategy="mirrored", trainer=trainer,
                         hyperparameters={"dropout": 0.0}, validation_smoothing=2,
                         trainer_options={"windows_per_user": 4} if trainer == "tp" else {})
    args = (config, ml100k_slice.train_sequences, ml100k_slice.vocab.size, ml100k_slice.item_counts)
    validation = ml100k_slice.eval_arrays("validation", config.max_len)
    first = _Recorder(stop_at=2)
    with pytest.raises(_Interrupt):
        fit(*args, callbacks=[first], verbose=0, backup_dir=str(tmp_path / "backup"), validation=validation)
    second = _Recorder()
    resumed, history, _ = fit(*args, callbacks=[second], verbose=0, backup_dir=str(tmp_path / "backup"),
                              validation=validation)
    assert first.epochs == [0, 1] and second.epochs == [2, 3]
    assert len(history.history["loss"]) == 2
    assert not os.path.exists(tmp_path / "backup")  # removed once training finished
    # The resumed run is the uninterrupted one: same batches, same optimizer state, same weights,
    # the same validation curve and best epoch (the early-stopping state is backed up too).
    uninterrupted, full_history, _ = fit(*args, verbose=0, validation=validation)
    np.testing.assert_allclose(history.history["loss"], full_history.history["loss"][2:], rtol=1e-5)
    assert history.validation["epoch"] == [1, 2, 3, 4]
    assert history.validation["best_epoch"] == full_history.validation["best_epoch"]
    np.testing.assert_allclose(history.validation["NDCG@10"], full_history.validation["NDCG@10"], atol=1e-6)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_early_stopping_on_a_noisy_curve_with_and_without_smoothing():
    """A lucky check (0.30) that no later check beats stops training three checks
    on and keeps it; watching the mean of three checks rides out the spike and
    keeps the top of the real rise (0.25, 0.23 after it)."""
    curve = [0.10, 0.30, 0.12, 0.20, 0.22, 0.24, 0.25, 0.23, 0.22, 0.21, 0.20, 0.19]
    assert early_stopping(curve, patience=3) == (1, 4)
    assert early_stopping(curve, patience=3, smoothing=3) == (7, 10)
    assert early_stopping(curve, patience=0, smoothing=3) == (7, None)  # 0: never stops
    assert early_stopping(curve[:9], patience=3, smoothing=3) == (7, None)  # still going
    assert early_stopping([0.2, 0.2, 0.2], patience=2) == (0, 2)  # a tie is no improvement


@pytest.mark.parametrize("smoothing", [1, 2])
def test_validation_stops_training_and_restores_the_best_weights(ml100k_slice, smoothing):
    """Two epochs of normal training, then a learning rate that wrecks the model:
    validation NDCG@10 falls, training stops `patience` checks after the best one,
    and the model that comes back scores the best check's figure, not the last
    one's.  With smoothing the best is that of the mean of the last checks."""
    config = TrainConfig(model="sasrec", epochs=20, max_len=20, patience=2, validation_users=200,
                         validation_smoothing=smoothing)
    validation = ml100k_slice.eval_arrays("validation", config.max_len)
    wreck = tf_keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-2 if epoch < 2 else 5.0)
    model, history, _ = fit(config, ml100k_slice.train_sequences, ml100k_slice.vocab.size, ml100k_slice.item_counts,
                            callbacks=[wreck], verbose=0, validation=validation)
    curve = history.validation
    assert curve["stopped_epoch"] == curve["best_epoch"] + config.patience < config.epochs
    assert len(history.history["loss"]) == curve["stopped_epoch"] == curve["epoch"][-1]
    assert curve["users"] == 200 and curve["smoothing"] == smoothing
    best = curve["best_epoch"] - 1
    assert early_stopping(curve["NDCG@10"], config.patience, smoothing) == (best, len(curve["NDCG@10"]) - 1)
    window = curve["NDCG@10"][max(0, best + 1 - smoothing):best + 1]
    assert curve["NDCG@10"][-1] < curve["best_NDCG@10"] == pytest.approx(np.mean(window))
    sample = validation.rows(sample_users(validation.user_ids, 200))
    restored = evaluate(model, sample.histories, sample.targets, ks=(10,)).metrics["NDCG@10"]
    assert restored == pytest.approx(curve["NDCG@10"][best], abs=1e-6)


def test_a_backup_of_other_settings_is_refused(ml100k_slice, tmp_path):
    config = TrainConfig(model="gru4rec", epochs=2, max_len=20)
    args = (ml100k_slice.train_sequences, ml100k_slice.vocab.size, ml100k_slice.item_counts)
    with pytest.raises(_Interrupt):
        fit(config, *args, callbacks=[_Recorder(stop_at=1)], verbose=0, backup_dir=str(tmp_path / "backup"))
    with pytest.raises(ValueError, match="holds the state of an interrupted training with other settings"):
        fit(TrainConfig(model="sasrec", epochs=2, max_len=20), *args, verbose=0, backup_dir=str(tmp_path / "backup"))


@pytest.mark.slow
def test_cli_training_killed_mid_run_resumes_from_its_last_epoch(tmp_path):
    import signal
    import time

    from tfrec_dyn.data import load_dataset

    data = load_dataset("ml-100k").subset(range(300))
    log = tmp_path / "interactions.txt"
    log.write_text("".join(f"{u} {i}\n" for u, items in zip(data.user_ids, data.items) for i in items))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")

    def command(run):
        return [sys.executable, "-m", "tfrec_dyn", "train", "--model", "gru4rec", "--data", str(log), "--epochs", "8",
                "--max-len", "20", "--hp", "dropout=0", "--out", str(run), "--json", "--quiet"]

    run = tmp_path / "run"
    process = subprocess.Popen(command(run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
    deadline = time.monotonic() + 300
    try:
        # SIGKILL once at least two epochs are backed up (and before the run is done). The
        # index names only the latest checkpoint, so a poll that misses ckpt-2 sees ckpt-3.
        while time.monotonic() < deadline and process.poll() is None:
            index = run / "backup" / "chief" / "checkpoint"
            saved = [int(n) for n in re.findall(r"ckpt-(\d+)", index.read_text())] if index.exists() else []
            if saved and 2 <= max(saved) < 8:
                break
            time.sleep(0.05)
        assert process.poll() is None, "training ended before it could be interrupted"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run(command(run), capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch" in resumed.stdout
    epochs_done = int(resumed.stdout.split("resuming after epoch ")[1].split()[0])
    assert 2 <= epochs_done < 8
    uninterrupted = subprocess.run(command(tmp_path / "uninterrupted"), capture_output=True, text=True, env=env,
                                   cwd=REPO, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    figures = [json.loads(out.stdout.strip().splitlines()[-1])["protocols"] for out in (resumed, uninterrupted)]
    for protocol in ("full", "sampled"):
        for name in ("HR@10", "NDCG@10", "MRR"):
            assert figures[0][protocol][name] == pytest.approx(figures[1][protocol][name], abs=1e-6), (protocol, name)
    # The resumed process trained only the epochs that were left.
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 8 - epochs_done


def test_sampled_negatives_are_fixed_per_split(ml100k_slice, tmp_path):
    """Every evaluation of a split (any model, any seed) is scored against the same stored candidates."""
    from tfrec_dyn.metrics.evaluation import split_negatives

    arrays = ml100k_slice.eval_arrays("test", 20)
    first = split_negatives(arrays, ml100k_slice.vocab, ml100k_slice.item_counts, cache_dir=str(tmp_path))
    second = split_negatives(arrays, ml100k_slice.vocab, ml100k_slice.item_counts, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(first.negatives, second.negatives)
    assert len(os.listdir(tmp_path / "negatives")) == 1
    for known, negatives in zip(arrays.known_items, first.negatives):
        assert not set(known) & set(negatives)


def test_a_write_of_the_negatives_cache_cut_short_leaves_no_file_to_read(ml100k_slice, tmp_path, monkeypatch):
    """The cache file appears whole or not at all: a write that fails half-way (a full disk, a
    killed process) leaves nothing a later run or a concurrent one would load as the split's draw."""
    from tfrec_dyn.metrics.evaluation import split_negatives
    from tfrec_dyn.metrics.protocols import SampledNegatives

    arrays = ml100k_slice.eval_arrays("test", 20)
    args = (arrays, ml100k_slice.vocab, ml100k_slice.item_counts)
    whole_save = SampledNegatives.save

    def save_half(self, path):
        written = whole_save(self, path)
        with open(written, "r+b") as f:
            f.truncate(os.path.getsize(written) // 2)
        raise OSError("No space left on device")

    monkeypatch.setattr(SampledNegatives, "save", save_half)
    with pytest.raises(OSError, match="No space left"):
        split_negatives(*args, cache_dir=str(tmp_path))
    assert os.listdir(tmp_path / "negatives") == []
    monkeypatch.undo()
    drawn = split_negatives(*args, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(split_negatives(*args, cache_dir=str(tmp_path)).negatives, drawn.negatives)


@pytest.mark.parametrize("model, loss", [("sasrec", "bce"), ("gru4rec", "ce"), ("caser", "gbce")])
def test_xla_and_several_steps_per_execution_train_the_same_model(ml100k_slice, model, loss):
    # Dropout off: XLA draws its own dropout masks. Everything else is the same computation, so the
    # weights after an epoch agree to float32 round-off. (Under XLA the full softmax's mean once
    # counted every padded position.)
    def trained(**settings):
        config = TrainConfig(model=model, loss=loss, epochs=1, max_len=10, hyperparameters={"dropout": 0.0},
                             **settings)
        net, history, _ = fit(config, ml100k_slice.train_sequences, ml100k_slice.vocab.size,
                              ml100k_slice.item_counts, verbose=0)
        return net.get_weights(), history.history["loss"]

    reference, reference_loss = trained(jit_compile=False, steps_per_execution=1)
    for settings in ({"steps_per_execution": 3}, {"jit_compile": True}):
        weights, losses = trained(**settings)
        np.testing.assert_allclose(losses, reference_loss, rtol=1e-4)
        for a, b in zip(weights, reference):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_xla_is_refused_where_it_is_not_checked(ml100k_slice):
    with pytest.raises(ValueError, match="jit_compile: rdrsr's train step is not checked under XLA"):
        fit(TrainConfig(model="rdrsr", epochs=1, jit_compile=True), ml100k_slice.train_sequences,
            ml100k_slice.vocab.size, ml100k_slice.item_counts, verbose=0)
    with pytest.raises(ValueError, match="jit_compile is for the 'standard' trainer"):
        TrainConfig(trainer="tp", jit_compile=True)


def test_prepared_data_keeps_every_item_rankable():
    data = Interactions(["u1", "u2"], [np.array(list("abcd"), object), np.array(list("bcde"), object)])
    prepared = PreparedData.from_interactions(data)
    arrays = prepared.eval_arrays("test", 5)
    assert prepared.vocab.decode(arrays.targets) == ["d", "e"]  # "e" only ever appears as a test target
    assert prepared.item_counts[prepared.vocab.encode(["e"])[0]] == 0  # counts come from train only


def test_config_validation_and_json_round_trip():
    config = TrainConfig(model="gru4rec", hyperparameters={"hidden_dim": 32}, eval_protocols=["full"])
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_json('{"epocs": 3}')


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")


def test_one_step_on_two_replicas_equals_one_device():
    # A fresh interpreter: logical devices must be configured before TF starts.
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    out = subprocess.run([sys.executable, os.path.join(REPO, "tests", "distributed_step.py")], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(report) == {"sasrec", "gru4rec", "rdrsr", "tp"}
    for name, figures in report.items():
        # The step moves the weights by far more than the two results differ: a gradient that were
        # R× too large (or an α that were R·α) would put them as far apart as the step itself.
        assert figures["moved"] > 1e-3, name
        assert figures["diff"] < 1e-5, (name, figures)
        np.testing.assert_allclose(*figures["loss"], rtol=1e-5, err_msg=name)


_DISTRIBUTED = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrec_dyn.data import load_dataset
from tfrec_dyn.training import PreparedData, TrainConfig, train
data = PreparedData.from_interactions(load_dataset("ml-100k").subset(range(200)))
report = {}
for model, precision, trainer in json.loads(sys.argv[1]):
    config = TrainConfig(model=model, epochs=3, max_len=20, batch_size=16, strategy="mirrored",
                         mixed_precision=precision == "mixed", eval_protocols=("full",), trainer=trainer,
                         trainer_options={"windows_per_user": 4} if trainer == "tp" else {})
    result = train(config, verbose=0, data=data)
    report[f"{model}-{precision}-{trainer}"] = {
        "replicas": result.model.distribute_strategy.num_replicas_in_sync,
        "policy": result.model.layers[0].dtype_policy.name, "loss": result.history["loss"],
        "hr": result.metrics["full"]["HR@10"]}
print(json.dumps(report))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus():
    """Whole trainings under MirroredStrategy, with mixed precision and the TP trainer (SASRec in
    float32 is test_one_step_on_two_replicas_equals_one_device's), one after another in one fresh
    interpreter (logical devices must be configured before TF starts), as a benchmark trains them
    on a machine with several GPUs: with a new MirroredStrategy each, the second one failed in
    TF's all-reduce (tensorflow/tensorflow#62790)."""
    runs = [("sasrec", "mixed", "standard"), ("retr", "mixed", "standard"), ("caser", "mixed", "tp")]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    out = subprocess.run([sys.executable, "-c", "import tfrec_dyn\n" + _DISTRIBUTED, json.dumps(runs)],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(report) == ["-".join(run) for run in runs]
    for name, figures in report.items():
        assert figures["replicas"] == 2, name
        assert figures["policy"] == "mixed_float16", name
        # It learns under the strategy (that its steps are the right ones is the test above): the
        # loss falls every epoch, and the evaluation after it ran.
        assert all(later < earlier for earlier, later in zip(figures["loss"], figures["loss"][1:])), (name, figures)
        assert np.isfinite(figures["hr"]), name


_MULTI_WORKER = r"""
import json, os, sys
import tfrec_dyn
from tfrec_dyn.data import load_dataset
from tfrec_dyn.training import PreparedData, TrainConfig, train
data = PreparedData.from_interactions(load_dataset("ml-100k").subset(range(100)))
config = TrainConfig(model="gru4rec", epochs=2, max_len=20, batch_size=16, strategy="multi_worker",
                     eval_protocols=("full", "sampled"))
result = train(config, out_dir=sys.argv[1], verbose=0, data=data)
print(json.dumps({"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                  "loss": result.history["loss"], "run_dir": result.run_dir,
                  "run_dir_left": os.path.exists(result.run_dir)}))
"""


def _free_ports(n):
    """n free ports below the kernel's ephemeral range: a port taken from that range (bind to 0)
    can be handed out again, between our close and the worker's bind, as the local end of
    another connection - the first worker's outgoing gRPC connections among them."""
    import random
    import socket

    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    ports = []
    for port in random.Random(os.getpid()).sample(range(10000, min(ephemeral_low, 30000)), 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free ports below the ephemeral range")


def run_local_workers(script, args, env, count=2, timeout=240):
    """Runs `script` as `count` MultiWorkerMirroredStrategy workers on 127.0.0.1 and returns each
    one's last stdout line as JSON. A worker that fails ends the others at once (they would wait
    for it forever); a worker still running after `timeout` s fails the test by its index."""
    import time

    workers = [f"127.0.0.1:{port}" for port in _free_ports(count)]
    processes = []
    for index in range(count):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, cwd=REPO,
                                          env=dict(env, TF_CONFIG=json.dumps(tf_config))))
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes):
            failed = [i for i, p in enumerate(processes) if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                for p in processes:
                    p.kill()
                outputs = [p.communicate()[1][-2000:] for p in processes]
                what = f"worker {failed[0]} failed" if failed else \
                    f"worker(s) {[i for i, p in enumerate(processes) if p.returncode == -9]} stalled past {timeout} s"
                pytest.fail(f"{what}; stderr tails:\n" + "\n".join(f"--- worker {i}\n{o}" for i, o in enumerate(outputs)))
            time.sleep(0.5)
        outputs = [p.communicate() for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for index, (p, (_, err)) in enumerate(zip(processes, outputs)):
        assert p.returncode == 0, f"worker {index}: {err[-3000:]}"
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_processes(tmp_path):
    run = str(tmp_path / "run")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TFREC_DYN_CACHE=str(tmp_path / "cache"))
    reports = run_local_workers(_MULTI_WORKER, [run], env)
    assert [r["replicas"] for r in reports] == [2, 2]
    # Both workers take the same synchronous steps, so they see the same losses.
    np.testing.assert_allclose(reports[0]["loss"], reports[1]["loss"], rtol=1e-5)
    # Only the chief (worker 0) writes the run and the negatives cache; the other wrote to a
    # temporary directory that is gone.
    assert reports[0]["run_dir"] == run and reports[0]["run_dir_left"]
    assert reports[1]["run_dir"] != run and not reports[1]["run_dir_left"]
    assert Run.load(run).config.strategy == "multi_worker"
    assert len(os.listdir(tmp_path / "cache" / "negatives")) == 1


def test_fit_trains_under_the_strategy_it_is_given(ml100k_slice):
    """`fit` builds the model in the caller's strategy scope, not in a second strategy of its own."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = TrainConfig(model="sasrec", epochs=1, max_len=10, validate_every=0)
    model, _, _ = fit(config, ml100k_slice.train_sequences, ml100k_slice.vocab.size, ml100k_slice.item_counts,
                      verbose=0, strategy=strategy)
    assert model.distribute_strategy is strategy
