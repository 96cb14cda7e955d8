"""A seeded generator of realistic interaction logs, at any size, for tests and benchmarks.

    log = generate_log(LogSpec(num_users=100_000, num_items=80_000, mean_length=20, seed=0))
    log.num_events, log.num_users                     # columnar: no Python object per event
    log.write("logs/synthetic.txt", "user-item")     # or "csv", "tsv", "jsonl", "jd"
    data = log.to_interactions()                       # small logs: the readers' in-memory form

What makes it realistic enough to measure models on, each a `LogSpec` field:

* item popularity is Zipf-like (`zipf_exponent`): weight ∝ rank^-a over a
  random order of the items, so a few items take much of the traffic;
* user lengths are heavy-tailed: log-normal with mean `mean_length` and shape
  `length_sigma`, clipped to [`min_length`, `max_length`];
* interests drift: every item belongs to one of `num_categories` categories;
  each event stays in the user's current category with probability
  `interest_stay` and otherwise moves to a new one drawn by popularity;
* the next item is learnable: with probability `follow_successor` it is the
  previous item's fixed successor (an item of the same category, drawn once
  per item by popularity), a first-order pattern any sequential model can
  find; otherwise it is drawn by popularity within the current category;
* repeats: with probability `repeat_rate` an event re-consumes one of the
  user's earlier items (an edit or listening log has many);
* time: events are seconds apart inside a session and days apart between
  sessions (a new session starts with probability `new_session`);
  `time_interval` is the gap to the previous event, `dwell_time` log-normal,
  `behavior` one of four micro-behaviour types ("1" view ... "4" buy).

Generation is vectorised over users: one NumPy step per position, so the cost
is O(events) array work plus one Python iteration per position of the longest
user.  The same spec and seed always give the same log.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict

import numpy as np

from tfrec_dyn.data.interactions import Interactions

BEHAVIORS = np.array(["1", "2", "3", "4"])  # view, click, cart, buy
BEHAVIOR_PROBABILITIES = np.array([0.6, 0.25, 0.1, 0.05])
WRITE_FORMATS = ("user-item", "csv", "tsv", "jsonl", "jd")
# Columns of the CSV/TSV/JSON-lines files, as `read_log` maps them (name -> source column).
LOG_COLUMNS = {"user": "user", "item": "item", "timestamp": "timestamp", "behavior": "behavior",
               "category": "category", "time_interval": "time_interval", "dwell_time": "dwell_time"}


@dataclasses.dataclass(frozen=True)
class LogSpec:
    """What to generate; see the module docstring for what each field shapes."""

    num_users: int = 1_000
    num_items: int = 1_000
    mean_length: float = 20.0
    length_sigma: float = 1.0
    min_length: int = 3
    max_length: int = 2_000
    zipf_exponent: float = 1.0
    num_categories: int = 50
    interest_stay: float = 0.9
    follow_successor: float = 0.5
    repeat_rate: float = 0.0
    new_session: float = 0.1
    start_time: float = 1.6e9  # seconds since the epoch of the earliest possible first event
    seed: int = 0

    def __post_init__(self):
        if self.num_users < 1 or self.num_items < 2 or self.num_categories < 1:
            raise ValueError("num_users >= 1, num_items >= 2 and num_categories >= 1 are required")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {self.min_length}, {self.max_length}")
        if self.mean_length < self.min_length:
            raise ValueError(f"mean_length {self.mean_length} is below min_length {self.min_length}")
        for name in ("interest_stay", "follow_successor", "repeat_rate", "new_session"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability, got {getattr(self, name)}")


@dataclasses.dataclass
class SyntheticLog:
    """A generated log, columnar and user-major (each user's events together, in time order).

    `user` / `item` / `category` are integer ids (written as `u<id>`, `i<id>`,
    `c<id>`); `successor` is the hidden pattern ([num_items] item -> its
    successor) and `item_category` each item's category, for tests.
    """

    spec: LogSpec
    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    time_interval: np.ndarray
    dwell_time: np.ndarray
    behavior: np.ndarray
    category: np.ndarray
    successor: np.ndarray
    item_category: np.ndarray

    @property
    def num_events(self) -> int:
        return len(self.item)

    @property
    def num_users(self) -> int:
        return self.spec.num_users

    def offsets(self) -> np.ndarray:
        """[num_users + 1] start of each user's events (user-major layout)."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.user, minlength=self.num_users))])

    def columns(self) -> Dict[str, np.ndarray]:
        """The log as string/number columns named as `read_log` maps them."""
        return {"user": np.char.add("u", self.user.astype(str)), "item": np.char.add("i", self.item.astype(str)),
                "timestamp": self.timestamp, "behavior": BEHAVIORS[self.behavior],
                "category": np.char.add("c", self.category.astype(str)),
                "time_interval": self.time_interval, "dwell_time": self.dwell_time}

    def to_interactions(self) -> Interactions:
        """The readers' in-memory form (per-user arrays: for logs that fit comfortably)."""
        columns = self.columns()
        bounds = self.offsets()
        split = lambda values: [values[s:e] for s, e in zip(bounds[:-1], bounds[1:])]
        side = {name: split(columns[name].astype(object) if columns[name].dtype.kind == "U" else columns[name])
                for name in ("timestamp", "behavior", "category", "time_interval", "dwell_time")}
        users = columns["user"][bounds[:-1]].tolist()
        return Interactions(users, split(columns["item"].astype(object)), side)

    def write(self, path: str, format: str = "user-item") -> str:  # pylint: disable=redefined-builtin
        """Writes the log in a format the readers take; returns `path`.

        "user-item": `u3 i17` lines; "csv" / "tsv" / "jsonl": a header (CSV/TSV)
        and the `LOG_COLUMNS`; "jd": one user per line as JD sessions,
        `sku+behavior+category+time_interval+dwell_time` tokens."""
        import pandas as pd

        if format not in WRITE_FORMATS:
            raise ValueError(f"unknown format {format!r}; choose one of {WRITE_FORMATS}")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        columns = self.columns()
        if format == "user-item":
            pd.DataFrame({"user": columns["user"], "item": columns["item"]}).to_csv(
                path, sep=" ", header=False, index=False)
        elif format in ("csv", "tsv"):
            pd.DataFrame(columns).to_csv(path, sep="," if format == "csv" else "\t", index=False)
        elif format == "jsonl":
            pd.DataFrame(columns).to_json(path, orient="records", lines=True)
        else:
            tokens = pd.Series(columns["item"]) + "+" + columns["behavior"] + "+" + pd.Series(columns["category"]) \
                + "+" + pd.Series(self.time_interval.round().astype(np.int64).astype(str)) \
                + "+" + pd.Series(self.dwell_time.round().astype(np.int64).astype(str))
            bounds = self.offsets()
            values = tokens.to_numpy()
            with open(path, "w") as f:
                f.writelines(" ".join(values[s:e]) + "\n" for s, e in zip(bounds[:-1], bounds[1:]))
        return path


def _category_sampler(weights: np.ndarray, item_category: np.ndarray, num_categories: int):
    """`draw(categories, uniforms)` -> items drawn by `weights` within each given category."""
    order = np.lexsort((np.arange(len(weights)), item_category))  # items grouped by category
    grouped = weights[order]
    cats = item_category[order]
    totals = np.bincount(cats, weights=grouped, minlength=num_categories)
    within = np.cumsum(grouped) - np.concatenate([[0.0], np.cumsum(totals)])[cats]  # CDF inside the category
    keys = cats + within / totals[cats]  # category c's items span (c, c + 1] ...
    last = np.concatenate([cats[1:] != cats[:-1], [True]])
    keys[last] = cats[last] + 1.0  # ... ending exactly at c + 1, whatever the rounding

    def draw(categories, uniforms):
        """uniforms in [0, 1): 1 - u in (0, 1] lands in category c's span."""
        position = np.searchsorted(keys, categories + (1.0 - uniforms), side="left")
        return order[np.minimum(position, len(order) - 1)]

    return draw, totals


def generate_log(spec: LogSpec = LogSpec()) -> SyntheticLog:
    """Generates the log `spec` describes (see the module docstring)."""
    rng = np.random.default_rng(spec.seed)
    num_items, num_users, num_categories = spec.num_items, spec.num_users, min(spec.num_categories, spec.num_items)

    # Items: Zipf-like weights over a random order, categories of varied size (every one non-empty).
    weights = 1.0 / np.arange(1, num_items + 1) ** spec.zipf_exponent
    weights = weights[rng.permutation(num_items)]
    item_category = np.concatenate([np.arange(num_categories),
                                    rng.integers(0, num_categories, num_items - num_categories)])
    item_category = item_category[rng.permutation(num_items)]
    draw_in, category_weights = _category_sampler(weights, item_category, num_categories)
    category_cdf = np.cumsum(category_weights) / category_weights.sum()
    draw_category = lambda n: np.minimum(np.searchsorted(category_cdf, rng.random(n)), num_categories - 1)
    successor = draw_in(item_category, rng.random(num_items))

    # Users: heavy-tailed lengths (log-normal with the asked mean), user-major layout.
    mu = np.log(spec.mean_length) - spec.length_sigma ** 2 / 2
    lengths = np.clip(np.round(rng.lognormal(mu, spec.length_sigma, num_users)), spec.min_length,
                      spec.max_length).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    item = np.empty(total, np.int64)
    category = np.empty(total, np.int64)

    users = np.arange(num_users)
    current = draw_category(num_users)
    previous = draw_in(current, rng.random(num_users))
    item[offsets[:-1]], category[offsets[:-1]] = previous, current
    for position in range(1, int(lengths.max())):
        active = lengths[users] > position  # users sorted by nothing: filter, then shrink the set
        users, current, previous = users[active], current[active], previous[active]
        n = len(users)
        roll = rng.random(n)
        follow = roll < spec.follow_successor
        moved = ~follow & (rng.random(n) > spec.interest_stay)
        current = np.where(moved, draw_category(n), current)
        chosen = np.where(follow, successor[previous], draw_in(current, rng.random(n)))
        current = np.where(follow, item_category[chosen], current)
        if spec.repeat_rate > 0:
            repeat = rng.random(n) < spec.repeat_rate
            earlier = offsets[users] + (rng.random(n) * position).astype(np.int64)
            chosen = np.where(repeat, item[earlier], chosen)
            current = np.where(repeat, item_category[chosen], current)
        item[offsets[users] + position], category[offsets[users] + position] = chosen, current
        previous = chosen

    # Time: seconds apart inside a session, days apart between sessions.
    user = np.repeat(np.arange(num_users), lengths)
    new_session = rng.random(total) < spec.new_session
    gaps = np.where(new_session, rng.exponential(2 * 86_400.0, total), rng.exponential(60.0, total))
    gaps[offsets[:-1]] = 0.0
    starts = spec.start_time + rng.random(num_users) * 365 * 86_400.0
    cumulative = np.cumsum(gaps)
    timestamp = starts[user] + cumulative - np.repeat(cumulative[offsets[:-1]], lengths)
    dwell = np.round(rng.lognormal(np.log(20.0), 0.8, total), 1)
    behavior = rng.choice(len(BEHAVIORS), total, p=BEHAVIOR_PROBABILITIES)
    return SyntheticLog(spec, user, item, np.round(timestamp), np.round(gaps), dwell, behavior, category,
                        successor, item_category)
