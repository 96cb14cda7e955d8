"""The `tfrec-dyn` command line: train/evaluate/recommend/datasets, --json, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tfrec_dyn import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    return subprocess.run([sys.executable, "-m", "tfrec_dyn", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """200 MovieLens-100K users in the `user item` line format (already in time order)."""
    from tfrec_dyn.data import load_dataset

    data = load_dataset("ml-100k").subset(range(200))
    path = tmp_path_factory.mktemp("data") / "interactions.txt"
    with open(path, "w") as f:
        for user, items in zip(data.user_ids, data.items):
            f.writelines(f"{user} {item}\n" for item in items)
    return str(path)


@pytest.mark.slow
def test_train_evaluate_recommend(small_data, tmp_path):
    run = str(tmp_path / "run")
    out = _cli("train", "--model", "gru4rec", "--data", small_data, "--epochs", "2", "--max-len", "20",
               "--steps-per-execution", "2", "--out", run, "--json")
    log = os.path.join(run, "logs", "train.log")
    assert out.returncode == 0, out.stderr[-3000:] + open(log).read()[-3000:]
    # What a person sees: one progress line (a line per update when not on a terminal), the
    # results, the log's path; TensorFlow's and Keras' output is in the log, none on the terminal.
    assert f"log: {log}" in out.stdout.splitlines()
    assert all(line.startswith("gru4rec [") for line in out.stderr.splitlines()), out.stderr
    assert "epoch 2/2" in out.stderr.splitlines()[-1] and "val NDCG@10" in out.stderr.splitlines()[-1]
    logged = {line.strip() for line in open(log) if len(line.strip()) > 30}
    assert "tensorflow" in " ".join(logged).lower()
    assert not logged & {line.strip() for line in (out.stdout + out.stderr).splitlines()}
    trained = json.loads(out.stdout.strip().splitlines()[-1])
    # TensorBoard summaries of the run: the validation curve the run recorded.
    from test_pipeline import _tensorboard_scalars

    with open(os.path.join(run, "history.json")) as f:
        curve = json.load(f)["validation"]["NDCG@10"]
    assert _tensorboard_scalars(os.path.join(run, "tensorboard"), "validation", "NDCG@10") == \
        pytest.approx(curve, abs=1e-6)
    assert len(_tensorboard_scalars(os.path.join(run, "tensorboard"), "train", "loss")) == 2
    with open(os.path.join(run, "config.json")) as f:
        assert json.load(f)["steps_per_execution"] == 2  # the flag reached the run's config
    assert trained["model"] == "gru4rec" and trained["protocol"] == "full"
    assert {"HR@10", "NDCG@10", "MRR", "train_seconds"} <= set(trained)

    for protocol in ("full", "sampled"):
        out = _cli("evaluate", run, "--protocol", protocol, "--json")
        assert out.returncode == 0, out.stderr[-3000:]
        evaluated = json.loads(out.stdout.strip().splitlines()[-1])
        assert evaluated["protocol"] == protocol
        # Re-evaluating the saved run reproduces the figures from training exactly.
        assert evaluated["NDCG@10"] == pytest.approx(trained["protocols"][protocol]["NDCG@10"], abs=1e-9)
    out = _cli("evaluate", run, "--protocol", "full", "--eval-users", "50", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["users"] == 50 and "50 users" in out.stdout

    out = _cli("recommend", run, "--history", "50,172,133,nope", "-k", "5", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    recommended = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(recommended["recommendations"]) == 5
    assert not {"50", "172", "133"} & {r["item"] for r in recommended["recommendations"]}
    assert "unknown item id(s) ignored: nope" in out.stderr


@pytest.mark.slow
def test_hup_on_jd_sessions_trains_and_evaluates_items_and_categories(tmp_path):
    from test_hup import write_jd_sessions

    data = write_jd_sessions(tmp_path / "JD_sample", num_sessions=120, num_items=160)  # 100 sampled negatives
    run = str(tmp_path / "run")
    out = _cli("train", "--model", "hup", "--data", str(data), "--format", "jd", "--split", "session",
               "--epochs", "2", "--max-len", "20", "--out", run, "--json", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    trained = json.loads(out.stdout.strip().splitlines()[-1])
    assert trained["model"] == "hup" and {"full", "sampled", "category"} <= set(trained["protocols"])
    assert sorted(os.listdir(run)) >= ["behavior.txt", "category.txt"]
    out = _cli("evaluate", run, "--protocol", "full", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    evaluated = json.loads(out.stdout.strip().splitlines()[-1])
    for protocol in ("full", "category"):  # the saved run gives the training-time figures again
        assert evaluated["protocols"][protocol]["MRR@5"] == pytest.approx(
            trained["protocols"][protocol]["MRR@5"], abs=1e-9)


def test_recommend_shows_movielens_titles(tmp_path, capsys):
    from tfrec_dyn.data import load_dataset
    from tfrec_dyn.training import PreparedData, TrainConfig, train

    config = TrainConfig(model="poprec", epochs=1, eval_protocols=("full",))
    train(config, out_dir=str(tmp_path / "pop"), verbose=0,
          data=PreparedData.from_interactions(load_dataset("ml-100k")))
    assert cli.main(["recommend", str(tmp_path / "pop"), "--history", "1", "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Star Wars (1977)" in printed  # the most rated movie of MovieLens-100K


@pytest.mark.slow
def test_explain_prints_retr_pathways_with_titles(tmp_path, capsys):
    from tfrec_dyn.data import load_dataset
    from tfrec_dyn.training import PreparedData, TrainConfig, train

    data = PreparedData.from_interactions(load_dataset("ml-100k"))
    train(TrainConfig(model="retr", epochs=1, max_len=20, eval_protocols=("full",)), out_dir=str(tmp_path / "retr"),
          verbose=0, data=data)
    assert cli.main(["explain", str(tmp_path / "retr"), "--user", "196", "--last", "5", "--json"]) == 0
    printed = capsys.readouterr().out
    explained = json.loads(printed.strip().splitlines()[-1])
    items = explained["items"]
    history = list(data.split.test.inputs.items[data.split.test.inputs.user_ids.index("196")])
    assert [i["item"] for i in items] == history[-20:]
    assert all(len(i["kept"]) == 2 and i["kept"][1] <= i["kept"][0] for i in items)  # hierarchical
    assert any(i["kept"][0] for i in items)
    assert items[-1]["title"] in printed and printed.count(" # ") + printed.count(" . ") >= 5

    train(TrainConfig(model="poprec", epochs=1, eval_protocols=("full",)), out_dir=str(tmp_path / "pop"),
          verbose=0, data=data)
    assert cli.main(["explain", str(tmp_path / "pop"), "--user", "196"]) == 2
    assert "poprec has nothing to explain" in capsys.readouterr().err
    assert cli.main(["explain", str(tmp_path / "retr"), "--user", "no-such-user"]) == 2
    assert "user 'no-such-user' is not in ml-100k" in capsys.readouterr().err


@pytest.mark.parametrize("model, groups, noun, hyperparameters", [
    ("rdrsr", "interests", "interest", {"embed_dim": 16, "num_negatives": 9}),
    ("adasplit", "subsequences", "sub-sequence", {"embed_dim": 16}),
])
def test_explain_groups_the_history(model, groups, noun, hyperparameters, tmp_path, capsys):
    from tfrec_dyn.training import TrainConfig, train

    # What is explained is the trained model: its test evaluation only needs to run, on a few users.
    train(TrainConfig(model=model, epochs=1, max_len=20, eval_protocols=("full",), eval_users=50,
                      hyperparameters=hyperparameters), out_dir=str(tmp_path / model), verbose=0)
    assert cli.main(["explain", str(tmp_path / model), "--user", "196", "--json"]) == 0
    printed = capsys.readouterr().out
    explained = json.loads(printed.strip().splitlines()[-1])
    assert 1 <= explained["count"] == len(explained[groups]) <= 4
    assert sum(len(group) for group in explained[groups]) == 10  # the window, every item in one group
    first = next(item for group in explained[groups] for item in group)
    assert f"{noun} 1:" in printed and first["title"] in printed


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "bert"], "invalid choice: 'bert'"),
    (["train", "--epochs", "zero"], "invalid int value"),
    (["train", "--data", "/no/such/file.txt", "--epochs", "1"], "/no/such/file.txt: no such file"),
    (["train", "--epochs", "0"], "`epochs` must be positive"),
    (["train", "--trainer", "tp", "--trainer-option", "k=2"], "`trainer_options` are the 'tp' trainer's"),
    (["train", "--model", "hup", "--trainer", "tp", "--epochs", "1"], "HUP has a loss of its own"),
    (["evaluate", "/no/run"], "/no/run: not a run directory"),
    (["recommend"], "the following arguments are required: run"),
])
def test_wrong_arguments_give_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = cli.main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def runs(small_data, tmp_path_factory):
    """A PopRec run (trains in a second; it has nothing to explain) and damaged copies of it."""
    import shutil

    root = tmp_path_factory.mktemp("runs")
    good = str(root / "poprec")
    assert cli.main(["train", "--model", "poprec", "--data", small_data, "--epochs", "1", "--out", good,
                     "--quiet"]) == 0
    bad_config, bad_model, no_model = (str(root / name) for name in ("bad_config", "bad_model", "no_model"))
    for copy in (bad_config, bad_model, no_model):
        shutil.copytree(good, copy)
    with open(os.path.join(bad_config, "config.json"), "w") as f:
        f.write('{"model": "poprec", ')
    with open(os.path.join(bad_model, "model", "saved_model.pb"), "wb") as f:
        f.write(b"not a protobuf")
    shutil.rmtree(os.path.join(no_model, "model"))
    garbage = root / "garbage.txt"
    garbage.write_text("just one field\n\x00\x01\n")
    not_a_folder = root / "a_file"
    not_a_folder.write_text("")
    return {"good": good, "bad_config": bad_config, "bad_model": bad_model, "no_model": no_model,
            "garbage": str(garbage), "data": small_data, "file": str(not_a_folder)}


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "sasrec", "--hp", "embed_dimm=64", "--epochs", "1", "--data", "{data}"],
     "sasrec has no hyperparameter(s) embed_dimm; it takes: dropout, embed_dim"),
    (["train", "--data", "{data}", "--format", "parquet", "--epochs", "1"], "unknown format 'parquet'"),
    (["train", "--data", "{garbage}", "--format", "user-item", "--epochs", "1"], "none of its 2 line(s) could be read"),
    (["train", "--data", "{data}", "--max-items", "10", "--epochs", "1"], "distinct items, more than max_items=10"),
    (["evaluate", "{bad_config}"], "config.json is corrupt"),
    (["evaluate", "{bad_model}"], "the saved model cannot be loaded"),
    (["recommend", "{no_model}", "--history", "1"], "the run has no model/"),
    (["recommend", "{good}", "--history", "nope,zilch"], "none of the --history ids is in the model's vocabulary"),
    (["recommend", "{good}", "--history", " , "], "none of the --history ids"),
    (["explain", "{good}", "--user", "1"], "poprec has nothing to explain"),
    (["export", "{good}", "--model_base_path", "{file}"], "{file}"),
    (["export", "/no/run", "--model_base_path", "{file}"], "/no/run: not a run directory"),
    (["serve", "--model_base_path", "/no/models"], "no version of model 'models' could be loaded"),
    (["serve", "--model_base_path", "{no_model}", "--model_name", "rec"], "no version of model 'rec'"),
    (["serve", "--model_base_path", "{good}", "--rest_api_num_threads", "0"], "num_threads must be at least 1"),
    (["export", "{good}", "--model_base_path", "/tmp/unused", "--index-probes", "4"],
     "PopRec scores no item vectors: there is nothing to index"),
])
def test_user_errors_give_one_line_and_exit_2(runs, argv, message, capsys):
    argv = [arg.format(**runs) for arg in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(**runs) in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.slow
def test_export_writes_numbered_versions_the_server_answers(runs, tmp_path, capsys):
    from tfrec_dyn.serving.export import next_version

    base = tmp_path / "saved_models" / "poprec"
    (base / "9").mkdir(parents=True)  # versions compare as numbers: the next after 9 is 10
    assert cli.main(["export", runs["good"], "--model_base_path", str(base), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == 10
    assert sorted(os.listdir(base)) == ["10", "9"] and next_version(str(base)) == 11
    import tensorflow as tf

    served = tf.saved_model.load(str(base / "10"))
    assert set(served.signatures) == {"serving_default", "serving_tf_example"}
    top = served.signatures["serving_default"](item_ids=tf.constant([["50", "172"]]), k=tf.constant(3),
                                               exclude_seen=tf.constant(True))
    assert top["item_ids"].shape == (1, 3)


@pytest.mark.slow
def test_export_with_an_index_reports_its_recall_against_exact_top_k(small_data, tmp_path, capsys):
    run = str(tmp_path / "sasrec")
    assert cli.main(["train", "--model", "sasrec", "--data", small_data, "--epochs", "2", "--max-len", "20",
                     "--out", run, "--quiet"]) == 0
    recalls = {}
    for probes in (8, 1):  # every cluster probed: the exact lists; one of eight: part of them
        assert cli.main(["export", run, "--model_base_path", str(tmp_path / f"served{probes}"), "--index-clusters",
                         "8", "--index-probes", str(probes), "--json"]) == 0
        exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert exported["index_clusters"] == 8 and exported["index_probes"] == probes
        recalls[probes] = exported["index_recall_at_10"]
    assert recalls[8] == 1.0 and recalls[1] < 0.9, recalls


def test_datasets_lists_the_embedded_default(capsys):
    assert cli.main(["datasets"]) == 0
    assert "ml-100k" in capsys.readouterr().out
