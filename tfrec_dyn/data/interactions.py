"""The canonical in-memory form of interaction logs.

Every reader in `tfrec_dyn.data.readers` returns an `Interactions`: one
time-ordered sequence of raw item ids per user, plus any number of aligned side
sequences (behaviour type, category, dwell time, time interval, timestamp,
rating, ...).  A field the source has is never dropped: readers put every column
they know into `side`.

Raw ids stay strings here; `tfrec_dyn.data.vocabulary` maps them to integers.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec_dyn.data.vocabulary import as_strings

# Side fields with a meaning the library knows.  Categorical ones go through a
# vocabulary; numeric ones are kept as numbers.
CATEGORICAL_SIDE_FIELDS = ("behavior", "category")
NUMERIC_SIDE_FIELDS = ("dwell_time", "time_interval", "timestamp", "rating")
KNOWN_SIDE_FIELDS = CATEGORICAL_SIDE_FIELDS + NUMERIC_SIDE_FIELDS

MAX_EXAMPLES = 20


def item_run_starts(items: np.ndarray) -> np.ndarray:
    """Positions where a run of consecutive events on one item starts (a
    micro-behaviour log repeats an item; the held-out targets of
    `leave_one_out` and `session_split` are such events).

    >>> item_run_starts(np.array(["a", "a", "b", "a"])).tolist()
    [0, 2, 3]
    """
    return np.flatnonzero(np.r_[True, items[1:] != items[:-1]]) if len(items) else np.zeros(0, np.int64)


@dataclasses.dataclass
class ReadReport:
    """What a reader did with its input: lines read, kept and dropped, and why.

    `dropped` maps a reason to a count of dropped lines, so that
    `lines_read == kept + dropped_total`.  `skipped` counts parts of kept lines
    that were left out (e.g. one malformed micro-behaviour in a session line);
    they are outside that balance.  `examples` keeps the first few
    `(line_number, reason, text)` of either kind so a user can find them.
    """

    source: str
    lines_read: int = 0
    kept: int = 0
    dropped: Dict[str, int] = dataclasses.field(default_factory=dict)
    examples: List[Tuple[int, str, str]] = dataclasses.field(default_factory=list)
    skipped: Dict[str, int] = dataclasses.field(default_factory=dict)

    def drop(self, line_number: int, reason: str, line: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line_number, reason, line[:200]))

    def drop_uncited(self, reason: str, count: int) -> None:
        """Counts `count` more dropped lines with no example kept (a vectorised
        reader cites the first few with `drop` and counts the rest at once)."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def skip(self, line_number: int, reason: str, text: str = "") -> None:
        """Counts a part of a kept line that was left out."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line_number, reason, text[:200]))

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        text = (
            f"{self.source}: read {self.lines_read} lines, kept {self.kept}, "
            f"dropped {self.dropped_total}"
        )
        if self.dropped:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.dropped.items()))
            first = [str(n) for n, r, _ in self.examples if r in self.dropped][:5]
            lines = ", ".join(first)
            text += f" ({reasons}; first at line(s) {lines})"
        if self.skipped:
            parts = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
            text += f"; skipped inside kept lines: {parts}"
        return text

    def merge(self, other: "ReadReport") -> "ReadReport":
        merged = ReadReport(
            source=f"{self.source}+{other.source}",
            lines_read=self.lines_read + other.lines_read,
            kept=self.kept + other.kept,
            dropped=dict(self.dropped),
            examples=(self.examples + other.examples)[:MAX_EXAMPLES],
            skipped=dict(self.skipped),
        )
        for reason, count in other.dropped.items():
            merged.dropped[reason] = merged.dropped.get(reason, 0) + count
        for reason, count in other.skipped.items():
            merged.skipped[reason] = merged.skipped.get(reason, 0) + count
        return merged


@dataclasses.dataclass
class Interactions:
    """Per-user, time-ordered interaction sequences with aligned side fields.

    Attributes:
      user_ids: raw user ids (strings), one per sequence.
      items: one 1-D array of raw item ids (strings) per user, oldest first.
      side: field name -> list (aligned with `items`) of 1-D arrays of the same
        length as the user's item array.  Categorical fields hold strings,
        numeric ones numbers.
      report: how the reader got here (`None` when built in memory).
    """

    user_ids: List[str]
    items: List[np.ndarray]
    side: Dict[str, List[np.ndarray]] = dataclasses.field(default_factory=dict)
    report: Optional[ReadReport] = None

    def __post_init__(self):
        if len(self.user_ids) != len(self.items):
            raise ValueError(
                f"user_ids has {len(self.user_ids)} entries but items has {len(self.items)}"
            )
        for name, seqs in self.side.items():
            if len(seqs) != len(self.items):
                raise ValueError(f"side field {name!r} has {len(seqs)} sequences, expected {len(self.items)}")
            for user, seq, item_seq in zip(self.user_ids, seqs, self.items):
                if len(seq) != len(item_seq):
                    raise ValueError(
                        f"side field {name!r} of user {user!r} has length {len(seq)}, "
                        f"but the user has {len(item_seq)} items"
                    )

    # ------------------------------------------------------------------ build
    @classmethod
    def from_events(
        cls,
        users: Sequence,
        items: Sequence,
        side: Optional[Mapping[str, Sequence]] = None,
        order_by: Optional[str] = "timestamp",
        report: Optional[ReadReport] = None,
    ) -> "Interactions":
        """Groups flat event columns by user and orders each user's events.

        Events are sorted by `side[order_by]` when that column exists, with ties
        (and everything when it does not) kept in input order (stable sort), so
        a log that is already in time order stays as it is.  Users appear in
        order of first appearance.
        """
        import pandas as pd

        users, items = as_strings(users), as_strings(items)
        side = {k: np.asarray(v) for k, v in (side or {}).items()}
        n = len(users)
        if len(items) != n or any(len(v) != n for v in side.values()):
            raise ValueError("all event columns must have the same length")
        if n == 0:
            return cls([], [], {name: [] for name in side}, report)
        # Group by user keeping first-appearance order (a hash table: no Python work per
        # event), then order inside groups.
        group_rank = pd.factorize(users)[0]
        keys = [np.arange(n), group_rank]
        if order_by and order_by in side:
            keys.insert(1, side[order_by].astype(np.float64))
        order = np.lexsort(keys)  # last key is primary: user, then time, then file order
        boundaries = np.flatnonzero(np.diff(group_rank[order])) + 1
        users, items = users[order], items[order]
        side = {k: v[order] for k, v in side.items()}
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [n]])
        return cls(
            user_ids=[users[s] for s in starts],
            items=[items[s:e] for s, e in zip(starts, ends)],
            side={k: [v[s:e] for s, e in zip(starts, ends)] for k, v in side.items()},
            report=report,
        )

    # -------------------------------------------------------------- queries
    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.items))

    @property
    def side_fields(self) -> Tuple[str, ...]:
        return tuple(self.side)

    def lengths(self) -> np.ndarray:
        return np.asarray([len(s) for s in self.items], dtype=np.int64)

    def item_set(self) -> List[str]:
        """Distinct raw item ids, in order of first appearance."""
        seen: Dict[str, None] = {}
        for seq in self.items:
            for item in seq:
                seen.setdefault(item, None)
        return list(seen)

    def subset(self, indices: Iterable[int]) -> "Interactions":
        """The users at `indices` (positions, not raw ids), in that order."""
        indices = list(indices)
        return Interactions(
            user_ids=[self.user_ids[i] for i in indices],
            items=[self.items[i] for i in indices],
            side={k: [v[i] for i in indices] for k, v in self.side.items()},
            report=self.report,
        )

    def map_sequences(self, fn) -> "Interactions":
        """Applies `fn(array) -> array` to the items and every side sequence alike
        (e.g. a slice), keeping them aligned."""
        return Interactions(
            user_ids=list(self.user_ids),
            items=[fn(s) for s in self.items],
            side={k: [fn(s) for s in v] for k, v in self.side.items()},
            report=self.report,
        )

    def collapse_repeats(self) -> "Interactions":
        """Merges each run of consecutive interactions with the same item into one:
        the item level of a micro-behaviour log (JD: click, then add-to-cart, ... on
        one SKU). Side fields keep the run's first value, except `time_interval`
        (the time to the next behaviour), which keeps the run's last: the time
        from this item to the next. `dwell_time` keeps the first value because
        in the JD logs every micro-behaviour on an item carries the item's
        dwell time.

        >>> data = Interactions(["u"], [np.array(["a", "a", "b", "a"])],
        ...                     {"time_interval": [np.array([1.0, 2.0, 4.0, 8.0])]})
        >>> collapsed = data.collapse_repeats()
        >>> collapsed.items[0].tolist(), collapsed.side["time_interval"][0].tolist()
        (['a', 'b', 'a'], [2.0, 4.0, 8.0])
        """
        starts = [item_run_starts(s) for s in self.items]
        ends = [np.r_[st[1:], len(s)].astype(np.int64) - 1 if len(s) else st for st, s in zip(starts, self.items)]

        def pick(seqs, positions):
            return [seq[idx] for seq, idx in zip(seqs, positions)]

        return Interactions(
            user_ids=list(self.user_ids),
            items=pick(self.items, starts),
            side={k: pick(v, ends if k == "time_interval" else starts) for k, v in self.side.items()},
            report=self.report,
        )

    def __repr__(self) -> str:
        return (
            f"Interactions(users={self.num_users}, interactions={self.num_interactions}, "
            f"side_fields={list(self.side)})"
        )
