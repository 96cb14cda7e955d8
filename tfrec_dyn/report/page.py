"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import datetime
import html
from typing import Dict, List

from tfrec_dyn.training.validation import describe

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
header { background: #1f3b5c; color: white; padding: 20px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; } header p { margin: 0; opacity: .85; }
section { background: white; border-radius: 8px; padding: 16px 20px; margin: 18px 0;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 17px; margin: 0 0 10px; }
figure { margin: 8px 0; overflow-x: auto; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e6ea; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 8px; }
.fact { background: #eef2f7; border-radius: 6px; padding: 6px 12px; } .fact b { display: block; font-size: 18px; }
.users { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }
.hit { background: #dff3e4; font-weight: 600; } .muted { color: #666; font-size: 12px; }
code { background: #eef2f7; padding: 1px 4px; border-radius: 3px; } header code { background: #2d5480; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _figure(name: str, figures: Dict[str, str]) -> str:
    svg = figures.get(name)
    return f'<figure class="plot" id="plot-{name}" data-plot="{name}">{svg}</figure>' if svg else ""


def _table(header: List[str], rows: List[List], numeric_from: int = 1) -> str:
    head = "".join(f"<th class='{'num' if i >= numeric_from else ''}'>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='{'num' if i >= numeric_from else ''}'>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fact(label: str, value) -> str:
    return f"<div class='fact'><b>{_e(value)}</b>{_e(label)}</div>"


def _number(value) -> str:
    return "–" if value is None else (f"{value:.4f}" if isinstance(value, float) else f"{value:,}")


def _data_section(facts: Dict, figures: Dict[str, str]) -> str:
    summary = facts["data_summary"]
    config = facts["config"]
    parts = ["<div class='facts'>", _fact("users", f"{summary['users']:,}"), _fact("items", f"{summary['items']:,}"),
             _fact("events", f"{summary['events']:,}"), "</div>"]
    read = summary.get("read")
    if read:
        dropped = sum(read["dropped"].values())
        parts.append(f"<p>Read <code>{_e(read['source'])}</code>: {read['lines_read']:,} lines, {read['kept']:,} kept, "
                     f"{dropped:,} quarantined.</p>")
        if read["dropped"] or read["skipped"]:
            rows = [[_e(reason), f"{count:,}"] for reason, count in sorted(read["dropped"].items())]
            rows += [[_e(f"{reason} (part of a kept line)"), f"{count:,}"]
                     for reason, count in sorted(read["skipped"].items())]
            parts.append(_table(["quarantined because", "lines"], rows))
    parts.append(f"<p class='muted'>Split: {_e(config['split'])}; runs of one item collapsed: "
                 f"{_e(summary['collapse_repeats'])}; the model sees the last {config['max_len']} items.</p>")
    parts.append(_figure("sequence-lengths", figures))
    return "<section id='data'><h2>Data</h2>" + "".join(parts) + "</section>"


def _training_section(facts: Dict, figures: Dict[str, str]) -> str:
    text = [describe(facts["history"].get("validation"))]
    if facts.get("train_seconds") is not None:
        text.insert(0, f"trained in {facts['train_seconds']:.1f} s")
    return (f"<section id='training'><h2>Training</h2><p>{_e('; '.join(text))}.</p>"
            + _figure("training", figures) + "</section>")


def _metrics_section(facts: Dict, figures: Dict[str, str]) -> str:
    metrics = facts["metrics"]
    names = ["HR@10", "NDCG@10", "MRR", "HR@50", "NDCG@50"]
    rows = []
    for protocol, by_model in metrics.items():
        for label, values in by_model.items():
            name = facts["model"] if label == "model" else label
            rows.append([_e(protocol), _e(name)] + [_number(values.get(n)) for n in names]
                        + [_number(values.get("RepeatShare"))])
    skipped = "".join(f"<p>The {_e(protocol)} protocol was not computed: {_e(reason)}</p>"
                      for protocol, reason in facts["skipped_protocols"].items())
    return ("<section id='metrics'><h2>Test metrics by protocol, next to PopRec</h2>" + skipped +
            f"<p class='muted'>{facts['evaluated_examples']:,} test examples (one per user under leave-one-out); "
            "PopRec counts the same training split. "
            "full: every item ranked; sampled: the target against the run's sampled negatives; "
            "full:novel / full:repeat: the targets new to the user / already in their history.</p>"
            + _table(["protocol", "model"] + names + ["repeat share"], rows, numeric_from=2)
            + _figure("metrics", figures)
            + "<h2>Beyond accuracy</h2><p class='muted'>Coverage: the share of the catalogue in some top-10 list; "
            "Gini: how unequally the lists expose items (1: one item everywhere); tail share: the share of list "
            "slots that go to the 80% least popular items.</p>"
            + _figure("beyond-accuracy", figures) + "</section>")


def _item(item: Dict) -> str:
    return _e(item["title"] or item["item"]) + (f" <span class='muted'>({_e(item['item'])})</span>"
                                                 if item["title"] else "")


def _recommendations_section(facts: Dict) -> str:
    cards = []
    for user in facts["recommendations"]:
        history = "".join(f"<li>{_item(item)}</li>" for item in user["history"])
        top = "".join(f"<li class='{'hit' if item['hit'] else ''}'>{_item(item)}</li>" for item in user["top"])
        cards.append(f"<div><h3>User {_e(user['user'])}</h3>"
                     f"<p class='muted'>last {len(user['history'])} of {user['history_length']} items, oldest "
                     f"first; held out: {_item(user['target'])}</p><ol>{history}</ol>"
                     f"<p class='muted'>top 10 (the held-out item highlighted when it is there)</p><ol>{top}</ol></div>")
    return ("<section id='recommendations'><h2>Recommendations for a few test users</h2>"
            f"<div class='users'>{''.join(cards)}</div></section>")


def _explain_section(facts: Dict, figures: Dict[str, str]) -> str:
    found = facts.get("explain")
    if not found:
        return ""
    text = {"pathways": "RETR routes each recent behaviour through a pathway per layer or drops it.",
            "interests": "RDRSR groups the recent items into a dynamic number of interests.",
            "subsequences": "AdaSplit splits the recent items into sub-sequences."}[found["kind"]]
    return (f"<section id='explain'><h2>What the model does with a history</h2><p>{_e(text)} "
            f"(<code>tfrec-dyn explain RUN --user {_e(found['user'])}</code> prints the same.)</p>"
            + _figure("explain", figures) + "</section>")


def render(facts: Dict, figures: Dict[str, str]) -> str:
    """The page for `tfrec_dyn.report.facts.run_facts(...)` and its plots (`tfrec_dyn.report.plots.figures`)."""
    config = facts["config"]
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (_data_section(facts, figures) + _training_section(facts, figures) + _metrics_section(facts, figures)
            + _recommendations_section(facts) + _explain_section(facts, figures))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(facts['model'])} on {_e(facts['data'])} — tfrec_dyn report</title><style>{CSS}</style>"
            f"</head><body><header><h1>{_e(facts['model'])} on {_e(facts['data'])}</h1>"
            f"<p>run {_e(facts['run'])} · loss {_e(config.get('loss') or 'the model default')} · "
            f"max {config['epochs']} epochs · report written {created} by <code>tfrec-dyn report</code></p>"
            f"</header><main>{body}</main></body></html>\n")
