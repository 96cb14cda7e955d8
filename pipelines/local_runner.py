"""Run the pipeline locally: `python pipelines/local_runner.py [--model sasrec] [--data FOLDER] ...`

Uses TFX's LocalDagRunner, a SQLite ML Metadata store under the pipeline root
and Beam's DirectRunner in multi-processing mode.  Ends by printing where the
model was pushed, the evaluation figures and a ready-to-paste `curl` for the
REST API (`tfrec-dyn serve` here, or TF Serving).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfrec_dyn  # noqa: E402,F401  (Keras 2 before TensorFlow)
from pipelines.configs import PipelineConfig, add_pipeline_flags, pipeline_config  # noqa: E402


def parse_args(argv=None) -> PipelineConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pipeline_flags(parser)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    try:
        return pipeline_config(args, enable_cache=not args.no_cache)
    except ValueError as error:  # an unknown or unguessable format: one line, exit 2
        parser.error(str(error))


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
