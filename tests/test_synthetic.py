"""The synthetic generator: seeded, well-formed, Diginetica-like, and learnable."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from srgnn_rt.synthetic import SyntheticConfig, generate_click_log, generate_sessions, generate_sessions_array


def test_same_seed_same_sessions_other_seed_other_sessions():
    assert generate_sessions(50, n_items=300, seed=3) == generate_sessions(50, n_items=300, seed=3)
    assert generate_sessions(50, n_items=300, seed=3) != generate_sessions(50, n_items=300, seed=4)


def test_sessions_are_well_formed_and_diginetica_like():
    config = SyntheticConfig(n_items=43097)
    items, offsets = generate_sessions_array(20_000, seed=0, config=config)
    assert items.dtype == np.int64 and offsets.dtype == np.int64
    assert offsets[0] == 0 and offsets[-1] == len(items) and np.all(np.diff(offsets) >= 1)
    assert items.min() >= 1 and items.max() <= config.n_items
    lengths = np.diff(offsets)
    assert 4.5 < lengths.mean() < 5.5
    assert lengths.max() <= config.max_length and lengths.max() >= 30  # a long tail
    counts = np.bincount(items, minlength=config.n_items + 1)[1:]
    top = np.sort(counts)[::-1]
    assert top[:100].sum() > 10 * top[-100:].sum()  # skewed popularity


def test_next_click_is_predictable_beyond_popularity():
    """A first-order transition table beats the 20 most popular items by far."""
    items, offsets = generate_sessions_array(30_000, seed=1, config=SyntheticConfig(n_items=5000))
    sessions = [items[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
    train, test = sessions[:25_000], sessions[25_000:]
    popularity = Counter(i for s in train for i in s)
    top20 = {i for i, _ in popularity.most_common(20)}
    transitions = defaultdict(Counter)
    for s in train:
        for u, v in zip(s, s[1:]):
            transitions[u][v] += 1
    pop_hits = markov_hits = total = 0
    for s in test:
        for u, v in zip(s, s[1:]):
            total += 1
            pop_hits += v in top20
            markov_hits += v in {i for i, _ in transitions[u].most_common(20)}
    assert markov_hits > 3 * pop_hits


def test_click_log_is_time_ordered_with_raw_ids(tmp_path):
    log = generate_click_log(200, n_items=500, seed=2, days=10)
    assert len(log.session_id) == len(log.item_id) == len(log.timestamp)
    assert set(np.unique(log.session_id)) == set(range(1, 201))
    assert np.all(np.diff(log.session_id) >= 0)
    same_session = np.diff(log.session_id) == 0
    assert np.all(np.diff(log.timestamp)[same_session] > 0)
    assert log.item_id.min() >= 100_000  # raw ids are not internal ids
    path = tmp_path / "clicks.csv"
    log.write_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "session,item,time" and len(lines) == len(log) + 1


@pytest.mark.parametrize(
    "options",
    [{"n_items": 0}, {"p_jump": 1.5}, {"p_jump": 0.6, "p_repeat": 0.6}, {"mean_length": 0.5}, {"successors": True}],
)
def test_bad_config_is_refused(options):
    with pytest.raises(ValueError):
        SyntheticConfig(**options)


def test_bad_session_count_is_refused():
    with pytest.raises(ValueError, match="n_sessions"):
        generate_sessions_array(0)
