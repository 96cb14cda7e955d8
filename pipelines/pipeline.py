"""`create_pipeline(config) -> tfx.dsl.Pipeline`: raw logs to a pushed, blessed model."""

from __future__ import annotations

import json
import os

import tfrec_dyn  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from pipelines.components import ReportWriter, SequenceExampleGen, input_fingerprint
from pipelines.configs import PipelineConfig
from tfrec_dyn.data import beam_sequences

MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "module.py")


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """HR@10 / NDCG@10 / MRR on the held-out next items (the full protocol of
    `tfrec-dyn evaluate`, see `tfrec_dyn.metrics.tfma_metrics`), blessing on
    HR@10 with a value threshold and a change threshold against the last
    blessed model."""
    module = "tfrec_dyn.metrics.tfma_metrics"
    hit_rate_gate = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.hr_threshold}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -config.max_hr_drop}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_tf_example", label_key="target_item_id")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="TopKHitRate", module=module, config=json.dumps({"k": 10}),
                              threshold=hit_rate_gate),
            tfma.MetricConfig(class_name="TopKNDCG", module=module, config=json.dumps({"k": 10})),
            tfma.MetricConfig(class_name="TopKMRR", module=module),
            tfma.MetricConfig(class_name="ExampleCount"),
        ])])


def _user_code(config: PipelineConfig, function: str):
    """`module_file` locally; a function path inside the image on Kubeflow (a
    module file would be packaged at compile time into the remote pipeline root)."""
    if config.module_path:
        return {function: f"{config.module_path}.{function}"}
    return {"module_file": MODULE_FILE}


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    # Raw logs -> per-user sequence examples (train / eval), malformed rows quarantined.
    example_gen = SequenceExampleGen(
        input_base=config.data_root, data_format=config.data_format, columns=json.dumps(config.columns or {}),
        input_fingerprint=input_fingerprint(config.data_root), eval_users=config.eval_users or 0,
        collapse_repeats={None: -1, False: 0, True: 1}[config.train.get("collapse_repeats")])
    # Data statistics, an inferred schema, and anomalies against it.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    # Item vocabulary (tf.Transform), so the model maps raw string ids itself; over every
    # split: the catalogue rule (tfrec_dyn.data.vocabulary), as in `tfrec-dyn train`.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        **_user_code(config, "preprocessing_fn"), splits_config=tfx.proto.SplitsConfig(analyze=list(beam_sequences.SPLITS), transform=["train", "validation"]))
    # Any tfrec_dyn model, by name, under the configured tf.distribute strategy.
    trainer = tfx.components.Trainer(
        **_user_code(config, "run_fn"), examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]), eval_args=tfx.proto.EvalArgs(splits=["validation"]),
        custom_config=config.train_config())
    # The last blessed model, for the Evaluator's change threshold.
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)).with_id("latest_blessed_model")
    # HR@10 / NDCG@10 / MRR on the raw eval split (or its `--eval-users` sample), as `tfrec-dyn
    # evaluate` measures them; blesses or not.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"], example_splits=[config.eval_split], eval_config=eval_config(config))
    # Only a blessed model reaches saved_models/<model>/<version>/ (TF Serving's layout).
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir)))
    # The run's report (data, curves, metrics next to PopRec, ...) beside the pushed model.
    reports = [ReportWriter(model_run=trainer.outputs["model_run"], pushed_model=pusher.outputs["pushed_model"])
               ] if config.write_report else []

    return tfx.dsl.Pipeline(
        pipeline_name=config.name, pipeline_root=config.pipeline_root,
        metadata_connection_config=(tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
                                    if config.local_metadata else None),
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform, trainer, baseline,
                    evaluator, pusher, *reports],
        enable_cache=config.enable_cache, beam_pipeline_args=config.beam_pipeline_args())
