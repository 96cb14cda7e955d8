"""A run as a person wants to see it: one self-contained HTML page.

    tfrec-dyn report runs/sasrec            # writes runs/sasrec/report.html

    from tfrec_dyn.report import write_report
    write_report("runs/sasrec")

The page (no script, no CDN: it works offline) shows the data (users, items,
the sequence-length histogram, the quarantined lines by reason), the training
and validation curves, the test metrics by protocol next to PopRec on the same
split, coverage / Gini / tail share, recommendations for a few users (with
titles where the data has them) and, for RETR, RDRSR and AdaSplit, the
explain view as a picture.  The TFX pipeline writes it next to the pushed model.
"""

from __future__ import annotations

import os
from typing import Optional

from tfrec_dyn.report.facts import MAX_USERS, run_facts
from tfrec_dyn.report.page import render
from tfrec_dyn.report.plots import figures
from tfrec_dyn.training.run import REPORT, Run

__all__ = ["write_report", "run_facts", "figures", "render"]


def write_report(run_path: str, out: Optional[str] = None, max_users: int = MAX_USERS) -> str:
    """Writes the report of the run at `run_path` to `out` (default
    `RUN/report.html`); returns the path written."""
    facts = run_facts(Run.load(run_path), max_users=max_users)
    page = render(facts, figures(facts))
    out = out or os.path.join(run_path, REPORT)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(out + ".tmp", out)  # a reader never sees half a page
    return out
