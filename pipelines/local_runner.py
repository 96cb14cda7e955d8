"""Run the pipeline locally: `python pipelines/local_runner.py [--model sasrec] [--data FOLDER] ...`

Uses TFX's LocalDagRunner, a SQLite ML Metadata store under the pipeline root
and Beam's DirectRunner in multi-processing mode.  Ends by printing where the
model was pushed, the evaluation figures and a ready-to-paste `curl` for the
REST API (`tfrec-dyn serve` here, or TF Serving).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfrec_dyn  # noqa: E402,F401  (Keras 2 before TensorFlow)
from pipelines.configs import BEAM_MODES, PipelineConfig  # noqa: E402
from tfrec_dyn.cli import key_value  # noqa: E402
from tfrec_dyn.models.registry import MODELS  # noqa: E402
from tfrec_dyn.training.config import TRAINERS  # noqa: E402


def parse_args(argv=None) -> PipelineConfig:
    defaults = PipelineConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sasrec", choices=sorted(MODELS))
    parser.add_argument("--data", default=defaults.data_root, help="folder (or file) of raw interaction logs")
    parser.add_argument("--format", default=None,
                        help="ml-100k, ml-1m, user-item, jd, csv or tsv; default: ml-100k, or jd for JD_* files")
    parser.add_argument("--columns", type=json.loads, default=None,
                        help='column mapping for csv/tsv logs, e.g. \'{"user": "uid", "item": "sku", "timestamp": "ts"}\'')
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128, help="per replica")
    parser.add_argument("--strategy", default="auto", choices=("auto", "one_device", "mirrored", "multi_worker"))
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--hp", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="model hyperparameter")
    parser.add_argument("--trainer", default="standard", choices=TRAINERS,
                        help="'tp': transferrable parameters for long-tailed users")
    parser.add_argument("--trainer-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a 'tp' trainer setting (see TrainConfig.trainer_options)")
    parser.add_argument("--beam-mode", default=defaults.beam_mode, choices=sorted(BEAM_MODES))
    parser.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline argument")
    parser.add_argument("--pipeline-root", default=defaults.pipeline_root)
    parser.add_argument("--serving-root", default=defaults.serving_root)
    parser.add_argument("--name", default=defaults.name)
    parser.add_argument("--hr-threshold", type=float, default=defaults.hr_threshold)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    data_format = args.format or ("jd" if os.path.basename(args.data).startswith("JD_") else "ml-100k")
    train = {"model": args.model, "epochs": args.epochs, "max_len": args.max_len, "batch_size": args.batch_size,
             "strategy": args.strategy, "mixed_precision": args.mixed_precision,
             "hyperparameters": dict(args.hp), "trainer": args.trainer,
             "trainer_options": dict(args.trainer_option)}
    return PipelineConfig(name=args.name, data_root=os.path.abspath(args.data), data_format=data_format,
                          columns=args.columns,
                          pipeline_root=args.pipeline_root, serving_root=args.serving_root, train=train,
                          beam_mode=args.beam_mode, beam_args=args.beam_arg, hr_threshold=args.hr_threshold,
                          enable_cache=not args.no_cache)


def main(argv=None) -> int:
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline
    from pipelines.report import pipeline_report

    config = parse_args(argv)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    print(pipeline_report(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
