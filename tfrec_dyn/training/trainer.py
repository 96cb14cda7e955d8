"""Train a registered model on a data set under a `tf.distribute` strategy and evaluate it.

    result = train(TrainConfig(model="sasrec", data="ml-100k", epochs=50), out_dir="runs/sasrec")
    result.metrics["full"]["NDCG@10"]
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec_dyn.metrics.evaluation import (EVAL_KS, EvalArrays, evaluate_model, metrics_by_protocol,
                                          negatives_cache_dir)
from tfrec_dyn.data.input_pipeline import (UserStream, steps_per_epoch, streamed_training_dataset, trainable_rows,
                                           training_dataset)
from tfrec_dyn.data.splits import head_mask
from tfrec_dyn.data.user_tasks import user_task_dataset
from tfrec_dyn.models import MODELS, build_model
from tfrec_dyn.training.config import TP_OPTIONS, TrainConfig
from tfrec_dyn.training.experiment import PreparedData
from tfrec_dyn.training.optimizers import make_optimizer
from tfrec_dyn.training.run import TENSORBOARD, save_run
from tfrec_dyn.training.strategy import barrier, chief_dir, is_chief, make_strategy, precision_scope
from tfrec_dyn.training.transfer import TransferrableTrainer
from tfrec_dyn.training.validation import ValidationCallback

@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    data: PreparedData
    metrics: Dict[str, Dict[str, float]]  # protocol -> figures
    history: Dict[str, list]
    train_seconds: float
    run_dir: Optional[str] = None


def evaluate_split(model, data: PreparedData, config: TrainConfig, which: str = "test",
                   protocols=None, ks=EVAL_KS, cache_dir: Optional[str] = None, arrays: Optional[EvalArrays] = None):
    """`tfrec_dyn.metrics.evaluation.evaluate_model` on the validation or test
    split of `data`, with the run's protocols and evaluation settings
    (`arrays`: that split's `data.eval_arrays(which, config.max_len)`, when the caller has them)."""
    arrays = arrays if arrays is not None else data.eval_arrays(which, config.max_len)
    return evaluate_model(model, arrays, data.vocab, data.item_counts,
                          protocols=protocols or config.eval_protocols, ks=ks, cache_dir=cache_dir,
                          **config.evaluation_settings())


def fit(config: TrainConfig, sequences, vocab_size: int, item_counts, callbacks=(), verbose: int = 1,
        backup_dir: Optional[str] = None, strategy: Optional[tf.distribute.Strategy] = None,
        side=None, side_vocab_sizes=None, validation: Optional[EvalArrays] = None,
        tensorboard_dir: Optional[str] = None):
    """Builds `config.model` inside the strategy's scope and trains it on encoded
    training sequences; returns (model, keras History, training seconds).

    `sequences` are in memory (a list of int arrays), or a `UserStream` read
    as training goes (the TFX Trainer's; it carries its side fields itself,
    and each epoch is shuffled through `config.shuffle_buffer` users). The
    "tp" trainer draws users at random, so it needs them in memory.

    `side` ({field: encoded sequences aligned with `sequences`}) and
    `side_vocab_sizes` ({categorical field: vocabulary size}) feed the models
    that read side fields (their `side_fields`, e.g. HUP): such a model gets
    `<field>_vocab_size` arguments and its fields in every batch.

    The global batch is `config.batch_size * num_replicas_in_sync`.  With
    `backup_dir`, `BackupAndRestore` saves the state every epoch, so a run that
    is interrupted and started again resumes after its last completed epoch;
    the batches of every epoch depend on the seed and the epoch number only
    (`training_dataset(epochs=...)`), so the resumed run trains exactly as
    the uninterrupted one would have.

    `validation` (the validation split's `EvalArrays`): with
    `config.validate_every`, a `ValidationCallback` checks it, stops after
    `config.patience` checks without improvement and restores the best
    weights (`config.restore_best`); its curve is in the History's
    `validation` attribute (`history_record`).  Its best-so-far is backed up
    with the training state, so a resumed run stops where the uninterrupted
    one would have.

    `tensorboard_dir`: Keras' `TensorBoard` writes the loss and the validation
    figures of every epoch there (the chief only).
    """
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or make_strategy(config.strategy)
    side, side_vocab_sizes = side or {}, side_vocab_sizes or {}
    available = set(side) | (set(sequences.users.element_spec) if isinstance(sequences, UserStream) else set())
    fields = [f for f in getattr(MODELS.get(config.model.lower()), "side_fields", ()) if f in available]
    sizes = {f"{field}_vocab_size": side_vocab_sizes[field] for field in fields if field in side_vocab_sizes}
    with strategy.scope(), precision_scope(config.mixed_precision):
        model = build_model(config.model, vocab_size, config.max_len, **{**sizes, **config.model_kwargs()})
        if config.jit_compile and not getattr(model, "supports_jit_compile", False):
            raise ValueError(f"jit_compile: {config.model}'s train step is not checked under XLA "
                             f"({type(model).__name__}.supports_jit_compile); train it without --jit-compile")
        if config.trainer == "standard":
            model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate),
                          jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    num_negatives = getattr(model, "num_negatives", 0)  # what the model's loss needs (0: none)
    first_epoch = 0
    validator = None
    if validation is not None and config.validate_every and not len(validation.targets):
        print("note: the validation split has no users (each needs 3 or more items): training runs all "
              f"{config.epochs} epochs without validation", flush=True)
    elif validation is not None and config.validate_every:
        validator = ValidationCallback(validation, every=config.validate_every, patience=config.patience,
                                       restore_best=config.restore_best, users=config.validation_users,
                                       exclude_seen=config.exclude_seen, smoothing=config.validation_smoothing,
                                       state_dir=backup_dir,
                                       write_state=is_chief(strategy))
        callbacks = [validator] + list(callbacks)
    if backup_dir:
        first_epoch = min(resume_epoch(backup_dir, config, record=is_chief(strategy)), config.epochs)
        callbacks = list(callbacks) + [keras.callbacks.BackupAndRestore(backup_dir)]
        if first_epoch:
            print(f"resuming after epoch {first_epoch} of {config.epochs} from {backup_dir}", flush=True)
    if tensorboard_dir and is_chief(strategy):  # after the validator: its figures are in the epoch's logs
        callbacks = list(callbacks) + [keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False,
                                                                   profile_batch=0)]
    start = time.perf_counter()
    if config.trainer == "tp":
        if isinstance(sequences, UserStream):
            raise ValueError("the 'tp' trainer draws users at random: it needs the training sequences in memory, "
                             "not a UserStream")
        history = fit_transferrable(model, config, strategy, sequences, vocab_size, item_counts, num_negatives,
                                    callbacks, verbose, first_epoch)
    else:
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        # Packed rows split across replicas would not keep a batch's users on one step.
        pack = strategy.num_replicas_in_sync == 1 and not config.jit_compile
        dataset = training_batches(model, config, sequences, vocab_size, item_counts, global_batch,
                                   range(first_epoch, config.epochs), side, fields, pack=pack)
        history = model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps_per_epoch(sequences, global_batch),
                            verbose=verbose, callbacks=callbacks)
    history.validation = validator.summary() if validator else None
    if backup_dir:
        # The other workers' BackupAndRestore state lives under backup_dir too
        # (workertemp_N): removing it while one still writes its last epoch
        # fails that worker.
        barrier(strategy)
        if is_chief(strategy):
            shutil.rmtree(backup_dir, ignore_errors=True)  # finished: nothing to resume (the recorded config too)
        barrier(strategy)  # and gone before any worker starts another training on the same backup_dir
    return model, history, time.perf_counter() - start


def training_batches(model, config: TrainConfig, sequences, vocab_size: int, item_counts, global_batch: int,
                     epochs: range, side=None, fields=(), pack: bool = True) -> tf.data.Dataset:
    """The batches `fit` trains `model` on: the next-item examples of
    `sequences` (in memory or a `UserStream`) with the negatives the model's
    loss needs, `fields` of the side fields, for the given `epochs`; packed
    (`config.pack_sequences`) where the model and its loss allow and `pack`."""
    layout = model.negative_layout or "per_position"
    settings = dict(vocab_size=vocab_size, max_len=config.max_len, batch_size=global_batch,
                    num_negatives=getattr(model, "num_negatives", 0), sampler=config.negative_sampler,
                    item_counts=item_counts, negative_layout=layout, seed=config.seed, epochs=epochs,
                    pack=pack and config.pack_sequences and model.supports_packing and layout != "per_sequence")
    if isinstance(sequences, UserStream):
        return streamed_training_dataset(sequences, side_fields=fields, shuffle_buffer=config.shuffle_buffer,
                                         **settings)
    return training_dataset(sequences, side={field: side[field] for field in fields}, **settings)


def protocol_record(config: TrainConfig, data: PreparedData) -> Dict:
    """The evaluation protocol a run's figures were measured under, unset
    choices as they were made for `data` (written into its results)."""
    return {"split": config.split, "collapse_repeats": data.collapse_repeats, "exclude_seen": config.exclude_seen,
            "max_len": config.max_len, "num_eval_negatives": config.num_eval_negatives,
            "eval_sampler": config.eval_sampler, "eval_users": config.eval_users}


def history_record(history: keras.callbacks.History) -> Dict:
    """What a run keeps of `fit`'s History (`RUN/history.json`): the per-epoch
    training figures and, when training validated, the validation curve
    (`ValidationCallback.summary`)."""
    record = {name: [float(v) for v in values] for name, values in history.history.items()
              if not name.startswith("val_")}  # the validation figures: in the curve, with their epochs
    if getattr(history, "validation", None):
        record["validation"] = history.validation
    return record


BACKUP_CONFIG = "config.json"


def resume_epoch(backup_dir: str, config: TrainConfig, record: bool = True) -> int:
    """Epochs completed by the interrupted training whose `BackupAndRestore`
    state is under `backup_dir` (0: none there); with `record` (the chief)
    writes `config` there so that a different training never resumes from it."""
    recorded = os.path.join(backup_dir, BACKUP_CONFIG)
    if os.path.exists(recorded):
        with open(recorded) as f:
            if TrainConfig.from_json(f.read()) != config:
                raise ValueError(f"{backup_dir} holds the state of an interrupted training with other settings; "
                                 "delete it to start this one afresh")
    elif record:
        os.makedirs(backup_dir, exist_ok=True)
        # Written aside and renamed: the other workers check this file as the
        # chief writes it, and must never read it half written.
        with open(recorded + ".tmp", "w") as f:
            f.write(config.to_json())
        os.replace(recorded + ".tmp", recorded)
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))  # where BackupAndRestore writes
    if checkpoint is None:
        return 0
    return int(tf.train.load_variable(checkpoint, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


def fit_transferrable(model, config: TrainConfig, strategy, sequences, vocab_size, item_counts, num_negatives,
                      callbacks, verbose, first_epoch: int = 0):
    """`fit` with the transferrable-parameters trainer (`config.trainer == "tp"`);
    `model` is trained in place, the Keras History is returned. `first_epoch`:
    the epochs a resumed run has already done (their outer iterations are skipped)."""
    options = {function: {name: config.trainer_options[name] for name in names if name in config.trainer_options}
               for function, names in TP_OPTIONS.items()}
    lengths = np.array([len(s) for s in sequences])
    heads = head_mask(lengths, **options["head_mask"])
    replicas = strategy.num_replicas_in_sync
    users_per_step = options["user_task_dataset"].get(
        "users_per_step", inspect.signature(user_task_dataset).parameters["users_per_step"].default)
    inner_steps = options["TransferrableTrainer"].get(
        "inner_steps", inspect.signature(TransferrableTrainer).parameters["inner_steps"].default)
    per_iteration = inner_steps * users_per_step * replicas
    steps = max(1, -(-len(trainable_rows(sequences)) // per_iteration))  # every user drawn once per epoch on average
    dataset = user_task_dataset(sequences, heads, vocab_size, config.max_len, num_negatives=num_negatives,
                                sampler=config.negative_sampler, item_counts=item_counts, seed=config.seed,
                                first_step=first_epoch * steps * replicas,
                                negative_layout=model.negative_layout or "per_position",
                                **options["user_task_dataset"])
    dataset = dataset.batch(replicas).prefetch(tf.data.AUTOTUNE)  # one outer iteration per replica
    with strategy.scope(), precision_scope(config.mixed_precision):
        trainer = TransferrableTrainer(model, **options["TransferrableTrainer"])
        trainer.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate),
                        steps_per_execution=config.steps_per_execution)
        first = next(iter(dataset))
        trainer.build_for({key: value[0, 0] for key, value in first.items()})
    return trainer.fit(dataset, epochs=config.epochs, steps_per_epoch=steps, verbose=verbose, callbacks=callbacks)


def train(config: TrainConfig, out_dir: Optional[str] = None, verbose: int = 1,
          data: Optional[PreparedData] = None, backup_dir: Optional[str] = None, callbacks=()) -> TrainResult:
    """Reads the data, trains `config.model` (see `fit`), evaluates it on the test split.

    With `out_dir` the run is saved there (see `tfrec_dyn.training.run`), and
    its training state is backed up in `out_dir/backup` every epoch (unless
    `backup_dir` says where), so the same call after an interruption resumes,
    and TensorBoard summaries go to `out_dir/tensorboard`; under
    `multi_worker` only the chief writes there and to the negatives cache, the
    other workers to temporary directories (`chief_dir`).
    """
    strategy = make_strategy(config.strategy)  # first: multi-worker needs a fresh TF runtime
    data = data or PreparedData.from_config(config)
    if backup_dir is None and out_dir:
        backup_dir = os.path.join(out_dir, "backup")  # the same command, run again, resumes
    model, history, train_seconds = fit(config, data.train_sequences, data.vocab.size, data.item_counts,
                                        callbacks, verbose, backup_dir, strategy, side=data.train_side,
                                        side_vocab_sizes=data.side_vocab_sizes(),
                                        validation=data.eval_arrays("validation", config.max_len)
                                        if config.validate_every else None,
                                        tensorboard_dir=os.path.join(out_dir, TENSORBOARD) if out_dir else None)
    with chief_dir(out_dir, strategy) as run_dir, chief_dir(negatives_cache_dir(), strategy) as cache_dir:
        results = evaluate_split(model, data, config, cache_dir=cache_dir)
        metrics = metrics_by_protocol(results)
        history = history_record(history)
        result = TrainResult(model, data, metrics, history, train_seconds, run_dir)
        if run_dir:
            summary = {"model": config.model, "data": config.data, "train_seconds": train_seconds,
                       "num_replicas": strategy.num_replicas_in_sync, "metrics": metrics,
                       "protocol": protocol_record(config, data)}
            save_run(run_dir, config, data.vocab, model, history, summary, data.side_vocabs)
            if "sampled" in results:  # the candidates the run was scored against, with the run
                results["sampled"].negatives.save(os.path.join(run_dir, "negatives_test.npz"))
    return result
