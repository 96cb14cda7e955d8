"""`tfrec-dyn` command line (also `python -m tfrec_dyn`).

    tfrec-dyn train --model sasrec --data ml-100k --epochs 50 --out runs/sasrec
    tfrec-dyn train --model hup --data JD_Computers_sample --format jd --split session --out runs/hup
    tfrec-dyn evaluate runs/sasrec --protocol sampled
    tfrec-dyn recommend runs/sasrec --history 50,172,133 -k 10
    tfrec-dyn explain runs/retr --user 196        (also rdrsr / adasplit runs: history by interest / sub-sequence)
    tfrec-dyn report runs/sasrec      (runs/sasrec/report.html: data, curves, metrics next to PopRec, ...)
    tfrec-dyn datasets
    tfrec-dyn export runs/sasrec --model_base_path saved_models/sasrec   (a new numbered serving version)
    tfrec-dyn serve --model_base_path saved_models/sasrec

With `--json` the last line of stdout is one JSON object (model, data,
protocol, metric values, training time) for scripts.  Wrong arguments and bad
input give a one-line error and exit status 2, never a traceback; anything
else (a fault of ours) gives one line and exit status 1, and the traceback
only with TFREC_DYN_DEBUG=1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROTOCOL_CHOICES = ("full", "sampled")


class CliError(Exception):
    """An error the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from tfrec_dyn.serving.index import add_index_flags
    from tfrec_dyn.serving.rest import ServerOptions
    from tfrec_dyn.training.flags import add_train_flags

    parser = _Parser(prog="tfrec-dyn", description="Dynamic, behaviour-aware sequential recommendation.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model and evaluate it on the test split")
    add_train_flags(train)
    train.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="full",
                       help="protocol whose figures go into the --json line")
    train.add_argument("--out", help="run directory to save the model in")
    train.add_argument("--json", action="store_true")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--verbose", action="store_true",
                       help="TensorFlow's and Keras' own output on the terminal (default: in RUN/logs/train.log)")

    evaluate = commands.add_parser("evaluate", help="evaluate a saved run")
    evaluate.add_argument("run")
    evaluate.add_argument("--protocol", choices=PROTOCOL_CHOICES + ("all",), default="all")
    evaluate.add_argument("--split", choices=("test", "validation"), default="test")
    evaluate.add_argument("--eval-users", type=int, metavar="N",
                          help="a seeded sample of N users (default: the run's setting, all users)")
    evaluate.add_argument("--json", action="store_true")

    recommend = commands.add_parser("recommend", help="top-k items for a history of raw item ids")
    recommend.add_argument("run")
    recommend.add_argument("--history", required=True, help="comma-separated raw item ids, oldest first")
    recommend.add_argument("-k", type=int, default=10)
    recommend.add_argument("--include-seen", action="store_true")
    recommend.add_argument("--json", action="store_true")

    explain = commands.add_parser("explain", help="show what a model does with one user's history "
                                                  "(RETR: the behaviours each layer routes; "
                                                  "RDRSR: the history grouped by interest)")
    explain.add_argument("run")
    explain.add_argument("--user", required=True, help="raw user id in the run's data")
    explain.add_argument("--last", type=int, default=20, help="how many of the most recent items to show")
    explain.add_argument("--json", action="store_true")

    report = commands.add_parser("report", help="write a run's report: one self-contained HTML page "
                                                "(data, curves, metrics next to PopRec, recommendations)")
    report.add_argument("run")
    report.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    report.add_argument("--max-users", type=int, default=None, metavar="N",
                        help="evaluate a seeded sample of at most N test users (default: 10,000)")
    report.add_argument("--json", action="store_true")

    commands.add_parser("datasets", help="list built-in data sets and readable formats")

    export = commands.add_parser("export", help="write a run's serving SavedModel (the signatures the "
                                                "pipeline's Pusher writes) as a new numbered version")
    export.add_argument("run")
    export.add_argument("--model_base_path", "--model-base-path", required=True,
                        help="folder of numeric version folders, e.g. saved_models/sasrec (created if missing)")
    add_index_flags(export)  # with an index, its recall@10 against exact top-k is printed
    export.add_argument("--json", action="store_true")

    serve = commands.add_parser("serve", help="serve pushed SavedModels over TF Serving's REST API")
    serve.add_argument("--model_name", "--model-name", default=None,
                       help="model name in the URL (/v1/models/NAME); default: the base path's folder name")
    serve.add_argument("--model_base_path", "--model-base-path", required=True,
                       help="folder holding numeric version folders, e.g. saved_models/sasrec")
    serve.add_argument("--rest_api_port", "--port", type=int, default=8501)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--rest_api_num_threads", type=int, default=ServerOptions.num_threads,
                       help="threads running predict requests")
    serve.add_argument("--rest_api_timeout_in_ms", type=int, default=ServerOptions.timeout_ms,
                       help="a predict request with no answer by then gets 504")
    serve.add_argument("--file_system_poll_wait_seconds", type=float, default=ServerOptions.poll_seconds,
                       help="how often the base path is scanned for new versions")
    serve.add_argument("--max_request_bytes", type=int, default=ServerOptions.max_request_bytes,
                       help="larger request bodies get 413")
    serve.add_argument("--max_queued_requests", type=int, default=ServerOptions.max_queued_requests,
                       help="predict requests that may wait for a thread; past that, 503")
    return parser


def _print_metrics(title: str, metrics: dict) -> None:
    print(title)
    for name in sorted(metrics, key=lambda n: (n.split("@")[0], int(n.split("@")[1]) if "@" in n else 0)):
        print(f"  {name:<10} {metrics[name]:.4f}")


def _train(args) -> dict:
    """Trains with one progress line on stderr; the frameworks' output goes to
    a log file (RUN/logs/train.log) unless --verbose."""
    from tfrec_dyn.training import TrainConfig, train
    from tfrec_dyn.training.flags import train_config_fields

    config = TrainConfig(**train_config_fields(args))
    if args.verbose:
        sys.stderr.write(args.startup_output)
        result = train(config, out_dir=args.out, verbose=1 if sys.stdout.isatty() else 2)
    else:
        from tfrec_dyn.console import ProgressBar, quiet_output
        from tfrec_dyn.training.progress import TrainingProgress
        from tfrec_dyn.training.run import LOGS

        args.log = (os.path.join(args.out, LOGS, "train.log") if args.out else os.path.join(
            tempfile.gettempdir(), "tfrec-dyn", f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"))
        with quiet_output(args.log, preamble=args.startup_output) as terminal:
            bar = None if args.quiet else ProgressBar(terminal, prefix=f"{args.model} ")
            try:
                result = train(config, out_dir=args.out, verbose=0,
                               callbacks=[TrainingProgress(bar.update)] if bar else [])
            finally:
                if bar:
                    bar.close()
    return _print_training(args, config, result)


def _print_training(args, config, result) -> dict:
    from tfrec_dyn.training.validation import describe

    report = result.data.interactions.report
    if report is not None:
        print(report.summary())
    if result.history.get("validation"):
        print(describe(result.history["validation"]))
    for protocol, figures in result.metrics.items():
        _print_metrics(f"{config.model} on {config.data}, test split, protocol={protocol}:", figures)
    print(f"training time: {result.train_seconds:.1f} s" + (f"; saved to {args.out}" if args.out else ""))
    if getattr(args, "log", None):
        print(f"log: {args.log}")
    return {"model": config.model, "data": config.data, "protocol": args.protocol,
            **result.metrics[args.protocol], "train_seconds": result.train_seconds,
            "protocols": result.metrics, "run": args.out}


def _evaluate(args) -> dict:
    from tfrec_dyn.metrics.evaluation import metrics_by_protocol
    from tfrec_dyn.training import PreparedData, Run, evaluate_split

    run = Run.load(args.run)
    config = run.config if args.eval_users is None else dataclasses.replace(run.config, eval_users=args.eval_users)
    data = PreparedData.from_config(config, vocab=run.vocab, side_vocabs=run.side_vocabs)
    protocols = PROTOCOL_CHOICES if args.protocol == "all" else (args.protocol,)
    results = evaluate_split(run.model, data, config, which=args.split, protocols=protocols)
    first = protocols[0]
    figures = metrics_by_protocol(results)
    for protocol, metrics in figures.items():
        users = f", {len(results[first].ranks)} users" if config.eval_users else ""
        _print_metrics(f"{run.config.model} on {run.config.data}, {args.split} split{users}, protocol={protocol}:",
                       metrics)
    return {"model": run.config.model, "data": run.config.data, "protocol": first, "split": args.split,
            "users": len(results[first].ranks), **results[first].metrics, "train_seconds": run.metrics().get("train_seconds"),
            "protocols": figures}


def _recommend(args) -> dict:
    import numpy as np

    from tfrec_dyn.data import item_titles, pad_left
    from tfrec_dyn.training import Run

    if args.k <= 0:
        raise CliError(f"-k must be positive, got {args.k}")
    run = Run.load(args.run)
    history = [h.strip() for h in args.history.split(",") if h.strip()]
    unknown = [h for h in history if h not in run.vocab]
    known = [h for h in history if h in run.vocab]
    if not known:
        raise CliError("none of the --history ids is in the model's vocabulary")
    if unknown:
        print(f"note: {len(unknown)} unknown item id(s) ignored: {', '.join(unknown[:10])}", file=sys.stderr)
    inputs = {"item_ids": pad_left([run.vocab.encode(known)], run.config.max_len)}
    k = min(args.k, run.vocab.size - 2)
    ids, scores = run.model.recommend(inputs, k=k, exclude_seen=not args.include_seen)
    titles = item_titles(run.config.data) if run.config.data else {}
    items = [{"item": item, "score": float(score), **({"title": titles[item]} if item in titles else {})}
             for item, score in zip(run.vocab.decode(np.asarray(ids[0])), np.asarray(scores[0]))
             if np.isfinite(score)]
    for rank, item in enumerate(items, 1):
        print(f"{rank:>3}. {item['item']:<10} {item['score']:8.3f}  {item.get('title', '')}")
    return {"model": run.config.model, "data": run.config.data, "history": known, "recommendations": items}


def _explain(args) -> dict:
    """The user's test-split history (what the model saw to predict the held-out item)
    as the model structured it: RETR's pathways, RDRSR's interests, AdaSplit's sub-sequences."""
    from tfrec_dyn.data import item_titles, pad_left
    from tfrec_dyn.models.explain import EXPLAINED, explain, explains
    from tfrec_dyn.training import PreparedData, Run

    run = Run.load(args.run)
    if not explains(run.model):
        raise CliError(f"{run.config.model} has nothing to explain; explain works for: retr, rdrsr, adasplit")
    data = PreparedData.from_config(run.config, vocab=run.vocab, side_vocabs=run.side_vocabs)
    test = data.split.test
    users = list(test.inputs.user_ids)
    if args.user not in users:
        raise CliError(f"user {args.user!r} is not in {run.config.data} (users look like {', '.join(users[:3])})")
    index = users.index(args.user)
    history = list(test.inputs.items[index])[-run.config.max_len:]
    found = explain(run.model, {"item_ids": pad_left([run.vocab.encode(history)], run.config.max_len)}, len(history))
    titles = item_titles(run.config.data) if run.config.data else {}
    target = test.target_items()[index]
    show = _print_pathways if found["kind"] == "pathways" else _print_groups
    result = {"model": run.config.model, "user": args.user, "target": target,
              **show(found, EXPLAINED[found["kind"]], history, titles, args)}
    print(f"held-out next item: {target} {titles.get(target, '')}")
    return result


def _print_pathways(found, noun, history, titles, args) -> dict:
    masks = found["routed"]  # [layers, items of the history]
    layers = masks.shape[0]
    print(f"user {args.user}: {len(history)} items in the model's window; "
          + ", ".join(f"{noun} {l + 1} routes {int(masks[l].sum())}" for l in range(layers)) + " (# = routed)")
    print("  " + " ".join(f"L{l + 1}" for l in range(layers)) + "  item (oldest first)")
    for i in range(max(0, len(history) - args.last), len(history)):
        marks = " ".join(" #" if masks[l, i] else " ." for l in range(layers))
        print(f"  {marks}  {history[i]:<8} {titles.get(history[i], '')}")
    return {"items": [{"item": history[i], "title": titles.get(history[i]),
                       "kept": [bool(masks[l, i]) for l in range(layers)]} for i in range(len(history))]}


def _print_groups(found, noun, history, titles, args) -> dict:
    """RDRSR's interests / AdaSplit's sub-sequences: the window's items by group."""
    assignment, count = found["assignment"], found["count"]
    window = history[len(history) - len(assignment):]
    print(f"user {args.user}: {count} {noun}(s) over the last {len(window)} items (of {len(history)})")
    groups = []
    for group in range(count):
        members = [(i, window[i]) for i in range(len(window)) if assignment[i] == group]
        groups.append([item for _, item in members])
        print(f"  {noun} {group + 1}: {len(members)} item(s)")
        for position, item in members:
            print(f"    {position + 1:>3}. {item:<8} {titles.get(item, '')}")
    return {"count": count, found["kind"]: [[{"item": item, "title": titles.get(item)} for item in group]
                                            for group in groups]}


def _report(args) -> dict:
    """Writes the report; the frameworks' output goes to RUN/logs/report.log."""
    from tfrec_dyn.console import quiet_output
    from tfrec_dyn.report import write_report
    from tfrec_dyn.report.facts import MAX_USERS
    from tfrec_dyn.training.run import LOGS

    if args.max_users is not None and args.max_users <= 0:
        raise CliError(f"--max-users must be positive, got {args.max_users}")
    if not os.path.isdir(args.run):
        raise CliError(f"{args.run}: not a run directory")
    args.log = os.path.join(args.run, LOGS, "report.log")
    with quiet_output(args.log, preamble=args.startup_output):
        path = write_report(args.run, args.out, max_users=args.max_users or MAX_USERS)
    print(f"report: {path}")
    return {"run": args.run, "report": path}


def _datasets(args) -> dict:
    from tfrec_dyn.data.datasets import BUILTIN, FORMAT_NAMES

    for name, spec in BUILTIN.items():
        print(f"{name:<10} {spec['description']}")
    print("formats for paths: " + ", ".join(FORMAT_NAMES) + " (csv, tsv and jsonl with --columns)")
    return {"datasets": sorted(BUILTIN), "formats": list(FORMAT_NAMES)}


def _export(args) -> dict:
    from tfrec_dyn.serving.export import category_table, export_version
    from tfrec_dyn.serving.index import build_model_index, index_config
    from tfrec_dyn.training import PreparedData, Run

    run = Run.load(args.run)
    # The training split gives the popularity fallback and each item's category, as in the pipeline.
    data = PreparedData.from_config(run.config, vocab=run.vocab, side_vocabs=run.side_vocabs)
    categories = data.train_side.get("category")
    index, recall, config = None, None, index_config(args)
    if config:
        index = build_model_index(run.model, config)
        recall, users = _index_recall(run, data, index)
    path = export_version(run.model, run.vocab, data.item_counts, run.config.max_len, args.model_base_path,
                          side_vocabs=run.side_vocabs,
                          item_categories=None if categories is None else
                          category_table(data.train_sequences, categories, run.vocab.size), index=index)
    print(f"exported {args.run} to {path}")
    result = {"run": args.run, "path": path, "version": int(os.path.basename(path))}
    if index is not None:
        print(f"index: {index.num_clusters} clusters (largest {index.sizes().max():,} items), {index.probes} probed "
              f"per request; recall@10 against exact top-k on {users:,} test users: {recall:.4f}")
        result.update(index_clusters=index.num_clusters, index_probes=index.probes, index_recall_at_10=recall)
    return result


INDEX_RECALL_USERS = 1000


def _index_recall(run, data, index):
    """(recall@10 of `index` against exact top-k, users) on a seeded sample of the run's test users."""
    import tensorflow as tf

    from tfrec_dyn.data.splits import sample_users
    from tfrec_dyn.metrics.evaluation import model_features
    from tfrec_dyn.serving.export import RecommenderModule
    from tfrec_dyn.serving.index import ServingIndex, index_recall

    arrays = data.eval_arrays("test", run.config.max_len)
    rows = sample_users(arrays.user_ids, INDEX_RECALL_USERS)
    module = RecommenderModule(run.model, run.vocab, data.item_counts, run.config.max_len)
    features = {name: values[rows] for name, values in model_features(run.model, arrays.features).items()}
    window, state = module.user_state(tf.constant(arrays.histories[rows]), features)
    return index_recall(module, state, window, run.vocab.size, ServingIndex(index)), len(rows)


def _serve(args) -> dict:
    from tfrec_dyn.serving.rest import ServerOptions, serve

    name = args.model_name or os.path.basename(os.path.normpath(args.model_base_path))
    options = ServerOptions(num_threads=args.rest_api_num_threads, timeout_ms=args.rest_api_timeout_in_ms,
                            poll_seconds=args.file_system_poll_wait_seconds,
                            max_request_bytes=args.max_request_bytes, max_queued_requests=args.max_queued_requests)
    print(f"serving {name} from {args.model_base_path} at http://{args.host}:{args.rest_api_port}/v1/models/{name}",
          flush=True)
    serve({name: args.model_base_path}, host=args.host, port=args.rest_api_port, options=options)
    print("tfrec-dyn serve: stopped", flush=True)
    return {}


COMMANDS = {"train": _train, "evaluate": _evaluate, "recommend": _recommend, "explain": _explain,
            "report": _report, "datasets": _datasets, "export": _export, "serve": _serve}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None) -> int:
    from tfrec_dyn.console import redirected

    # TensorFlow's start-up output (it is imported by the flags' modules): kept
    # for `train`'s log, shown as it was for the other commands.
    with tempfile.TemporaryFile("w+") as startup:
        with redirected(startup):
            parser = build_parser()
        startup.seek(0)
        startup_output = startup.read()
    args = parser.parse_args(argv)
    args.startup_output = startup_output
    if args.command not in ("train", "report"):  # those two keep it in their log
        sys.stderr.write(startup_output)
    try:
        result = COMMANDS[args.command](args)
    except (CliError, ValueError, FileNotFoundError, OSError) as error:
        print(f"tfrec-dyn {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfrec-dyn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a fault of ours, not the user's: still one line (see the module docstring)
        if os.environ.get("TFREC_DYN_DEBUG"):
            raise
        log = f"; log: {args.log}" if getattr(args, "log", None) else ""
        print(f"tfrec-dyn {args.command}: internal error ({type(error).__name__}): {_one_line(error)} "
              f"(TFREC_DYN_DEBUG=1 shows the traceback{log})", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(result, sort_keys=True, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
