"""Compile the same pipeline for Kubeflow Pipelines / Vertex AI Pipelines.

    python pipelines/kubeflow_runner.py --image gcr.io/PROJECT/tfrec-dyn:0.1.0 \\
        --pipeline-root gs://BUCKET/pipeline_root --data gs://BUCKET/logs \\
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
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfrec_dyn  # noqa: E402,F401  (Keras 2 before TensorFlow)
from pipelines.configs import BEAM_MODES, PipelineConfig  # noqa: E402
from tfrec_dyn.cli import key_value  # noqa: E402
from tfrec_dyn.models.registry import MODELS  # noqa: E402
from tfrec_dyn.training.config import TRAINERS  # noqa: E402

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
    parser.add_argument("--image", required=True, help="container image with this package (see Dockerfile)")
    parser.add_argument("--pipeline-root", required=True, help="e.g. gs://BUCKET/pipeline_root")
    parser.add_argument("--data", required=True, help="folder of raw logs as the cluster sees it, e.g. gs://BUCKET/logs")
    parser.add_argument("--format", default="ml-100k")
    parser.add_argument("--columns", type=json.loads, default=None, help="column mapping for csv/tsv logs (JSON)")
    parser.add_argument("--serving-root", required=True, help="e.g. gs://BUCKET/saved_models")
    parser.add_argument("--model", default="sasrec", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--strategy", default="auto", choices=("auto", "one_device", "mirrored", "multi_worker"))
    parser.add_argument("--trainer", default="standard", choices=TRAINERS,
                        help="'tp': transferrable parameters for long-tailed users")
    parser.add_argument("--trainer-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a 'tp' trainer setting (see TrainConfig.trainer_options)")
    parser.add_argument("--beam-mode", default="multi_processing", choices=sorted(BEAM_MODES))
    parser.add_argument("--beam-arg", action="append", default=[])
    parser.add_argument("--name", default="tfrec-dyn")
    parser.add_argument("--output", default="tfrec_dyn_pipeline.json")
    parser.add_argument("--enable-cache", action="store_true",
                        help="reuse cached steps (off by default: remote input files are not fingerprinted)")
    args = parser.parse_args(argv)
    config = PipelineConfig(
        name=args.name, data_root=args.data, data_format=args.format, columns=args.columns,
        pipeline_root=args.pipeline_root,
        serving_root=args.serving_root, train={"model": args.model, "epochs": args.epochs, "strategy": args.strategy,
                                                  "trainer": args.trainer,
                                                  "trainer_options": dict(args.trainer_option)},
        beam_mode=args.beam_mode, beam_args=args.beam_arg, module_path=IMAGE_MODULE_PATH, local_metadata=False,
        enable_cache=args.enable_cache)
    print(f"wrote {compile_pipeline(config, args.image, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
