"""Every setting of the pipeline, in one dataclass (TFX template style)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional

from tfrec_dyn.data import beam_sequences
from tfrec_dyn.data.datasets import BUILTIN, canonical_format, guess_format
from tfrec_dyn.serving.index import CONFIG_KEY, add_index_flags, index_config
from tfrec_dyn.training.flags import add_train_flags, train_config_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Beam on the local machine: real parallel workers, the same code as on
# Dataflow/Flink/Spark (only these arguments change, see the README).
BEAM_MODES = {
    "in_memory": ["--direct_running_mode=in_memory"],
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=0"],
    "multi_threading": ["--direct_running_mode=multi_threading", "--direct_num_workers=0"],
}


@dataclasses.dataclass
class PipelineConfig:
    """What the pipeline reads, trains and where it writes.

    Attributes:
      name: pipeline (and pushed model) name.
      data_root: folder of raw interaction logs (default: the embedded MovieLens-100K).
      data_format: log format: "ml-100k", "ml-1m", "user-item", "jd", or
        "csv" / "tsv" (with a header and `columns`).
      columns: canonical name -> column, for "csv" / "tsv" logs, e.g.
        {"user": "uid", "item": "sku", "timestamp": "ts"}.
      pipeline_root: artifacts and the ML Metadata SQLite store live here.
      serving_root: the Pusher writes `<serving_root>/<model>/<version>/`.
      train: the Trainer's `TrainConfig` fields (model, epochs, strategy, ...).
      beam_mode: key of `BEAM_MODES`, or use `beam_args` to set arguments directly.
      beam_args: extra Beam pipeline arguments (e.g. `--runner=DataflowRunner ...`).
      hr_threshold: the Evaluator blesses a model whose HR@10 is at least this ...
      max_hr_drop: ... and that loses at most this much HR@10 to the last blessed model.
      enable_cache: reuse executions whose inputs and settings did not change.
      serving_index: the pushed model serves top-k from an approximate index
        built with these `tfrec_dyn.serving.index.ClusterIndexConfig` fields
        (None: exact top-k; the Evaluator's ranks are exact either way).
    """

    name: str = "tfrec-dyn"
    data_root: str = BUILTIN["ml-100k"]["path"]
    data_format: str = "ml-100k"
    columns: Optional[Dict[str, str]] = None
    pipeline_root: str = os.path.join(REPO, "pipeline_root")
    serving_root: str = os.path.join(REPO, "saved_models")
    train: Dict[str, Any] = dataclasses.field(default_factory=lambda: {"model": "sasrec", "epochs": 200})
    beam_mode: str = "multi_processing"
    beam_args: List[str] = dataclasses.field(default_factory=list)
    hr_threshold: float = 0.05
    max_hr_drop: float = 0.02
    enable_cache: bool = True
    serving_index: Optional[Dict[str, int]] = None
    # The Transform/Trainer code as an importable module inside the container
    # image (Kubeflow); None: this repository's pipelines/module.py as a file.
    module_path: Optional[str] = None
    # Local runs keep ML Metadata in SQLite under the pipeline root; Kubeflow
    # brings its own metadata store.
    local_metadata: bool = True
    # The ReportWriter component (`tfrec-dyn report` next to the pushed model).  It reads the
    # raw log again with the library's readers, which read local files: local runs only.
    write_report: bool = True

    @property
    def model_name(self) -> str:
        return self.train.get("model", "sasrec")

    @property
    def eval_users(self) -> Optional[int]:
        """The Evaluator scores a seeded sample of this many users (the
        Trainer's `eval_users`, as `tfrec-dyn evaluate` does); None: all."""
        return self.train.get("eval_users")

    @property
    def eval_split(self) -> str:
        """The ExampleGen split the Evaluator reads."""
        return beam_sequences.EVAL_SAMPLE if self.eval_users else "eval"

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.pipeline_root, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.serving_root, self.model_name)

    def train_config(self) -> Dict[str, Any]:
        """The Trainer's `custom_config`: `train` plus where the data is, so the
        run directory the Trainer writes can be evaluated by `tfrec-dyn evaluate`
        (and, under `CONFIG_KEY`, how the exported model serves top-k)."""
        config = {**self.train, "data": self.data_root, "data_format": self.data_format, "columns": self.columns}
        return {**config, CONFIG_KEY: self.serving_index} if self.serving_index else config

    def beam_pipeline_args(self) -> List[str]:
        if self.beam_mode not in BEAM_MODES:
            raise ValueError(f"unknown beam_mode {self.beam_mode!r}; choose one of {sorted(BEAM_MODES)}")
        return BEAM_MODES[self.beam_mode] + list(self.beam_args)


def add_pipeline_flags(parser, remote: bool = False) -> None:
    """The pipeline's flags (the `TrainConfig` ones included), shared by
    `local_runner.py` and `kubeflow_runner.py`; `remote`: data and roots are
    required (they are the cluster's paths)."""
    defaults = PipelineConfig()
    add_train_flags(parser, data=None if remote else defaults.data_root,
                    data_help="folder (or file) of raw interaction logs" + (
                        ", as the cluster sees it, e.g. gs://BUCKET/logs" if remote else " (default: ML-100K)"))
    for flag, default in (("--pipeline-root", defaults.pipeline_root), ("--serving-root", defaults.serving_root)):
        parser.add_argument(flag, required=remote, default=None if remote else default)
    parser.add_argument("--name", default=defaults.name)
    parser.add_argument("--beam-mode", default=defaults.beam_mode, choices=sorted(BEAM_MODES))
    parser.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline argument")
    parser.add_argument("--hr-threshold", type=float, default=defaults.hr_threshold,
                        help="bless only a model with at least this HR@10")
    parser.add_argument("--max-hr-drop", type=float, default=defaults.max_hr_drop,
                        help="... that loses at most this much HR@10 to the last blessed model")
    add_index_flags(parser)


def pipeline_config(args, **settings) -> PipelineConfig:
    """A `PipelineConfig` from flags added by `add_pipeline_flags` (and `settings`).

    The data format is the one given, else guessed from the path; a path that
    does not say raises a clear error rather than reading it as ML-100K."""
    train = train_config_fields(args)
    data, data_format, columns = train.pop("data"), train.pop("data_format"), train.pop("columns")
    data = data if "://" in data else os.path.abspath(data)
    served = index_config(args)
    return PipelineConfig(
        name=args.name, data_root=data, data_format=canonical_format(data_format or guess_format(data)),
        columns=columns, pipeline_root=args.pipeline_root, serving_root=args.serving_root, train=train,
        beam_mode=args.beam_mode, beam_args=args.beam_arg, hr_threshold=args.hr_threshold,
        max_hr_drop=args.max_hr_drop, serving_index=dataclasses.asdict(served) if served else None, **settings)
