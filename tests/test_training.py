"""The trainer end to end, distribution strategies, mixed precision, run directories."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfrec_dyn.data import Interactions
from tfrec_dyn.training import PreparedData, Run, TrainConfig, train
from tfrec_dyn.training.strategy import make_strategy
from tfrec_dyn.training.trainer import fit

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
    assert len(result.history["val_NDCG@10"]) == 2
    # A random ranker's expected full-ranking HR@10 is about 10 / #candidates.
    random_hr = 10 / (ml100k_slice.vocab.size - 2 - config.max_len)
    assert result.metrics["full"]["HR@10"] > 2 * random_hr
    assert result.metrics["sampled"]["HR@10"] > 2 * 10 / 101
    beyond = result.metrics["full"]
    assert 0 < beyond["Coverage@10"] <= 1 and 0 <= beyond["Gini@10"] <= 1 and 0 <= beyond["TailShare@10"] <= 1

    run = Run.load(str(tmp_path / "run"))
    assert run.config == config and run.vocab == ml100k_slice.vocab
    arrays = ml100k_slice.eval_arrays("test", config.max_len)
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


def test_interrupted_training_resumes_where_it_stopped(ml100k_slice, tmp_path):
    config = TrainConfig(model="gru4rec", epochs=4, max_len=20, strategy="mirrored")
    args = (config, ml100k_slice.train_sequences, ml100k_slice.vocab.size, ml100k_slice.item_counts)
    first = _Recorder(stop_at=2)
    with pytest.raises(_Interrupt):
        fit(*args, callbacks=[first], verbose=0, backup_dir=str(tmp_path / "backup"))
    second = _Recorder()
    model, history, _ = fit(*args, callbacks=[second], verbose=0, backup_dir=str(tmp_path / "backup"))
    assert first.epochs == [0, 1] and second.epochs == [2, 3]
    assert len(history.history["loss"]) == 2
    assert not os.path.exists(tmp_path / "backup" / "chief")  # removed once training finished


def test_sampled_negatives_are_fixed_per_split(ml100k_slice, tmp_path):
    """Two models (different seeds) are scored against the same stored candidates."""
    from tfrec_dyn.training.trainer import sampled_negatives

    arrays = ml100k_slice.eval_arrays("test", 20)
    first = sampled_negatives(ml100k_slice, arrays, TrainConfig(seed=1), cache_dir=str(tmp_path))
    second = sampled_negatives(ml100k_slice, arrays, TrainConfig(seed=2), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(first.negatives, second.negatives)
    assert len(os.listdir(tmp_path / "negatives")) == 1
    for known, negatives in zip(arrays.known_items, first.negatives):
        assert not set(known) & set(negatives)


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


_DISTRIBUTED = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrec_dyn.data import load_dataset
from tfrec_dyn.training import PreparedData, TrainConfig, train
data = PreparedData.from_interactions(load_dataset("ml-100k").subset(range(100)))
config = TrainConfig(model=sys.argv[2], epochs=2, max_len=20, batch_size=16, strategy="mirrored",
                     mixed_precision=sys.argv[1] == "mixed", eval_protocols=("full",), trainer=sys.argv[3],
                     trainer_options={"windows_per_user": 4} if sys.argv[3] == "tp" else {})
result = train(config, verbose=0, data=data)
print(json.dumps({"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                  "policy": result.model.layers[0].dtype_policy.name,
                  "loss": result.history["loss"], "hr": result.metrics["full"]["HR@10"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("model, precision, trainer", [("sasrec", "float32", "standard"), ("sasrec", "mixed", "standard"),
                                                        ("retr", "mixed", "standard"), ("caser", "mixed", "tp")])
def test_mirrored_strategy_on_two_logical_cpus(model, precision, trainer):
    # A fresh interpreter: logical devices must be configured before TF starts.
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    out = subprocess.run([sys.executable, "-c", "import tfrec_dyn\n" + _DISTRIBUTED, precision, model, trainer],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["policy"] == ("mixed_float16" if precision == "mixed" else "float32")
    assert all(np.isfinite(report["loss"])) and 0.0 <= report["hr"] <= 1.0


_MULTI_WORKER = r"""
import json, sys
import tfrec_dyn
from tfrec_dyn.data import load_dataset
from tfrec_dyn.training import PreparedData, TrainConfig, train
data = PreparedData.from_interactions(load_dataset("ml-100k").subset(range(100)))
config = TrainConfig(model="gru4rec", epochs=2, max_len=20, batch_size=16, strategy="multi_worker",
                     eval_protocols=("full",))
result = train(config, verbose=0, data=data)
print(json.dumps({"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                  "loss": result.history["loss"]}))
"""


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_processes():
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CONFIG=json.dumps(tf_config))
        processes.append(subprocess.Popen([sys.executable, "-c", _MULTI_WORKER], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env, cwd=REPO))
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["replicas"] for r in reports] == [2, 2]
    # Both workers take the same synchronous steps, so they see the same losses.
    np.testing.assert_allclose(reports[0]["loss"], reports[1]["loss"], rtol=1e-5)
