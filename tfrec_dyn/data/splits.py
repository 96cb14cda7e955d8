"""Reusable splits: leave-one-out, k-core filtering, head/tail and existing/new users."""

from __future__ import annotations

import dataclasses
from typing import List, Tuple

import numpy as np

from tfrec_dyn.data.interactions import Interactions

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
class LeaveOneOut:
    """train / validation / test of the leave-one-out protocol.

    For a user with items i_1..i_n (n >= 3): train holds i_1..i_{n-2},
    validation predicts i_{n-1} from i_1..i_{n-2}, test predicts i_n from
    i_1..i_{n-1}.  Users with fewer than 3 interactions are too short to hold
    out both a validation and a test item: by the rule here they are kept in
    `train` only (they help training and are never evaluated); their count is
    in `num_short_users`.
    """

    train: Interactions
    validation: EvalSplit
    test: EvalSplit
    num_short_users: int


def _eval_split(data: Interactions, rows: List[int], end: int) -> EvalSplit:
    """History = items[:end-1 from the end], target = the item at `end` from the end."""
    sub = data.subset(rows)
    inputs = sub.map_sequences(lambda s: s[: len(s) - end])
    targets = sub.map_sequences(lambda s: s[len(s) - end: len(s) - end + 1])
    return EvalSplit(inputs=inputs, targets=targets)


def leave_one_out(data: Interactions) -> LeaveOneOut:
    """Splits every user's sequence; see `LeaveOneOut` for the rule on short users.

    >>> data = Interactions(["u"], [np.array(["a", "b", "c", "d"], dtype=object)])
    >>> split = leave_one_out(data)
    >>> split.train.items[0].tolist(), split.validation.target_items().tolist(), split.test.target_items().tolist()
    (['a', 'b'], ['c'], ['d'])
    """
    lengths = data.lengths()
    long_rows = [i for i, n in enumerate(lengths) if n >= MIN_LOO_LENGTH]
    train = data.map_sequences(lambda s: s[:-2] if len(s) >= MIN_LOO_LENGTH else s)
    return LeaveOneOut(
        train=train,
        validation=_eval_split(data, long_rows, end=2),
        test=_eval_split(data, long_rows, end=1),
        num_short_users=int(len(lengths) - len(long_rows)),
    )


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


def head_tail_users(data: Interactions, head_fraction: float = 0.2) -> Tuple[List[str], List[str]]:
    """(head, tail) user ids: the top `head_fraction` of users by interaction count
    are head users (ties broken by the order of `data`), the rest tail users."""
    if not 0.0 < head_fraction < 1.0:
        raise ValueError(f"`head_fraction` must be in (0, 1), got {head_fraction}")
    order = np.argsort(-data.lengths(), kind="stable")
    num_head = int(round(head_fraction * data.num_users))
    head = [data.user_ids[i] for i in order[:num_head]]
    tail = [data.user_ids[i] for i in order[num_head:]]
    return head, tail


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
