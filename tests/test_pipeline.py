"""The TFX pipeline end to end on a slice of MovieLens-100K, checked in ML Metadata."""

import os

import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = ["SequenceExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher"]


def _executions(config):
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata

    with metadata.Metadata(metadata.sqlite_metadata_connection_config(config.metadata_path)) as m:
        states = {}
        for execution in m.store.get_executions():
            node = execution.custom_properties["component_id"].string_value if \
                "component_id" in execution.custom_properties else m.store.get_execution_types_by_id(
                    [execution.type_id])[0].name
            states.setdefault(node, []).append(metadata_store_pb2.Execution.State.Name(execution.last_known_state))
        return states


@pytest.mark.slow
def test_pipeline_runs_pushes_and_reruns_from_cache(tmp_path):
    from tfx import v1 as tfx

    from pipelines.configs import PipelineConfig
    from pipelines.pipeline import create_pipeline
    from pipelines.report import pipeline_report

    data = tmp_path / "data"
    data.mkdir()
    with open(os.path.join(REPO, "tfrec_dyn", "data", "resources", "ml-100k", "u.data")) as f:
        (data / "u.data").write_text("".join(next(f) for _ in range(4000)) + "not a valid line\n")
    config = PipelineConfig(
        data_root=str(data), pipeline_root=str(tmp_path / "root"), serving_root=str(tmp_path / "serving"),
        train={"model": "sasrec", "epochs": 1, "max_len": 20}, beam_mode="in_memory", hr_threshold=0.0)

    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    states = _executions(config)
    for component in COMPONENTS:
        assert any(component in node for node in states), (component, states)
    assert all(s == ["COMPLETE"] for s in states.values()), states

    versions = os.listdir(config.serving_model_dir)
    assert len(versions) == 1 and versions[0].isdigit()
    loaded = tf.saved_model.load(os.path.join(config.serving_model_dir, versions[0]))
    out = loaded.signatures["serving_default"](item_ids=tf.constant([["50", "172"]]), k=tf.constant(5),
                                               exclude_seen=tf.constant(True))
    assert out["item_ids"].shape == (1, 5)

    report = pipeline_report(config)
    assert "1 quarantined" in report and "pushed:" in report and "curl -s -X POST" in report

    # A second run with nothing changed reuses the cached executions up to the
    # Trainer (the Evaluator reruns: its baseline is now the blessed model).
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    states = _executions(config)
    for component in ["SequenceExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer"]:
        node = next(n for n in states if component in n)
        assert states[node] == ["COMPLETE", "CACHED"], (node, states[node])
