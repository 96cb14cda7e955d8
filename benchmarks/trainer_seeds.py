"""The pipeline Trainer's training again, in this process, under other seeds.

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/trainer_seeds.py --size M --seeds 0 1

After `pipeline_scale.py --sizes SIZE` has run, this reads that run's
transformed training examples exactly as the Trainer's `run_fn` does (the
same `UserStream`, the same item counts), trains the Trainer's recorded
`TrainConfig` with each seed, and evaluates the model under the full
protocol on the run's evaluation users, read from the same log by the CLI's
path with the pipeline's vocabulary. With the pipeline's own seed it
reproduces the Trainer (same loss, same metrics); other seeds show how much
one training varies.
"""

import argparse
import dataclasses
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import scale  # noqa: E402  (the sizes and their logs)


class _TFExampleAccessor:
    """The Trainer's `fn_args.data_accessor` for TFExample records."""

    @staticmethod
    def tf_dataset_factory(file_pattern, options, schema):
        from tfx_bsl.public import tfxio

        return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema).TensorFlowDataset(options)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="M", choices=sorted(scale.SIZES))
    parser.add_argument("--work-dir", default=scale.DEFAULT_WORK_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)

    import tensorflow_transform as tft

    from pipelines.module import ITEM_VOCABULARY, _scan_users, _training_users  # the Trainer's own input
    from tfrec_dyn.data.input_pipeline import UserStream
    from tfrec_dyn.data.vocabulary import Vocabulary
    from tfrec_dyn.training.config import TrainConfig
    from tfrec_dyn.training.experiment import PreparedData
    from tfrec_dyn.training.trainer import evaluate_split, fit

    root = os.path.join(args.work_dir, f"pipeline_{args.size}", "root")
    runs = sorted(glob.glob(os.path.join(root, "Trainer", "model_run", "*", "run", "config.json")))
    if not runs:
        print(f"no finished Trainer under {root}: run benchmarks/pipeline_scale.py --sizes {args.size} first",
              file=sys.stderr)
        return 2
    with open(runs[-1]) as f:
        recorded = TrainConfig.from_json(f.read())
    transform = tft.TFTransformOutput(sorted(glob.glob(os.path.join(root, "Transform", "transform_graph", "*")))[-1])
    vocab = Vocabulary.load(transform.vocabulary_file_by_name(ITEM_VOCABULARY))
    train_files = sorted(glob.glob(os.path.join(root, "Transform", "transformed_examples", "*", "Split-train")))[-1]
    users = _training_users([os.path.join(train_files, "*")], _TFExampleAccessor, transform.transformed_metadata.schema)
    counts, num_trainable, _ = _scan_users(users, vocab.size)
    log = scale.log_path(args.work_dir, args.size, "user-item")
    data = PreparedData.from_config(dataclasses.replace(recorded, data=log), vocab=vocab)
    for seed in args.seeds:
        config = dataclasses.replace(recorded, seed=seed)
        model, history, seconds = fit(config, UserStream(users, num_trainable), vocab.size, counts, verbose=0)
        full = evaluate_split(model, data, config, protocols=("full",))["full"].metrics
        print(json.dumps({"size": args.size, "seed": seed, "loss": history.history["loss"][-1],
                          "train_seconds": round(seconds, 1), "eval_users": config.eval_users,
                          **{k: full[k] for k in ("HR@10", "NDCG@10", "MRR", "Coverage@10")}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
