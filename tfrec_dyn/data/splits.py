"""Reusable splits: leave-one-out, by session, k-core filtering, head/tail and existing/new users."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tfrec_dyn.data.interactions import Interactions, item_run_starts

# Leave-one-out needs one test item, one validation item and at least one item
# to train on before them.
MIN_LOO_LENGTH = 3


@dataclasses.dataclass
class EvalSplit:
    """Inputs (each user's history) and the one held-out next interaction each.

    `targets` holds one event per user, with its side fields, so methods that
    predict the next category (HUP) find it there too.
    """

    inputs: Interactions
    targets: Interactions

    @property
    def num_users(self) -> int:
        return self.inputs.num_users

    def target_items(self) -> np.ndarray:
        return np.asarray([t[0] for t in self.targets.items], dtype=object)


@dataclasses.dataclass
class Split:
    """train / validation / test of an evaluation protocol (`leave_one_out`,
    `session_split`): sequences to train on, and the held-out next events.

    Leave-one-out: for a user with items i_1..i_n (n >= 3): train holds i_1..i_{n-2},
    validation predicts i_{n-1} from i_1..i_{n-2}, test predicts i_n from
    i_1..i_{n-1}.  Users with fewer than 3 interactions are too short to hold
    out both a validation and a test item: by the rule here they are kept in
    `train` only (they help training and are never evaluated); their count is
    in `num_short_users`. With `collapse_repeats` (`collapse_repeats_default`:
    micro-behaviour logs), consecutive events on one item (view, then read
    the comments, then add to cart) count as one: what is held out is the
    first event of each of the last two such runs, so a target is always a
    move to another item and users are counted by runs.  Without it (the
    SASRec protocol every `user item` / MovieLens result reports) the last
    two events are held out, whatever they repeat. See `session_split` for
    the other protocol.
    """

    train: Interactions
    validation: EvalSplit
    test: EvalSplit
    num_short_users: int


def _cut(data: Interactions, rows: List[int], cuts: List[int], target: bool) -> Interactions:
    """The users at `rows`, each sequence cut at its position in `cuts`: the events
    before it, or (`target=True`) the one event there."""
    def sequences(seqs):
        return [seqs[r][c:c + 1] if target else seqs[r][:c] for r, c in zip(rows, cuts)]

    return Interactions([data.user_ids[r] for r in rows], sequences(data.items),
                        {name: sequences(seqs) for name, seqs in data.side.items()}, data.report)


def _held_out(data: Interactions, rows: List[int], cuts: List[int]) -> EvalSplit:
    return EvalSplit(inputs=_cut(data, rows, cuts, False), targets=_cut(data, rows, cuts, True))


def collapse_repeats_default(side_fields) -> bool:
    """Whether leave-one-out collapses runs of events on one item when the
    setting is left unset: for micro-behaviour logs (a `behavior` field, as
    in JD's), where the community predicts the next item moved to; not for
    `user item` / MovieLens-style logs, where it predicts the next event."""
    return "behavior" in side_fields


def leave_one_out_cuts(items, collapse_repeats: bool = True) -> Tuple[int, Optional[int], Optional[int]]:
    """THE leave-one-out rule for one user's time-ordered items, used by
    `leave_one_out` and by the Beam step (`beam_sequences.build_examples`):
    (train_end, validation_target, test_target) positions. With
    `collapse_repeats` targets are the first events of runs of events on one
    item (see `Split`), else the last two events; a user with fewer than
    `MIN_LOO_LENGTH` runs (events) trains on everything and is not held out
    (both targets None).

    >>> leave_one_out_cuts(np.array(["a", "b", "b", "c", "c"], dtype=object))
    (1, 1, 3)
    >>> leave_one_out_cuts(np.array(["a", "b", "b", "c", "c"], dtype=object), collapse_repeats=False)
    (3, 3, 4)
    >>> leave_one_out_cuts(np.array(["a", "a", "b"], dtype=object))
    (3, None, None)
    """
    starts = item_run_starts(np.asarray(items)) if collapse_repeats else np.arange(len(items))
    if len(starts) < MIN_LOO_LENGTH:
        return len(items), None, None
    return int(starts[-2]), int(starts[-2]), int(starts[-1])


# `eval_users`' sample is drawn from this seed: every model is scored on the same users.
EVAL_USERS_SEED = 20240102


def check_eval_users(eval_users, name: str = "eval_users") -> None:
    """`eval_users` is None (all users) or a positive integer."""
    if eval_users is not None and (isinstance(eval_users, bool) or not isinstance(eval_users, (int, np.integer))
                                   or eval_users <= 0):
        raise ValueError(f"`{name}` must be a positive number of users, got {eval_users!r}")


def user_sample_keys(user_ids: Sequence[str], seed: int = EVAL_USERS_SEED) -> np.ndarray:
    """A seeded 64-bit hash of each user id (SipHash, `pandas.util.hash_array`):
    the users with the smallest keys are the sample (`sample_users`).  A key
    depends on the id alone, so a Beam step that sees one user at a time
    draws the same sample (`beam_sequences`)."""
    import pandas as pd

    ids = np.empty(len(user_ids), dtype=object)
    ids[:] = [str(user) for user in user_ids]
    return pd.util.hash_array(ids, hash_key=f"{seed:016d}"[-16:], categorize=False)


def sample_users(user_ids: Sequence[str], eval_users: Optional[int], seed: int = EVAL_USERS_SEED) -> np.ndarray:
    """THE evaluation sample: sorted row indices of the `eval_users` users with
    the smallest `user_sample_keys` (all of them when `eval_users` is None or
    not smaller).  The keys are 64-bit hashes: two ids share one with odds
    of about n²/2⁶⁵, and such a tie is broken by row here, by id in Beam."""
    check_eval_users(eval_users)
    if eval_users is None or eval_users >= len(user_ids):
        return np.arange(len(user_ids))
    return np.sort(np.argsort(user_sample_keys(user_ids, seed), kind="stable")[:int(eval_users)])


def leave_one_out(data: Interactions, collapse_repeats: bool = True) -> Split:
    """Splits every user's sequence; see `Split` for the rule on short users and item runs.

    >>> data = Interactions(["u"], [np.array(["a", "b", "c", "d"], dtype=object)])
    >>> split = leave_one_out(data)
    >>> split.train.items[0].tolist(), split.validation.target_items().tolist(), split.test.target_items().tolist()
    (['a', 'b'], ['c'], ['d'])
    >>> runs = leave_one_out(Interactions(["s"], [np.array(["a", "b", "b", "c", "c"], dtype=object)]))
    >>> runs.train.items[0].tolist(), runs.test.inputs.items[0].tolist(), runs.test.target_items().tolist()
    (['a'], ['a', 'b', 'b'], ['c'])
    """
    cuts = [leave_one_out_cuts(s, collapse_repeats) for s in data.items]
    long_rows = [i for i, (_, validation, _) in enumerate(cuts) if validation is not None]
    return Split(
        train=_cut(data, list(range(data.num_users)), [end for end, _, _ in cuts], False),
        validation=_held_out(data, long_rows, [cuts[i][1] for i in long_rows]),
        test=_held_out(data, long_rows, [cuts[i][2] for i in long_rows]),
        num_short_users=int(data.num_users - len(long_rows)),
    )


def _next_item_split(data: Interactions, rows: List[int], targets: str) -> EvalSplit:
    """One evaluation row per predicted item of each session: history = the
    events before the run, target = the run's first event (with its side
    fields); `targets="last"` keeps only each session's last run."""
    users, cuts = [], []
    for row in rows:
        starts = item_run_starts(data.items[row])[1:]
        for start in (starts[-1:] if targets == "last" else starts):
            users.append(row)
            cuts.append(int(start))
    return _held_out(data, users, cuts)


def session_split(data: Interactions, validation_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0, targets: str = "every") -> Split:
    """Whole sessions (users) for training, validation and testing: the protocol
    for session logs such as the JD micro-behaviour samples.

    The sessions are shuffled with `seed`; the first `test_fraction` of them
    are test sessions, the next `validation_fraction` validation sessions, the
    rest are trained on whole. In an evaluation session every move to another
    item is predicted from every event before it (GRU4Rec's session protocol;
    a micro-behaviour log repeats an item, so the target is the first event of
    a run of events on one item): one evaluation row per move, all with the
    session's id. `targets="last"` predicts only each session's last item. A
    held-out session whose events are all on one item has nothing to predict:
    it joins the training sessions instead and is counted in `num_short_users`.

    >>> data = Interactions([f"s{i}" for i in range(10)],
    ...                     [np.array(["a", "b", "b", "c", "c"], dtype=object)] * 9 + [np.array(["a"], dtype=object)])
    >>> split = session_split(data, 0.2, 0.2, seed=0)
    >>> [h.tolist() for h in split.test.inputs.items[:2]], split.test.target_items()[:2].tolist()
    ([['a'], ['a', 'b', 'b']], ['b', 'c'])
    """
    if min(validation_fraction, test_fraction) < 0 or validation_fraction + test_fraction >= 1:
        raise ValueError(f"`validation_fraction` and `test_fraction` must be >= 0 and sum to less than 1, "
                         f"got {validation_fraction} and {test_fraction}")
    if targets not in ("every", "last"):
        raise ValueError(f"`targets` must be 'every' or 'last', got {targets!r}")
    order = np.random.default_rng(seed).permutation(data.num_users)
    num_test = int(round(test_fraction * data.num_users))
    num_validation = int(round(validation_fraction * data.num_users))
    held_out = {"test": order[:num_test], "validation": order[num_test:num_test + num_validation]}

    def predictable(row):
        return len(item_run_starts(data.items[row])) > 1

    short = sorted(int(r) for rows in held_out.values() for r in rows if not predictable(r))
    evaluated = {name: sorted(int(r) for r in rows if predictable(r)) for name, rows in held_out.items()}
    train_rows = sorted(set(range(data.num_users)) - set(evaluated["test"]) - set(evaluated["validation"]))
    return Split(train=data.subset(train_rows),
                 validation=_next_item_split(data, evaluated["validation"], targets),
                 test=_next_item_split(data, evaluated["test"], targets), num_short_users=len(short))


def k_core(data: Interactions, k: int) -> Interactions:
    """Repeatedly drops interactions of users and items with fewer than `k` of them,
    until every remaining user and item has at least `k`."""
    if k <= 1:
        return data
    while True:
        item_counts: dict = {}
        for seq in data.items:
            for item in seq:
                item_counts[item] = item_counts.get(item, 0) + 1
        rare = {item for item, n in item_counts.items() if n < k}
        if rare:
            keep_masks = [np.fromiter((i not in rare for i in seq), bool, len(seq)) for seq in data.items]
            data = Interactions(
                user_ids=data.user_ids,
                items=[s[m] for s, m in zip(data.items, keep_masks)],
                side={name: [s[m] for s, m in zip(seqs, keep_masks)] for name, seqs in data.side.items()},
                report=data.report,
            )
        short_users = [i for i, n in enumerate(data.lengths()) if n < k]
        if short_users:
            data = data.subset(i for i, n in enumerate(data.lengths()) if n >= k)
        if not rare and not short_users:
            return data


def head_mask(counts, head_fraction: float = 0.2) -> np.ndarray:
    """[U] bool: the top `head_fraction` of users by `counts` (interactions) are
    head users, ties broken by order.

    >>> head_mask([3, 9, 1, 9, 2], 0.4).tolist()
    [False, True, False, True, False]
    """
    if not 0.0 < head_fraction < 1.0:
        raise ValueError(f"`head_fraction` must be in (0, 1), got {head_fraction}")
    counts = np.asarray(counts)
    heads = np.zeros(len(counts), bool)
    heads[np.argsort(-counts, kind="stable")[:int(round(head_fraction * len(counts)))]] = True
    return heads


def head_tail_users(data: Interactions, head_fraction: float = 0.2) -> Tuple[List[str], List[str]]:
    """(head, tail) user ids: the top `head_fraction` of users by interaction count
    are head users (ties broken by the order of `data`), the rest tail users."""
    heads = head_mask(data.lengths(), head_fraction)
    order = np.argsort(-data.lengths(), kind="stable")
    return [data.user_ids[i] for i in order if heads[i]], [data.user_ids[i] for i in order if not heads[i]]


def existing_new_users(data: Interactions, new_fraction: float = 0.2, seed: int = 0
                       ) -> Tuple[List[str], List[str]]:
    """(existing, new) user ids: a seeded random `new_fraction` of users is held
    out entirely as new users (never seen in training)."""
    if not 0.0 < new_fraction < 1.0:
        raise ValueError(f"`new_fraction` must be in (0, 1), got {new_fraction}")
    permutation = np.random.default_rng(seed).permutation(data.num_users)
    num_new = int(round(new_fraction * data.num_users))
    new = sorted(permutation[:num_new])
    existing = sorted(permutation[num_new:])
    return [data.user_ids[i] for i in existing], [data.user_ids[i] for i in new]


def select_users(data: Interactions, user_ids) -> Interactions:
    """The users named in `user_ids` (raw ids), in the order of `data`."""
    wanted = set(user_ids)
    return data.subset(i for i, u in enumerate(data.user_ids) if u in wanted)
