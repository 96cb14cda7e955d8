"""What a model does with one history: RETR's pathways, RDRSR's interests, AdaSplit's sub-sequences.

    found = explain(model, inputs, length=len(history))
    found["kind"]      # "pathways", "interests" or "subsequences"

`tfrec-dyn explain` prints it; `tfrec-dyn report` draws it (`tfrec_dyn.report`).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

# The model method that structures a history -> what one group of it is called.
EXPLAINED = {"pathways": "layer", "interests": "interest", "subsequences": "sub-sequence"}


def explains(model) -> bool:
    return any(hasattr(model, method) for method in EXPLAINED)


def explain(model, inputs: Dict, length: int) -> Optional[Dict]:
    """How `model` structures the `length` real items of one left-padded
    history (`inputs`, a batch of one):

    * RETR: `{"kind": "pathways", "routed": bool [layers, length]}`, whether
      each layer's pathway routes each item;
    * RDRSR / AdaSplit: `{"kind": "interests" | "subsequences", "count": n,
      "assignment": int [window]}`, the group of each of the last `window`
      items (the model's window, at most `length`).

    None for a model that has nothing to explain."""
    if hasattr(model, "pathways"):
        masks = np.asarray(model.pathways(inputs))[0]
        return {"kind": "pathways", "routed": masks[:, masks.shape[1] - length:].astype(bool)}
    for method in ("interests", "subsequences"):
        if hasattr(model, method):
            found = {name: np.asarray(value)[0] for name, value in getattr(model, method)(inputs).items()}
            window = min(length, len(found["assignment"]))
            return {"kind": method, "count": int(found["count"]),
                    "assignment": found["assignment"][len(found["assignment"]) - window:].astype(int)}
    return None
