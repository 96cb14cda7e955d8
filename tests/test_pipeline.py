"""The TFX pipeline end to end on a slice of MovieLens-100K, checked in ML Metadata.

The pipeline runs as a user runs it, `python pipelines/local_runner.py`, in a
subprocess (its exit status is checked too).
"""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = ["SequenceExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher", "ReportWriter"]


def _executions(metadata_path):
    """component -> states of its executions, in order."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    states = {}
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        node = store.get_execution_types_by_id([execution.type_id])[0].name
        states.setdefault(node, []).append(metadata_store_pb2.Execution.State.Name(execution.last_known_state))
    return states


def _run(data, root, serving, model="sasrec", extra=(), hr_threshold=0.0, returncode=0):
    """The local runner; `hr_threshold` 0 blesses any model that passes the change threshold.
    Checks what a person sees: the log's path first, nothing of the log on the terminal."""
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "pipelines", "local_runner.py"), "--data", str(data), "--epochs", "1",
         "--max-len", "20", "--pipeline-root", str(root), "--serving-root", str(serving),
         "--beam-mode", "in_memory", "--hr-threshold", str(hr_threshold), "--model", model, *extra],
        capture_output=True, text=True, timeout=900, cwd=REPO, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    log = out.stdout.splitlines()[0].split("log: ", 1)[-1] if out.stdout else ""
    assert os.path.isfile(log) and log.startswith(str(root / "logs")), out.stdout[-3000:] + out.stderr[-3000:]
    assert out.returncode == returncode, out.stdout[-4000:] + open(log).read()[-4000:]
    assert out.stderr == "", out.stderr[-3000:]  # TensorFlow's, absl's and Beam's output: in the log only
    shown = {line.strip() for line in out.stdout.splitlines() if not line.startswith("  | ")}  # not a failure's tail
    logged = {line.strip() for line in open(log) if len(line.strip()) > 30}
    assert not shown & logged, shown & logged
    return out.stdout


def _tensorboard_scalars(log_dir, run, tag):
    """The values of `tag`'s epoch summaries in `log_dir/run`, as TensorBoard reads them."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(str(log_dir), run))
    events.Reload()
    tags = [t for t in events.Tags()["tensors"] if t == f"epoch_{tag}"]
    assert tags, events.Tags()
    return [float(tf.make_ndarray(e.tensor_proto)) for e in sorted(events.Tensors(tags[0]), key=lambda e: e.step)]


def _latest_artifact(metadata_path, type_name):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return max(metadata_store.MetadataStore(connection).get_artifacts_by_type(type_name), key=lambda a: a.id)


def _cli_evaluate(run_dir):
    out = subprocess.run([sys.executable, "-m", "tfrec_dyn", "evaluate", str(run_dir), "--protocol", "full",
                          "--split", "test", "--json"], capture_output=True, text=True, timeout=600, cwd=REPO,
                         env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _node(states, component):
    return next(states[node] for node in states if node.endswith(component))


def _slice_of_ml100k(folder, lines=4000):
    folder.mkdir()
    with open(os.path.join(REPO, "tfrec_dyn", "data", "resources", "ml-100k", "u.data")) as f:
        (folder / "u.data").write_text("".join(next(f) for _ in range(lines)) + "not a valid line\n")


def _patterned_log(folder, num_users=300, num_items=200, seed=0):
    """An ML-100K-format log with a pattern to learn (item i is followed by item
    i + 1) and one malformed line: a trained model's HR@10 is far above an
    untrained one's (about 10/200)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = []
    for user in range(num_users):
        start = rng.integers(num_items)
        for step, item in enumerate((start + np.arange(rng.integers(6, 12))) % num_items):
            lines.append(f"{user + 1}\t{item + 1}\t4\t{880000000 + 1000 * user + step}\n")
    folder.mkdir()
    (folder / "u.data").write_text("".join(lines) + "not a valid line\n")


def _serve_pushed(*version_dirs):
    """Top-5 from each pushed model, in one fresh process that does not import tfrec_dyn:
    a list, or with several models {model folder name: list}."""
    code = ("import json, sys, tensorflow as tf\n"
            "tops = {}\n"
            "for path in sys.argv[1:]:\n"
            "    m = tf.saved_model.load(path)\n"
            "    f = m.signatures['serving_default']\n"
            "    unknown = {n: tf.constant([[-1.0]]) for n in f.structured_input_signature[1] if n == 'timestamp'}\n"
            "    out = f(item_ids=tf.constant([['50', '172']]), k=tf.constant(5), exclude_seen=tf.constant(True),"
            " **unknown)\n"
            "    tops[path] = [t.decode() for t in out['item_ids'].numpy()[0]]\n"
            "print(json.dumps(tops))\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, version_dirs)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    tops = json.loads(out.stdout.strip().splitlines()[-1])
    if len(version_dirs) == 1:
        return tops[str(version_dirs[0])]
    return {os.path.basename(os.path.dirname(path)): top for path, top in tops.items()}


@pytest.mark.slow
def test_pipeline_runs_pushes_and_reruns_from_cache(tmp_path):
    """One pipeline, three runs: push; rerun from the cache with a value threshold
    above what the model reaches; a worse model against the change threshold.
    The Evaluator's HR@10 / NDCG@10 are `tfrec-dyn evaluate`'s on the Trainer's
    model, both on the same seeded sample of 150 of the 300 users (`--eval-users`;
    the other pipeline tests evaluate every user)."""
    from pipelines.report import evaluation_figures

    data, root, serving = tmp_path / "data", tmp_path / "root", tmp_path / "serving"
    _patterned_log(data)
    metadata = str(root / "metadata.sqlite")

    report = _run(data, root, serving, extra=("--epochs", "10", "--eval-users", "150"))
    states = _executions(metadata)
    for component in COMPONENTS:
        assert _node(states, component) == ["COMPLETE"], (component, states)
        assert re.search(rf"^{component} +done +\d+\.\d s", report, re.M), (component, report)
    assert re.search(r"^Trainer +done .*10 of at most 10 epochs, best validation NDCG@10", report, re.M), report
    assert "1 quarantined" in report and "blessed: True" in report and "curl -s -X POST" in report
    versions = os.listdir(serving / "sasrec")
    assert len(versions) == 1 and versions[0].isdigit()
    assert os.path.exists(serving / "sasrec" / versions[0] / "saved_model.pb")
    # The run's report next to the pushed model (tests/test_report.py opens one in a browser).
    page = (serving / "sasrec" / versions[0] / "report.html").read_text()
    assert all(f'data-plot="{plot}"' in page for plot in ("sequence-lengths", "training", "metrics")), page[:500]
    assert f"report: {serving / 'sasrec' / versions[0] / 'report.html'}" in report
    assert len(_serve_pushed(serving / "sasrec" / versions[0])) == 5
    # The Trainer validated on the pipeline's validation split every epoch, and kept the curve.
    with open(os.path.join(_latest_artifact(metadata, "ModelRun").uri, "run", "history.json")) as f:
        validation = json.load(f)["validation"]
    assert validation["epoch"] == list(range(1, 11)) and validation["users"] == 300, validation
    assert max(validation["NDCG@10"]) > 0.3, validation
    # ... and wrote it for TensorBoard in the Trainer's model_run_dir, as TFX users expect.
    assert _tensorboard_scalars(_latest_artifact(metadata, "ModelRun").uri, "validation", "NDCG@10") == \
        pytest.approx(validation["NDCG@10"], abs=1e-6)

    # The same model, the same data, one protocol: the same figures.
    evaluator = evaluation_figures(_latest_artifact(metadata, "ModelEvaluation").uri)
    cli = _cli_evaluate(os.path.join(_latest_artifact(metadata, "ModelRun").uri, "run"))
    assert evaluator["example_count"] == 150, evaluator
    for name in ("HR@10", "NDCG@10", "MRR"):
        assert evaluator[name] == pytest.approx(cli[name], abs=1e-6), (name, evaluator, cli)
    hit_rate = evaluator["HR@10"]
    assert hit_rate > 0.5, evaluator  # it learned the pattern

    # A second run with nothing changed but a value threshold above the model's HR@10 reuses the
    # cached executions up to the Trainer (the Evaluator reruns), and blesses nothing, pushes nothing.
    pushed = sorted(os.listdir(serving / "sasrec"))
    rerun = _run(data, root, serving, extra=("--epochs", "10", "--eval-users", "150"), hr_threshold=hit_rate + 0.01)
    states = _executions(metadata)
    for component in ["SequenceExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer"]:
        assert _node(states, component) == ["COMPLETE", "CACHED"], (component, states)
        assert re.search(rf"^{component} +cached ", rerun, re.M), (component, rerun)
    assert "blessed: False" in rerun and "not pushed" in rerun, rerun
    # A deliberately worse model (untrained for all practical purposes: one
    # epoch at a tiny learning rate) against the change threshold: rejected.
    report = _run(data, root, serving, extra=("--learning-rate", "1e-7", "--eval-users", "150"))
    assert "blessed: False" in report and "not pushed" in report, report
    worse = evaluation_figures(_latest_artifact(metadata, "ModelEvaluation").uri)
    assert worse["HR@10"] < hit_rate - 0.02, (worse, hit_rate)
    assert sorted(os.listdir(serving / "sasrec")) == pushed


@pytest.mark.slow
def test_pipeline_rerun_after_sigkill_resumes_the_trainer(tmp_path):
    """The local runner killed (SIGKILL) while the Trainer trains; the same
    command again resumes the training from its last completed epoch."""
    import glob
    import signal
    import time

    data, root, serving = tmp_path / "data", tmp_path / "root", tmp_path / "serving"
    _patterned_log(data, num_users=1000)  # an epoch long enough that the kill lands before the last one
    epochs = 12
    command = [sys.executable, os.path.join(REPO, "pipelines", "local_runner.py"), "--data", str(data),
               "--epochs", str(epochs), "--patience", "0", "--max-len", "20", "--pipeline-root", str(root),
               "--serving-root", str(serving), "--beam-mode", "in_memory", "--hr-threshold", "0"]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                 start_new_session=True)
        deadline = time.time() + 600
        while first.poll() is None and time.time() < deadline:
            if glob.glob(str(root / "**" / "model_run" / "backup" / "*" / "chief" / "checkpoint"), recursive=True):
                break  # an epoch is backed up
            time.sleep(0.2)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert _node(_executions(str(root / "metadata.sqlite")), "Trainer")[-1] != "COMPLETE"

    second = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert second.returncode == 0, second.stderr[-4000:]
    resumed = re.search(r"^Trainer +done .*; resumed after epoch (\d+)", second.stdout, re.M)
    assert resumed, second.stdout[-3000:]
    trainer = _node(_executions(str(root / "metadata.sqlite")), "Trainer")
    assert len(trainer) == 2 and trainer[-1] == "COMPLETE", trainer
    history = json.loads(open(os.path.join(_latest_artifact(str(root / "metadata.sqlite"), "ModelRun").uri,
                                           "run", "history.json")).read())
    assert len(history["loss"]) == epochs - int(resumed.group(1))  # only the epochs that were left
    assert history["validation"]["epoch"] == list(range(1, epochs + 1))  # the curve continues across the kill
    assert "blessed: True" in second.stdout


def test_a_failing_pipeline_names_the_component_and_shows_its_log(tmp_path):
    """Nothing valid in the log: ExampleGen fails with the reason, the runner
    says which component failed, shows the end of its log and exits non-zero."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "u.data").write_text("not a valid line\nnor this one\n")
    out = _run(data, tmp_path / "root", tmp_path / "serving", returncode=1)
    assert re.search(r"^SequenceExampleGen +failed ", out, re.M), out
    assert "SequenceExampleGen failed (exit status 1); the last lines of its log:" in out
    assert re.search(r"^  \| ValueError: no user in .* has a sequence to learn from: 2 lines read, 0 kept", out, re.M)
    assert "full log: " + str(tmp_path / "root" / "logs") in out


@pytest.mark.slow
def test_other_models_and_the_tp_trainer_plug_into_one_pipeline(tmp_path):
    """`--model NAME` (and `--trainer tp`) plug into the same pipeline: on one
    pipeline root, each run reuses the cached data components (the examples,
    statistics, schema and Transform do not depend on the model), trains and
    pushes a model that serves the same requests."""
    data, root, serving = tmp_path / "data", tmp_path / "root", tmp_path / "serving"
    _slice_of_ml100k(data)
    # Two runs, each a minute: every model's own signatures (the Evaluator's included) are checked
    # in test_export.py; here what changes the pipeline's path.
    runs = [("hstu", ()),  # its time bias reads the timestamps the examples carry
            # The transferrable-parameters trainer, served from an approximate index: the lists still come.
            ("gru4rec", ("--trainer", "tp", "--trainer-option", "windows_per_user=4", "--index-probes", "4"))]
    for model, extra in runs:
        # The last blessed model, the change threshold's baseline, is another method's: no gate on it.
        report = _run(data, root, serving, model=model, extra=(*extra, "--max-hr-drop", "1"))
        assert "blessed: True" in report, (model, report)
    states = _executions(str(root / "metadata.sqlite"))
    for component in ["SequenceExampleGen", "StatisticsGen", "SchemaGen", "Transform"]:
        assert _node(states, component) == ["COMPLETE"] + ["CACHED"] * (len(runs) - 1), (component, states)
    assert _node(states, "Trainer") == ["COMPLETE"] * len(runs), states
    versions = {model: serving / model / os.listdir(serving / model)[0] for model, _ in runs}
    assert all(len(os.listdir(serving / model)) == 1 for model in versions)
    for model, top in _serve_pushed(*versions.values()).items():
        assert len(top) == 5, (model, top)
    import tensorflow as tf

    assert hasattr(tf.saved_model.load(str(versions["gru4rec"])), "index")  # --index-probes reached the export
    assert not hasattr(tf.saved_model.load(str(versions["hstu"])), "index")
    assert "timestamp" in tf.saved_model.load(str(versions["hstu"])).signatures["serving_default"].structured_input_signature[1]


@pytest.mark.slow
def test_pipeline_trains_hup_on_jd_sessions_with_side_fields(tmp_path):
    """JD micro-behaviour logs through Beam, Transform (item, behaviour and category
    vocabularies), the Trainer (side fields fed to HUP) and a pushed model whose
    REST signature takes the side fields, or not."""
    from test_hup import write_jd_sessions

    data, root, serving = tmp_path / "data", tmp_path / "root", tmp_path / "serving"
    data.mkdir()
    write_jd_sessions(data / "JD_sample", num_sessions=150)
    report = _run(data, root, serving, model="hup", extra=["--format", "jd"])
    assert "blessed: True" in report
    version = serving / "hup" / os.listdir(serving / "hup")[0]
    code = ("import json, sys, tensorflow as tf\n"
            "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
            "items = tf.constant([['1003', '1003', '1004']])\n"
            "common = dict(item_ids=items, k=tf.constant(5), exclude_seen=tf.constant(True))\n"
            "plain = f(**common, behavior=tf.constant([['']]), category=tf.constant([['']]),\n"
            "          time_interval=tf.constant([[-1.0]]), dwell_time=tf.constant([[-1.0]]))  # the defaults\n"
            "full = f(**common, behavior=tf.constant([['5', '7', '5']]),\n"
            "         category=tf.constant([['0', '0', '1']]), time_interval=tf.constant([[3.0, 10.0, 50.0]]),\n"
            "         dwell_time=tf.constant([[20.0, 20.0, 90.0]]))\n"
            "print(json.dumps([[t.decode() for t in out['item_ids'].numpy()[0]] for out in (plain, full)]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(version)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    plain, full = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(plain) == len(full) == 5 and not {"1003", "1004"} & set(plain + full)
