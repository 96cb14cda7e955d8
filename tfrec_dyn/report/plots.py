"""The report's plots: matplotlib figures (no pyplot, no global state) as inline SVG text.

Each function takes the plain data of `tfrec_dyn.report.facts` and returns
an `<svg>` element; SVG text stays text (`svg.fonttype: none`), so the page is
small, searchable and needs no font files.
"""

from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from tfrec_dyn.models.explain import EXPLAINED

MODEL_COLOR, POPREC_COLOR, VALIDATION_COLOR = "#2f6db5", "#b0b0b0", "#d9822b"
STYLE = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
         "axes.titlesize": 10, "axes.titleweight": "bold", "figure.dpi": 96}
LENGTH_TICKS = [m * 10 ** e for e in range(7) for m in (1, 2, 5)]
GROUP_COLORS = ["#2f6db5", "#d9822b", "#3a9a5b", "#b5413b", "#7d5ba6", "#8c6d31", "#d45fa0", "#5f7f8c"]


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # without the XML prologue and DOCTYPE: an inline element


def _figure(width: float, height: float, columns: int = 1):
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def sequence_lengths(lengths: Sequence[int]) -> str:
    """Histogram of events per user (log-spaced bins when the lengths span a decade or more)."""
    lengths = np.asarray(lengths)
    with rc_context(STYLE):
        figure, (axes,) = _figure(6.0, 2.6)
        low, high = max(1, int(lengths.min())), int(lengths.max())
        logarithmic = high >= 10 * low
        bins = np.unique(np.geomspace(low, high + 1, 40).astype(int)) if logarithmic else min(40, high - low + 1)
        axes.hist(lengths, bins=bins, color=MODEL_COLOR, edgecolor="white", linewidth=0.4)
        if logarithmic:
            axes.set_xscale("log")
            axes.set_xticks([t for t in LENGTH_TICKS if low <= t <= high + 1] or [low, high])
            axes.xaxis.set_major_formatter(ScalarFormatter())  # 20, 50, 100 rather than 2×10¹
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.axvline(np.median(lengths), color="black", linestyle="--", linewidth=1)
        axes.set(xlabel="events per user", ylabel="users",
                 title=f"Sequence lengths (median {np.median(lengths):g}, max {high:,})")
        return _svg(figure)


def training_curves(history: Dict) -> Optional[str]:
    """Loss per epoch and, when training validated, validation NDCG@10 / HR@10 with the best epoch."""
    loss = history.get("loss") or []
    validation = history.get("validation") or {}
    if not loss and not validation.get("epoch"):
        return None
    with rc_context(STYLE):
        figure, (left, right) = _figure(8.0, 2.8, columns=2)
        # A resumed run keeps only its own epochs' losses: they are the last ones.
        last = validation.get("stopped_epoch") or (validation["epoch"][-1] if validation.get("epoch") else len(loss))
        epochs = np.arange(last - len(loss) + 1, last + 1)
        left.plot(epochs, loss, color=MODEL_COLOR, linewidth=1.5)
        left.set(xlabel="epoch", ylabel="training loss", title="Training loss")
        if validation.get("epoch"):
            right.plot(validation["epoch"], validation["NDCG@10"], color=VALIDATION_COLOR, label="NDCG@10")
            right.plot(validation["epoch"], validation["HR@10"], color=VALIDATION_COLOR, linestyle=":",
                       label="HR@10")
            best = validation.get("best_epoch")
            if best:
                right.axvline(best, color="black", linestyle="--", linewidth=1)
                right.annotate(f"best: epoch {best}", (best, max(validation["HR@10"])), fontsize=8,
                               xytext=(4, -10), textcoords="offset points")
            right.legend(frameon=False, fontsize=8)
            right.set(xlabel="epoch", ylabel="validation (full ranking)", title="Validation")
        else:
            right.text(0.5, 0.5, "no validation during training", ha="center", va="center",
                       transform=right.transAxes)
            right.set_axis_off()
        return _svg(figure)


def _grouped_bars(axes, names: List[str], series: Dict[str, List[float]], colors: Dict[str, str]) -> None:
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        bars = axes.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label, color=colors[label])
        axes.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    axes.set_xticks(x, names)
    axes.legend(frameon=False, fontsize=8)


def protocol_metrics(metrics: Dict[str, Dict[str, Dict[str, float]]], names=("HR@10", "NDCG@10", "MRR")) -> str:
    """Grouped bars per protocol: the model next to PopRec."""
    protocols = [p for p in ("full", "sampled") if p in metrics]
    with rc_context(STYLE):
        figure, panels = _figure(4.0 * len(protocols), 2.8, columns=len(protocols))
        for axes, protocol in zip(panels, protocols):
            series = {label: [figures.get(n, np.nan) for n in names] for label, figures in metrics[protocol].items()}
            _grouped_bars(axes, list(names), series, _colors(series))
            axes.set(title=f"Test, {protocol} ranking", ylabel="")
        return _svg(figure)


def beyond_accuracy(metrics: Dict[str, Dict[str, float]], names=("Coverage@10", "Gini@10", "TailShare@10")) -> str:
    """Catalogue coverage, Gini index and tail share of the top-10 lists, model and PopRec."""
    with rc_context(STYLE):
        figure, (axes,) = _figure(5.0, 2.8)
        series = {label: [figures.get(n, np.nan) for n in names] for label, figures in metrics.items()}
        _grouped_bars(axes, list(names), series, _colors(series))
        axes.set(ylim=(0, 1.1), title="Beyond accuracy (top-10 lists, full ranking)")
        return _svg(figure)


def _colors(series) -> Dict[str, str]:
    return {label: POPREC_COLOR if label == "PopRec" else MODEL_COLOR for label in series}


def _labels(items: List[Dict], width: int = 28) -> List[str]:
    labels = []
    for item in items:
        text = item["title"] or item["item"]
        labels.append(text if len(text) <= width else text[:width - 1] + "…")
    return labels


def _cells(axes, values: np.ndarray, colors, low: float, high: float) -> None:
    """A grid of coloured cells centred on integer positions, first row on top (vector, not an image)."""
    rows, columns = values.shape
    axes.pcolormesh(np.arange(columns + 1) - 0.5, np.arange(rows + 1) - 0.5, values, cmap=colors, vmin=low, vmax=high,
                    edgecolors="white", linewidth=1)
    axes.set_ylim(rows - 0.5, -0.5)
    for side in ("left", "bottom"):
        axes.spines[side].set_visible(False)


def pathways(explanation: Dict) -> str:
    """RETR: which of the most recent items each layer's pathway routes (filled) or drops."""
    routed = np.asarray(explanation["routed"], dtype=float)  # [layers, items]
    with rc_context(STYLE):
        figure, (axes,) = _figure(max(5.0, 0.32 * routed.shape[1] + 1.5), 1.0 + 0.45 * routed.shape[0])
        _cells(axes, routed, ListedColormap(["#eeeeee", MODEL_COLOR]), 0, 1)
        axes.set_yticks(range(routed.shape[0]), [f"layer {i + 1}" for i in range(routed.shape[0])])
        axes.set_xticks(range(routed.shape[1]), _labels(explanation["items"]), rotation=60, ha="right", fontsize=7)
        axes.set_title(f"User {explanation['user']}: the behaviour pathway of each layer "
                       "(filled: routed), oldest → newest")
        axes.tick_params(length=0)
        return _svg(figure)


def groups(explanation: Dict, noun: str) -> str:
    """RDRSR / AdaSplit: the most recent items coloured by the interest / sub-sequence they go to."""
    assignment = np.asarray(explanation["assignment"])
    count = int(explanation["count"])
    with rc_context(STYLE):
        figure, (axes,) = _figure(max(5.0, 0.32 * len(assignment) + 1.5), 1.6)
        colors = ListedColormap(GROUP_COLORS[:max(1, count)] if count <= len(GROUP_COLORS) else GROUP_COLORS)
        _cells(axes, assignment[None, :], colors, -0.5, max(1, count) - 0.5)
        for position, group in enumerate(assignment):
            axes.text(position, 0, str(group + 1), ha="center", va="center", color="white", fontsize=8)
        axes.set_yticks([])
        axes.set_xticks(range(len(assignment)), _labels(explanation["items"]), rotation=60, ha="right",
                        fontsize=7)
        axes.set_title(f"User {explanation['user']}: {count} {noun}(s) over the last {len(assignment)} items "
                       f"(number: the {noun}), oldest → newest")
        axes.tick_params(length=0)
        return _svg(figure)


def figures(facts: Dict) -> Dict[str, str]:
    """Every plot of the report of `facts` (`tfrec_dyn.report.facts.run_facts`), by name."""
    label = {"model": facts["model"]}
    metrics = {protocol: {label.get(name, name): figures for name, figures in by_model.items()}
               for protocol, by_model in facts["metrics"].items() if protocol in ("full", "sampled")}
    drawn = {"sequence-lengths": sequence_lengths(facts["data_summary"]["lengths"]),
             "training": training_curves(facts["history"])}
    if metrics:
        drawn["metrics"] = protocol_metrics(metrics)
    if "full" in metrics:
        drawn["beyond-accuracy"] = beyond_accuracy(metrics["full"])
    found = facts.get("explain")
    if found:
        drawn["explain"] = pathways(found) if found["kind"] == "pathways" else groups(found, EXPLAINED[found["kind"]])
    return {name: svg for name, svg in drawn.items() if svg}
