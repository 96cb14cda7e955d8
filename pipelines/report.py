"""What a pipeline run produced, read back from its ML Metadata store."""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

from tfx.orchestration import metadata

from pipelines.components import QuarantinedRows, RunReport
from pipelines.configs import PipelineConfig
from tfrec_dyn.training.run import REPORT


def _latest(store, type_name: str):
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _property(artifact_, name: str):
    value = artifact_.custom_properties.get(name)
    if value is None:
        return None
    return value.string_value or value.int_value or value.double_value


def evaluation_figures(uri: str) -> Dict[str, float]:
    """Overall-slice metrics of a ModelEvaluation artifact (candidate model)."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(uri)
    figures = {}
    for slice_key, metrics in result.slicing_metrics:
        if slice_key == ():
            for name, value in metrics[""][""].items():
                figures[name] = value.get("doubleValue", value)
    return figures


def pipeline_report(config: PipelineConfig, port: int = 8501) -> str:
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(config.metadata_path)) as m:
        store = m.store
        pushed = _latest(store, "PushedModel")
        evaluation = _latest(store, "ModelEvaluation")
        blessing = _latest(store, "ModelBlessing")
        quarantine = _latest(store, QuarantinedRows.TYPE_NAME)
        report = _latest(store, RunReport.TYPE_NAME)
    lines = [f"ML Metadata: {config.metadata_path}"]
    if quarantine is not None:
        counts = json.loads(_property(quarantine, "counts") or "{}")
        lines.append(f"input: {counts.get('lines_read', 0)} lines read, {counts.get('lines_kept', 0)} kept, "
                     f"{_property(quarantine, 'quarantined') or 0} quarantined ({quarantine.uri}); "
                     f"{counts.get('users', 0)} users")
    if evaluation is not None:
        figures = evaluation_figures(evaluation.uri)
        shown = {k: round(v, 4) for k, v in sorted(figures.items()) if isinstance(v, float)}
        sample = f" of {config.eval_users} users" if config.eval_users else ""
        lines.append(f"evaluation ({config.eval_split} split{sample}, full protocol, as `tfrec-dyn evaluate`): {shown}")
    blessed = blessing is not None and _property(blessing, "blessed") == 1
    lines.append(f"blessed: {blessed}")
    destination: Optional[str] = _property(pushed, "pushed_destination") if pushed is not None else None
    if pushed is not None and _property(pushed, "pushed") == 1:
        name = config.model_name
        lines += [
            f"pushed: {destination} (version {_property(pushed, 'pushed_version')})",
            "serve it:  .venv/bin/tfrec-dyn serve --model_name "
            f"{name} --model_base_path {config.serving_model_dir} --rest_api_port {port}",
            "query it:  curl -s -X POST http://127.0.0.1:%d/v1/models/%s:predict -d '%s'"
            % (port, name, json.dumps({"instances": [{"item_ids": ["50", "172", "133"]}]})),
        ]
    else:
        lines.append("not pushed: the model was not blessed (see the evaluation above)")
    if report is not None:
        lines.append(f"report: {_property(report, 'pushed_report') or os.path.join(report.uri, REPORT)}"
                     "  (open it in a browser)")
    return "\n".join(lines)
