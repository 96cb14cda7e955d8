"""Everything a run's report shows, gathered from the run directory as plain data.

    facts = run_facts(Run.load("runs/sasrec"))
    facts["metrics"]["full"]["model"]["NDCG@10"], facts["metrics"]["full"]["PopRec"]["NDCG@10"]

The model and PopRec (trained on the same training split: one counting pass)
are evaluated here with the run's own protocol settings, on a seeded sample of
at most `max_users` test users (all of them on ML-100K), so the two columns
of the report are measured on the same users and candidates.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional

import numpy as np

from tfrec_dyn.data import item_titles
from tfrec_dyn.data.splits import sample_users
from tfrec_dyn.metrics.evaluation import metrics_by_protocol, model_features
from tfrec_dyn.models.explain import explain, explains
from tfrec_dyn.training.experiment import PreparedData
from tfrec_dyn.training.run import Run
from tfrec_dyn.training.trainer import evaluate_split, fit

MAX_USERS = 10_000  # the evaluation sample's size on a large log: the full protocol stays cheap
SHOWN_USERS = 4  # users whose recommendations are listed
SHOWN_HISTORY = 8  # of their most recent items
EXPLAINED_ITEMS = 20  # the explain picture's most recent items
POPREC = "PopRec"


def run_facts(run: Run, max_users: int = MAX_USERS, data: Optional[PreparedData] = None) -> Dict:
    """The report's content for `run` (JSON-serialisable; see the module docstring)."""
    config = run.config
    data = data or PreparedData.from_config(config, vocab=run.vocab, side_vocabs=run.side_vocabs)
    users = min(config.eval_users or max_users, max_users)
    evaluated = dataclasses.replace(config, eval_users=users)
    titles = item_titles(config.data) if config.data else {}
    facts = {"model": config.model, "data": config.data, "run": os.path.abspath(run.path),
             "config": json.loads(config.to_json()), "data_summary": data_summary(data),
             "history": run.history(), "train_seconds": run.metrics().get("train_seconds")}
    arrays = data.eval_arrays("test", config.max_len)  # encoded once, for every evaluation below
    models = {POPREC: _poprec(data, config), "model": run.model}
    results, facts["skipped_protocols"] = {name: {} for name in models}, {}
    for protocol in config.eval_protocols:
        try:
            for name, model in models.items():
                results[name].update(evaluate_split(model, data, evaluated, protocols=(protocol,), arrays=arrays))
        except ValueError as error:  # e.g. too small a catalogue for the sampled protocol: said on the page
            facts["skipped_protocols"][protocol] = str(error)
    by_protocol = {name: metrics_by_protocol(result) for name, result in results.items()}
    # PopRec where it has the protocol (HUP's "category" protocol is the model's alone).
    facts["metrics"] = {protocol: {name: figures[protocol] for name, figures in by_protocol.items()
                                   if protocol in figures} for protocol in by_protocol["model"]}
    facts["evaluated_examples"] = max((len(result.ranks) for result in results["model"].values()), default=0)
    shown = _one_row_per_user(arrays.user_ids)
    shown = shown[sample_users(np.asarray(arrays.user_ids, dtype=object)[shown], SHOWN_USERS)]
    facts["recommendations"] = _recommendations(run, arrays.rows(shown), titles, config.exclude_seen)
    if explains(run.model):
        facts["explain"] = _explanation(run, arrays.rows(shown[:1]), titles)
    return facts


def data_summary(data: PreparedData) -> Dict:
    """Users, items, events, the per-user sequence lengths and what the reader quarantined."""
    lengths = np.array([len(items) for items in data.interactions.items])
    report = data.interactions.report
    return {"users": len(lengths), "items": data.vocab.size - 2, "events": int(lengths.sum()),
            "lengths": lengths.tolist(), "collapse_repeats": data.collapse_repeats,
            "read": None if report is None else {"source": report.source, "lines_read": report.lines_read,
                                                 "kept": report.kept, "dropped": dict(report.dropped),
                                                 "skipped": dict(report.skipped)}}


def _one_row_per_user(user_ids) -> np.ndarray:
    """The last evaluation row of each user (the session split has a row per prefix of a session)."""
    ids = np.asarray(user_ids, dtype=object)
    _, last_from_end = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - last_from_end)


def _poprec(data: PreparedData, config):
    """PopRec on the run's training split (one counting pass, `fit`'s path)."""
    poprec_config = dataclasses.replace(config, model="poprec", epochs=1, validate_every=0, loss=None,
                                        num_negatives=None, hyperparameters={}, trainer="standard",
                                        trainer_options={}, strategy="one_device", jit_compile=False,
                                        mixed_precision=False, steps_per_execution=1)
    model, _, _ = fit(poprec_config, data.train_sequences, data.vocab.size, data.item_counts, verbose=0)
    return model


def _inputs(run: Run, arrays) -> Dict:
    return {"item_ids": arrays.histories, **model_features(run.model, arrays.features)}


def _items(run: Run, ids, titles) -> List[Dict]:
    return [{"item": item, "title": titles.get(item)} for item in run.vocab.decode(ids)]


def _recommendations(run: Run, arrays, titles, exclude_seen) -> List[Dict]:
    """Each shown user's recent history, top-10 (the held-out item marked) and that item."""
    ids, _ = run.model.recommend(_inputs(run, arrays), k=10, exclude_seen=exclude_seen is not False)
    shown = []
    for row, user in enumerate(arrays.user_ids):
        history = arrays.histories[row][arrays.histories[row] > 0]
        top = np.asarray(ids[row])
        shown.append({"user": user, "history": _items(run, history[-SHOWN_HISTORY:], titles),
                      "history_length": len(history), "target": _items(run, [arrays.targets[row]], titles)[0],
                      "top": [{**item, "hit": bool(i == arrays.targets[row])}
                              for item, i in zip(_items(run, top, titles), top)]})
    return shown


def _explanation(run: Run, arrays, titles) -> Dict:
    """One user's explain view over the last `EXPLAINED_ITEMS` items of the history."""
    history = arrays.histories[0][arrays.histories[0] > 0]
    found = explain(run.model, _inputs(run, arrays), len(history))
    shown = min(EXPLAINED_ITEMS, len(history))
    if found["kind"] == "pathways":
        found = {**found, "routed": found["routed"][:, -shown:].tolist()}
    else:
        shown = min(shown, len(found["assignment"]))
        found = {**found, "assignment": found["assignment"][-shown:].tolist()}
    return {"user": arrays.user_ids[0], "items": _items(run, history[-shown:], titles), **found}
