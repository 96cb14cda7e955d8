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
                 "--data", "gs://bucket/logs", "--serving-root", "gs://bucket/models",
                 "--trainer", "tp", "--trainer-option", "inner_steps=3", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    spec = json_format.ParseDict(document["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    tasks = set(spec.root.dag.tasks)
    assert {"SequenceExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
            "latest_blessed_model-model-resolver", "latest_blessed_model-model-blessing-resolver", "Evaluator",
            "Pusher"} == tasks
    executors = document["pipelineSpec"]["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    assert images == {"gcr.io/example/tfrec-dyn:test"}
    assert document["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert "pipelines.module.run_fn" in output.read_text()
    assert "inner_steps" in output.read_text()  # the Trainer's custom_config carries the trainer settings
