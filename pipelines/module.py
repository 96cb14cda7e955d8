"""TFX module file: `preprocessing_fn` (Transform) and `run_fn` (Trainer).

Any registered `tfrec_dyn` model trains here: the model name and its settings
come from the Trainer's `custom_config` (a `TrainConfig` as a dict), so a new
model plugs in by registering it in `tfrec_dyn.models.registry`.

Examples (from `SequenceExampleGen`) hold one user each: `item_ids` (the
history, raw string ids, oldest first) and `target_item_id` (the next item),
plus side fields.  Transform builds the item vocabulary over both, on every
split (the catalogue rule of `tfrec_dyn.data.vocabulary`) (and the
behaviour-type and category vocabularies when the logs have them, giving
`behavior_ids` / `category_ids`) and maps ids to the library's layout (0 =
padding, 1 = OOV, tokens from 2, in vocabulary-file order), so the trained
model, its exported vocabulary and the transformed data agree.

The Trainer reads the transformed training examples as a
`tfrec_dyn.data.UserStream`: one pass counts the items, then training
streams the TFRecords epoch after epoch, so memory does not grow with the
data (the "tp" trainer, which draws users at random, holds them instead).
"""

from __future__ import annotations

import os

import tfrec_dyn  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from tfrec_dyn.console import EventChannel
from tfrec_dyn.data.input_pipeline import USER_ITEMS, UserStream, pad_left
from tfrec_dyn.data.splits import user_sample_keys
from tfrec_dyn.data.interactions import CATEGORICAL_SIDE_FIELDS
from tfrec_dyn.data.vocabulary import NUM_RESERVED, OOV_ID, Vocabulary
from tfrec_dyn.metrics.evaluation import EvalArrays
from tfrec_dyn.serving.export import category_table, export_saved_model
from tfrec_dyn.serving.index import CONFIG_KEY, ClusterIndexConfig, build_model_index
from tfrec_dyn.training import TrainConfig, make_strategy
from tfrec_dyn.training.strategy import chief_dir
from tfrec_dyn.training.run import save_run
from tfrec_dyn.training.progress import TrainingProgress
from tfrec_dyn.training.trainer import fit, history_record

ITEM_VOCABULARY = "items"
NUMERIC_MODEL_FIELDS = ("time_interval", "dwell_time", "timestamp")  # numeric side fields a model may read (HUP, HSTU)


# ------------------------------------------------------------------ Transform
def _apply_item_vocabulary(ids, vocabulary):
    """Raw ids -> library ids: vocabulary index + 2, unknown -> OOV (1)."""
    index = tft.apply_vocabulary(ids, deferred_vocab_filename_tensor=vocabulary, default_value=-1)
    if isinstance(index, tf.SparseTensor):
        return tf.SparseTensor(index.indices, _shift(index.values), index.dense_shape)
    return _shift(index)


def _shift(index):
    return tf.where(index < 0, tf.constant(OOV_ID, tf.int64), index + NUM_RESERVED)


def _vocabulary_over(history, target, name):
    """Vocabulary over a sparse history feature and its one-value target; both mapped."""
    target = tf.reshape(target, [-1])
    vocabulary = tft.vocabulary(tf.concat([history.values, target], axis=0), vocab_filename=name)
    return _apply_item_vocabulary(history, vocabulary), _apply_item_vocabulary(target, vocabulary)


def preprocessing_fn(inputs):
    """Vocabularies (most frequent first) over histories and targets: items
    always, behaviour types and categories when the logs have them (JD)."""
    # The Trainer samples its validation users by id (`SequenceExampleGen`'s examples always have one).
    outputs = {"user_id": inputs["user_id"]} if "user_id" in inputs else {}
    outputs["item_ids"], outputs["target_item_id"] = _vocabulary_over(
        inputs["item_ids"], inputs["target_item_id"], ITEM_VOCABULARY)
    for field in CATEGORICAL_SIDE_FIELDS:  # behavior, category
        if field in inputs:
            outputs[f"{field}_ids"], outputs[f"target_{field}_id"] = _vocabulary_over(
                inputs[field], inputs[f"target_{field}"], field)
    for field in NUMERIC_MODEL_FIELDS:  # seconds, as the models take them
        if field in inputs:
            outputs[field], outputs[f"target_{field}"] = inputs[field], inputs[f"target_{field}"]
    return outputs


# -------------------------------------------------------------------- Trainer
def _training_users(file_pattern, data_accessor, schema, batch_size: int = 1024) -> tf.data.Dataset:
    """The transformed training examples as a `UserStream`'s users, in file order:
    each user's whole training sequence (history + target) and side fields,
    read from the TFRecords as they are needed."""
    from tfx_bsl.public import tfxio

    dataset = data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=False), schema)
    # (user field, its history feature, its target feature, dtype) of the fields present.
    fields = [(USER_ITEMS, "item_ids", "target_item_id", tf.int32)]
    fields += [(field, f"{field}_ids", f"target_{field}_id", tf.int32) for field in CATEGORICAL_SIDE_FIELDS]
    fields += [(field, field, f"target_{field}", tf.float32) for field in NUMERIC_MODEL_FIELDS]

    def whole_sequences(batch):
        return {name: tf.cast(tf.concat([tf.RaggedTensor.from_sparse(batch[history]),
                                         tf.RaggedTensor.from_tensor(tf.reshape(batch[target], [-1, 1]))], axis=1),
                              dtype)
                for name, history, target, dtype in fields if history in batch}

    return dataset.map(whole_sequences).unbatch()


def _validation_arrays(file_pattern, data_accessor, schema, max_len: int, users=None,
                       batch_size: int = 1024) -> EvalArrays:
    """The transformed validation examples as `EvalArrays` (histories cut to
    `max_len`, side-field windows by model input name), for the users that
    `sample_users(ids, users)` draws: the smallest `user_sample_keys` are kept
    as the examples stream by, so memory is the sample, not the split."""
    from tfx_bsl.public import tfxio

    dataset = data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=False), schema)
    numeric = set(NUMERIC_MODEL_FIELDS)

    def joined(parts):
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    parts = []  # a list joined once (or whenever the sample is cut back), not a growing array copied each batch
    for batch in dataset:
        ids = [u.decode() for u in np.asarray(batch["user_id"]).reshape(-1)]
        histories = {name: pad_left(tf.RaggedTensor.from_sparse(values).numpy(), max_len,
                                    dtype=np.float32 if name in numeric else np.int32)
                     for name, values in batch.items() if isinstance(values, tf.SparseTensor)
                     and not name.startswith("target_")}
        parts.append({"keys": user_sample_keys(ids), "user_ids": np.asarray(ids, dtype=object),
                      "targets": np.asarray(batch["target_item_id"]).reshape(-1).astype(np.int32), **histories})
        if users is not None and sum(len(part["keys"]) for part in parts) > users:
            kept = joined(parts)
            rows = np.sort(np.argsort(kept["keys"], kind="stable")[:users])
            parts = [{name: values[rows] for name, values in kept.items()}]
    if not parts:
        return EvalArrays([], np.zeros((0, max_len), np.int32), np.zeros(0, np.int32), [])
    kept = joined(parts)
    features = {name: values for name, values in kept.items() if name not in ("keys", "user_ids", "targets",
                                                                              "item_ids")}
    # known_items: the sampled protocol's (not used by validation, which ranks the whole catalogue).
    return EvalArrays(list(kept["user_ids"]), kept["item_ids"], kept["targets"], [], features)


def _scan_users(users: tf.data.Dataset, vocab_size: int, batch_size: int = 4096):
    """One pass over the training users: item counts [V], the users with 2 or
    more items, and (when they have categories) the item -> category table."""
    counts, num_trainable = np.zeros(vocab_size, np.int64), 0
    categories = np.zeros(vocab_size, np.int32) if "category" in users.element_spec else None
    for batch in users.ragged_batch(batch_size):
        items = batch[USER_ITEMS].flat_values.numpy()
        counts += np.bincount(items, minlength=vocab_size)[:vocab_size]
        num_trainable += int(np.count_nonzero(batch[USER_ITEMS].row_lengths().numpy() >= 2))
        if categories is not None:
            category_table([items], [batch["category"].flat_values.numpy()], vocab_size, table=categories)
    return counts, num_trainable, categories


def _in_memory(users: tf.data.Dataset):
    """The users as `fit`'s in-memory sequences and side fields (the "tp" trainer draws users at random)."""
    sequences, side = [], {}
    for user in users.as_numpy_iterator():
        sequences.append(user.pop(USER_ITEMS))
        for field, values in user.items():
            side.setdefault(field, []).append(values)
    return sequences, side


def backup_dir(fn_args) -> str:
    """Where the Trainer's training state is backed up: beside the per-execution
    run dirs (`.../Trainer/model_run/<execution>`), under a key of what is
    trained on what, so the next execution of the same training (the rerun
    of an interrupted pipeline) resumes it and any other training starts afresh."""
    import hashlib
    import json

    key = json.dumps([fn_args.custom_config, fn_args.train_files, fn_args.transform_graph_path], sort_keys=True)
    return os.path.join(os.path.dirname(os.path.normpath(fn_args.model_run_dir)), "backup",
                        hashlib.sha1(key.encode()).hexdigest()[:16])


def run_fn(fn_args):
    """Trains `custom_config["model"]` under the configured strategy and exports it.

    Resumes after an interruption: `BackupAndRestore` keeps its state where a
    rerun of the pipeline finds it (`backup_dir`) and deletes it once training
    has finished.
    """
    settings = dict(fn_args.custom_config or {})
    index_settings = settings.pop(CONFIG_KEY, None)
    config = TrainConfig(**settings)
    strategy = make_strategy(config.strategy)  # before any other TF op (multi-worker needs that)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    vocab = Vocabulary.load(tft_output.vocabulary_file_by_name(ITEM_VOCABULARY))
    schema = tft_output.transformed_metadata.schema
    users = _training_users(fn_args.train_files, fn_args.data_accessor, schema)
    side_vocabs = {field: Vocabulary.load(tft_output.vocabulary_file_by_name(field))
                   for field in CATEGORICAL_SIDE_FIELDS if field in users.element_spec}
    counts, num_trainable, item_categories = _scan_users(users, vocab.size)
    # Streamed: memory is a shuffle buffer of users, whatever the size of the data.
    sequences, side = _in_memory(users) if config.trainer == "tp" else (UserStream(users, num_trainable), {})
    validation = (_validation_arrays(fn_args.eval_files, fn_args.data_accessor, schema, config.max_len,
                                     config.validation_users) if config.validate_every else None)
    # Progress to the runner that watches the pipeline (`pipelines/progress.py`), else Keras' epoch lines.
    channel = EventChannel.from_environment()
    progress = [TrainingProgress(channel.send)] if channel else []
    model, history, train_seconds = fit(config, sequences, vocab.size, counts, progress, verbose=0 if channel else 2,
                                        backup_dir=backup_dir(fn_args), strategy=strategy, side=side,
                                        side_vocab_sizes={field: v.size for field, v in side_vocabs.items()},
                                        validation=validation, tensorboard_dir=fn_args.model_run_dir)
    index = build_model_index(model, ClusterIndexConfig(**index_settings)) if index_settings else None
    with chief_dir(fn_args.serving_model_dir, strategy) as export_dir:  # other workers: a temporary dir
        export_saved_model(model, vocab, counts, config.max_len, export_dir, side_vocabs=side_vocabs,
                           item_categories=item_categories, exclude_seen=config.exclude_seen, index=index)
    with chief_dir(run_dir(fn_args), strategy) as path:  # `tfrec-dyn evaluate PATH` evaluates this model
        save_run(path, config, vocab, model, history_record(history),
                 {"model": config.model, "data": config.data, "train_seconds": train_seconds,
                  "num_replicas": strategy.num_replicas_in_sync}, side_vocabs)


RUN_DIR = "run"  # in the Trainer's ModelRun artifact


def run_dir(fn_args) -> str:
    """The trained model as a `tfrec-dyn` run directory, in the Trainer's ModelRun artifact."""
    return os.path.join(fn_args.model_run_dir, RUN_DIR)
