"""The Kubeflow submission compiles to a PipelineSpec holding every component."""

import json

import pytest


@pytest.mark.slow
def test_kubeflow_v2_compile(tmp_path):
    from kfp.pipeline_spec import pipeline_spec_pb2
    from google.protobuf import json_format

    from pipelines.kubeflow_runner import main

    output = tmp_path / "pipeline.json"
    assert main(["--image", "gcr.io/example/tfrec-dyn:test", "--pipeline-root", "gs://bucket/root",
                 "--data", "gs://bucket/logs", "--format", "ml-100k", "--serving-root", "gs://bucket/models",
                 "--trainer", "tp", "--trainer-option", "inner_steps=3", "--max-len", "37", "--batch-size", "64",
                 "--hp", "embed_dim=48", "--learning-rate", "0.004", "--hr-threshold", "0.123",
                 "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    spec = json_format.ParseDict(document["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    tasks = set(spec.root.dag.tasks)
    assert {"SequenceExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
            "latest_blessed_model-model-resolver", "latest_blessed_model-model-blessing-resolver", "Evaluator",
            "Pusher"} == tasks  # no ReportWriter: it reads local files (PipelineConfig.write_report)
    executors = document["pipelineSpec"]["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    assert images == {"gcr.io/example/tfrec-dyn:test"}
    assert document["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert "pipelines.module.run_fn" in output.read_text()
    text = output.read_text()
    # The Trainer's custom_config carries every TrainConfig flag, the Evaluator the threshold.
    for setting in ("inner_steps", "max_len", "37", "embed_dim", "48", "0.004", "0.123"):
        assert setting in text, setting


def test_a_data_path_that_does_not_say_its_format_is_refused(tmp_path, capsys):
    """No silent ML-100K: the runners (one flag parser) ask for --format."""
    from pipelines.kubeflow_runner import main
    from pipelines.local_runner import parse_args

    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "events.txt").write_text("u1 i1\n")
    for call in (lambda: parse_args(["--data", str(folder)]),
                 lambda: main(["--image", "i", "--pipeline-root", "gs://b/r", "--data", "gs://b/logs",
                               "--serving-root", "gs://b/m"])):
        with pytest.raises(SystemExit) as exit_info:
            call()
        assert exit_info.value.code == 2
        assert "pass --format" in capsys.readouterr().err
    assert parse_args(["--data", str(folder), "--format", "user-item"]).data_format == "user-item"
    assert parse_args(["--data", str(folder / "events.txt")]).data_format == "user-item"
