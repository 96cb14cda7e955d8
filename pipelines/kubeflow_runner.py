"""Compile the same pipeline for Kubeflow Pipelines / Vertex AI Pipelines.

    python pipelines/kubeflow_runner.py --image gcr.io/PROJECT/tfrec-dyn:0.1.0 \\
        --pipeline-root gs://BUCKET/pipeline_root --data gs://BUCKET/logs --format ml-100k \\
        --serving-root gs://BUCKET/saved_models --output tfrec_dyn_pipeline.json

writes a PipelineSpec JSON (KubeflowV2DagRunner) that a Kubeflow Pipelines
cluster or Vertex AI runs; every component runs in `--image` (built by the
`Dockerfile` at the repository root, which installs this package and puts
`pipelines.module` on the path).  To run the Beam steps on
Dataflow instead of inside the component containers, pass e.g.
`--beam-arg=--runner=DataflowRunner --beam-arg=--project=P --beam-arg=--region=R
--beam-arg=--temp_location=gs://BUCKET/tmp`.  See the README for submitting it.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfrec_dyn  # noqa: E402,F401  (Keras 2 before TensorFlow)
from pipelines.configs import PipelineConfig, add_pipeline_flags, pipeline_config  # noqa: E402

# Importable inside the image (the Dockerfile puts the repository on PYTHONPATH).
IMAGE_MODULE_PATH = "pipelines.module"


def compile_pipeline(config: PipelineConfig, image: str, output: str) -> str:
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_filename=output)
    runner.run(create_pipeline(config), write_out=True)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pipeline_flags(parser, remote=True)
    parser.add_argument("--image", required=True, help="container image with this package (see Dockerfile)")
    parser.add_argument("--output", default="tfrec_dyn_pipeline.json")
    parser.add_argument("--enable-cache", action="store_true",
                        help="reuse cached steps (off by default: remote input files are not fingerprinted)")
    args = parser.parse_args(argv)
    try:
        config = pipeline_config(args, module_path=IMAGE_MODULE_PATH, local_metadata=False, write_report=False,
                                 enable_cache=args.enable_cache)
    except ValueError as error:  # an unknown or unguessable format: one line, exit 2
        parser.error(str(error))
    print(f"wrote {compile_pipeline(config, args.image, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
