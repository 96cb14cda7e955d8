"""The synthetic log generator: seeded, shaped as asked, and read back by every reader."""

import numpy as np
import pytest

from tfrec_dyn.data import read_jd_sessions, read_log, read_user_item
from tfrec_dyn.data.synthetic import LOG_COLUMNS, LogSpec, generate_log


def test_same_spec_same_log_and_bad_specs_are_refused():
    spec = LogSpec(num_users=300, num_items=200, seed=3)
    first, second = generate_log(spec), generate_log(spec)
    for name in ("user", "item", "timestamp", "behavior", "category", "dwell_time"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(generate_log(LogSpec(num_users=300, num_items=200, seed=4)).item[:50], first.item[:50])
    for bad in ({"num_items": 1}, {"min_length": 0}, {"mean_length": 2.0}, {"interest_stay": 1.5}):
        with pytest.raises(ValueError):
            LogSpec(**bad)


def test_the_log_has_the_shape_it_promises():
    spec = LogSpec(num_users=5_000, num_items=2_000, mean_length=20, num_categories=40, follow_successor=0.5,
                   interest_stay=0.9, seed=0)
    log = generate_log(spec)
    lengths = np.bincount(log.user)
    # Heavy-tailed lengths with the asked mean, none below the minimum.
    assert lengths.min() >= 3 and abs(lengths.mean() - 20) < 1.5 and lengths.max() > 8 * np.median(lengths)
    # Zipf-like popularity: the top 1 % of items take over a third of the events.
    counts = np.sort(np.bincount(log.item, minlength=spec.num_items))[::-1]
    assert counts[:20].sum() > 0.33 * counts.sum()
    # The learnable pattern: about `follow_successor` of next items are the previous item's successor
    # (a little more: a popularity draw can pick it too); categories agree with items.
    same_user = log.user[1:] == log.user[:-1]
    follows = np.mean(log.successor[log.item[:-1][same_user]] == log.item[1:][same_user])
    assert 0.5 <= follows < 0.7
    np.testing.assert_array_equal(log.item_category[log.item], log.category)
    np.testing.assert_array_equal(log.item_category[log.successor], log.item_category)
    # Interests drift, slowly: the category changes at some but few steps.
    changes = np.mean(log.category[1:][same_user] != log.category[:-1][same_user])
    assert 0.02 < changes < 0.2
    # Time moves forward within each user; sessions are days apart, events inside minutes.
    assert np.all(np.diff(log.timestamp)[same_user] >= 0)
    assert np.all(log.time_interval[np.flatnonzero(~np.r_[True, same_user])] == 0)
    assert np.median(log.time_interval) < 300 and log.time_interval.max() > 86_400


def test_repeat_rate_gives_repeats():
    plain = generate_log(LogSpec(num_users=500, num_items=5_000, follow_successor=0.0, seed=1))
    repeats = generate_log(LogSpec(num_users=500, num_items=5_000, follow_successor=0.0, repeat_rate=0.5, seed=1))

    def repeat_share(log):
        seen = [len(set(log.item[s:e])) for s, e in zip(log.offsets()[:-1], log.offsets()[1:])]
        return 1 - sum(seen) / log.num_events

    # At least the asked share of events re-consumes an earlier item (popular items repeat anyway).
    assert repeat_share(repeats) >= 0.5 and repeat_share(repeats) > repeat_share(plain) + 0.15


@pytest.mark.parametrize("fmt", ["user-item", "csv", "tsv", "jsonl", "jd"])
def test_every_written_format_reads_back_as_the_same_sequences(fmt, tmp_path):
    log = generate_log(LogSpec(num_users=60, num_items=80, mean_length=8, seed=2))
    expected = log.to_interactions()
    path = log.write(str(tmp_path / ("JD_sample" if fmt == "jd" else f"log.{fmt.replace('user-item', 'txt')}")),
                     fmt)
    if fmt == "user-item":
        data = read_user_item(path, strict=True)
    elif fmt == "jd":
        data = read_jd_sessions(path, strict=True)
    else:
        data = read_log(path, LOG_COLUMNS, strict=True)
    assert data.num_users == log.num_users and data.num_interactions == log.num_events
    for got, want in zip(data.items, expected.items):
        assert got.tolist() == want.tolist()
    if fmt in ("csv", "tsv", "jsonl"):
        for name in ("behavior", "category"):
            assert [s.tolist() for s in data.side[name]] == [s.tolist() for s in expected.side[name]]
        np.testing.assert_allclose(np.concatenate(data.side["timestamp"]), np.concatenate(expected.side["timestamp"]))
    if fmt == "jd":
        assert [s.tolist() for s in data.side["category"]] == [s.tolist() for s in expected.side["category"]]
        np.testing.assert_allclose(np.concatenate(data.side["time_interval"]), log.time_interval)
