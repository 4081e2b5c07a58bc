"""Tests of the baselines: session rebuilding, hand examples, and plain-Python references on random data."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("scipy")

from srgnn_rt.dataset import PrefixSplit  # noqa: E402
from srgnn_rt.graph import CSRSessions  # noqa: E402
from srgnn_rt_torch.baselines import GRIDS, parse_baselines, run_baselines, session_rate  # noqa: E402
from srgnn_rt_torch.baselines.knn import SKNN, STAN, VSKNN, VSTAN, SessionIndex  # noqa: E402
from srgnn_rt_torch.baselines.ranking import ranks_and_top_k  # noqa: E402
from srgnn_rt_torch.baselines.rules import MostPopular, SequentialRules  # noqa: E402
from srgnn_rt_torch.baselines.sessions import prefix_sessions, rebuild_sessions  # noqa: E402


def _csr(sessions) -> CSRSessions:
    lengths = [len(s) for s in sessions]
    return CSRSessions(np.array([i for s in sessions for i in s], dtype=np.int64),
                       np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))


def _prefixes(sessions) -> PrefixSplit:
    """What prepare writes: each session's prefixes, longest first."""
    prefixes, targets = [], []
    for s in sessions:
        for cut in range(len(s) - 1, 0, -1):
            prefixes.append(s[:cut])
            targets.append(s[cut])
    csr = _csr(prefixes)
    return PrefixSplit(csr.items, csr.offsets, np.array(targets, dtype=np.int64))


def _dense(model, prefixes, n_items) -> np.ndarray:
    csr = _csr(prefixes)
    return model.scores(csr.items, csr.offsets).toarray()[:, : n_items + 1]


# --- sessions ----------------------------------------------------------------------------------


def test_rebuild_sessions_hand_example():
    sessions = [[1, 2, 3], [4, 4], [1, 2], [2, 5, 2, 5]]
    split = _prefixes(sessions)
    assert prefix_sessions(split).tolist() == [0, 0, 1, 2, 3, 3, 3]
    rebuilt, owner = rebuild_sessions(split)
    assert [rebuilt.items[a:b].tolist() for a, b in zip(rebuilt.offsets[:-1], rebuilt.offsets[1:])] == sessions


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 4), min_size=2, max_size=6), min_size=1, max_size=12))
def test_rebuild_sessions_round_trip(sessions):
    rebuilt, owner = rebuild_sessions(_prefixes(sessions))
    got = [rebuilt.items[a:b].tolist() for a, b in zip(rebuilt.offsets[:-1], rebuilt.offsets[1:])]
    assert got == sessions
    assert owner.tolist() == [s for s, session in enumerate(sessions) for _ in session[1:]]


def test_rebuild_keeps_a_session_cut_by_fraction():
    split = _prefixes([[1, 2, 3, 4], [5, 6]])
    tail = PrefixSplit(split.items[3:], split.offsets[2:] - 3, split.targets[2:])  # drops [1,2,3]->4, [1,2]->3
    rebuilt, _ = rebuild_sessions(tail)
    assert rebuilt.items.tolist() == [1, 2, 5, 6]


# --- hand examples ---------------------------------------------------------------------------------

TRAIN = [[1, 2, 3], [2, 4], [3, 1, 5], [2, 3, 2]]  # session 3 is the most recent
N_ITEMS = 5


def _index(ages=None) -> SessionIndex:
    return SessionIndex(_csr(TRAIN), N_ITEMS, ages)


def test_most_popular_hand_example():
    ranks, top = MostPopular().fit(_index()).rank(*_csr([[1]]), np.array([4]), k=3)
    # clicks: 1:2, 2:4, 3:3, 4:1, 5:1 -> order 2, 3, 1, 4, 5
    assert top.tolist() == [[2, 3, 1]]
    assert ranks.tolist() == [4]


def test_sequential_rules_hand_example():
    model = SequentialRules(steps=2, weighting="div", pruning=0).fit(_index())
    # rules from 2: [1,2,3]: 2->3 (1); [2,4]: 2->4 (1); [2,3,2]: 2->3 (1), 2->2 (1/2), 3->2 (1)
    scores = _dense(model, [[5, 2]], N_ITEMS)[0]
    assert scores.tolist() == pytest.approx([0, 0, 0.5, 2.0, 1.0, 0])
    pruned = SequentialRules(steps=2, weighting="div", pruning=2).fit(_index())
    assert _dense(pruned, [[2]], N_ITEMS)[0].tolist() == pytest.approx([0, 0, 0, 2.0, 1.0, 0])


def test_sknn_hand_example():
    # prefix {2, 3}: cosine with s0 {1,2,3} = 2/sqrt(6), s1 {2,4} = 1/2, s2 {1,3,5} = 1/sqrt(6), s3 {2,3} = 1
    scores = _dense(SKNN(k=2, sample_size=10).fit(_index()), [[2, 3]], N_ITEMS)[0]
    top = {0: 2 / math.sqrt(6), 3: 1.0}  # the two nearest
    expected = np.zeros(N_ITEMS + 1)
    for session, sim in top.items():
        for item in set(TRAIN[session]):
            expected[item] += sim
    np.testing.assert_allclose(scores, expected)
    # sample_size=2 keeps only the two most recent candidates: s3 and s2
    recent = _dense(SKNN(k=2, sample_size=2).fit(_index()), [[2, 3]], N_ITEMS)[0]
    expected = np.zeros(N_ITEMS + 1)
    for item in (2, 3):
        expected[item] += 1.0
    for item in (1, 3, 5):
        expected[item] += 1 / math.sqrt(6)
    np.testing.assert_allclose(recent, expected)


def test_vsknn_hand_example():
    # prefix [3, 2] (L = 2): weights div 3 -> 1/2, 2 -> 1; similarity / |q| = 2
    model = VSKNN(k=1, sample_size=10, weighting="div", weighting_score="div").fit(_index())
    scores = _dense(model, [[3, 2]], N_ITEMS)[0]
    # sims: s0 {1,2,3}: 1.5/2, s1 {2,4}: 0.5, s2 {1,3,5}: 0.25, s3 {2,3}: 0.75 -> tie s0/s3, s3 more recent
    # s3 holds the last click (2): step 1, decay 1
    expected = np.zeros(N_ITEMS + 1)
    expected[[2, 3]] = 0.75
    np.testing.assert_allclose(scores, expected)


def test_stan_hand_example():
    ages = np.array([3.0, 2.0, 1.0, 0.0])
    model = STAN(k=1, sample_size=10, lambda_spw=1.0, lambda_snh=2.0, lambda_inh=1.0).fit(_index(ages))
    scores = _dense(model, [[1, 5]], N_ITEMS)[0]
    # prefix [1, 5]: w1 = e^-1, w5 = 1; neighbours holding 1 or 5: s0 {1,2,3}, s2 {3,1,5}
    norm = math.sqrt(math.exp(-2) + 1)
    sim0 = math.exp(-1) / (norm * math.sqrt(3)) * math.exp(-3 / 2)
    sim2 = (math.exp(-1) + 1) / (norm * math.sqrt(3)) * math.exp(-1 / 2)
    assert sim2 > sim0
    # s2 = [3, 1, 5]: the last click in the prefix is 5 at position 3
    expected = np.zeros(N_ITEMS + 1)
    for item, position in ((3, 1), (1, 2), (5, 3)):
        expected[item] = sim2 * math.exp(-abs(position - 3))
    np.testing.assert_allclose(scores, expected)


def test_vstan_hand_example():
    model = VSTAN(k=1, sample_size=10, lambda_spw=1.0, lambda_snh=None, lambda_inh=1.0, lambda_ipw=1.0,
                  lambda_idf=2.0).fit(_index())
    scores = _dense(model, [[4, 2]], N_ITEMS)[0]
    # prefix [4, 2]: w4 = e^-1, w2 = 1; s1 {2,4} holds both: the nearest
    norm = math.sqrt(math.exp(-2) + 1)
    sim = (math.exp(-1) + 1) / (norm * math.sqrt(2))
    idf = {2: math.log(4 / 4), 4: math.log(4 / 1)}
    # s1 = [2, 4]: last prefix item in it at position 2; prefix's last position in s1: 2 (item 2) -> ipw 1
    expected = np.zeros(N_ITEMS + 1)
    for item, position in ((2, 1), (4, 2)):
        expected[item] = sim * math.exp(-abs(position - 2)) * (1 + 2.0 * idf[item])
    np.testing.assert_allclose(scores, expected)


# --- plain-Python references on random data ---------------------------------------------------------


def _slow_knn(kind, params, train, ages, n_items, prefix):
    """The definitions of knn.py's docstring, one neighbour at a time."""
    k, sample = params["k"], params["sample_size"]
    length = len(prefix)
    last = {item: p for p, item in enumerate(prefix, 1)}
    query = set(prefix)
    clicks = defaultdict(int)
    for s in train:
        for item in s:
            clicks[item] += 1
    idf = {item: math.log(len(train) / c) for item, c in clicks.items()}
    candidates = sorted((s for s in range(len(train)) if query & set(train[s])), reverse=True)[:sample]
    if kind == "vsknn":
        weigh = {"div": lambda p: p / length, "same": lambda p: 1.0,
                 "linear": lambda p: max(0.0, 1 - 0.1 * (length - p))}[params["weighting"]]
        w = {i: weigh(p) for i, p in last.items()}
    elif kind in ("stan", "vstan"):
        w = {i: math.exp((p - length) / params["lambda_spw"]) for i, p in last.items()}
    sims = []
    for s in candidates:
        n = set(train[s])
        common = query & n
        if kind == "sknn":
            sim = len(common) / math.sqrt(len(query) * len(n))
        elif kind == "vsknn" or (kind == "vstan" and params["similarity"] == "vec"):
            sim = sum(w[i] for i in common) / len(query)
        else:
            sim = sum(w[i] for i in common) / (math.sqrt(sum(v * v for v in w.values())) * math.sqrt(len(n)))
        if kind in ("stan", "vstan") and params["lambda_snh"] is not None:
            sim *= math.exp(-ages[s] / params["lambda_snh"])
        sim = round(sim, 12)
        if sim > 0:
            sims.append((s, sim))
    neighbours = sorted(sims, key=lambda pair: (-pair[1], -pair[0]))[:k]
    scores = np.zeros(n_items + 1)
    for s, sim in neighbours:
        seq = train[s]
        if kind == "sknn":
            for item in set(seq):
                scores[item] += sim
            continue
        p_star = max(p for p, item in enumerate(prefix, 1) if item in set(seq))
        if kind == "vsknn":
            step = length - p_star + 1
            decay = {"div": 1 / step, "same": 1.0, "linear": max(0.0, 1 - 0.1 * step)}[params["weighting_score"]]
            for item in set(seq):
                scores[item] += sim * decay * (1 + params["idf_weighting"] * idf[item])
            continue
        anchor = max(p for p, item in enumerate(seq, 1) if item in query)
        last_in_n = {item: p for p, item in enumerate(seq, 1)}
        for item, p in last_in_n.items():
            value = sim * math.exp(-abs(p - anchor) / params["lambda_inh"])
            if kind == "vstan":
                value *= (1 + params["lambda_idf"] * idf[item]) * math.exp((p_star - length) / params["lambda_ipw"])
            scores[item] += value
    return scores


def _slow_rules(params, train, n_items, prefix):
    weigh = {"div": lambda d: 1 / d, "same": lambda d: 1.0, "quadratic": lambda d: 1 / (d * d)}[params["weighting"]]
    rules = defaultdict(lambda: defaultdict(float))
    for s in train:
        for t in range(len(s)):
            for d in range(1, params["steps"] + 1):
                if t - d >= 0:
                    rules[s[t - d]][s[t]] += weigh(d)
    scores = np.zeros(n_items + 1)
    row = sorted(rules[prefix[-1]].items(), key=lambda pair: (-pair[1], pair[0]))
    if params["pruning"]:
        row = row[: params["pruning"]]
    for item, value in row:
        scores[item] = value
    return scores


CASES = [
    ("sknn", SKNN, {"k": 3, "sample_size": 5}),
    ("sknn", SKNN, {"k": 50, "sample_size": 100}),
    ("vsknn", VSKNN, {"k": 3, "sample_size": 6, "weighting": "div", "weighting_score": "div", "idf_weighting": 0.0}),
    ("vsknn", VSKNN, {"k": 4, "sample_size": 8, "weighting": "linear", "weighting_score": "linear",
                      "idf_weighting": 2.0}),
    ("stan", STAN, {"k": 3, "sample_size": 6, "lambda_spw": 1.02, "lambda_snh": 5.0, "lambda_inh": 2.05}),
    ("vstan", VSTAN, {"k": 3, "sample_size": 6, "similarity": "cosine", "lambda_spw": 1.02, "lambda_snh": 5.0,
                      "lambda_inh": 2.05, "lambda_ipw": 1.02, "lambda_idf": 5.0}),
    ("vstan", VSTAN, {"k": 2, "sample_size": 4, "similarity": "vec", "lambda_spw": 4.9, "lambda_snh": None,
                      "lambda_inh": 9.8, "lambda_ipw": 4.9, "lambda_idf": 5.0}),
]


@pytest.mark.parametrize(("kind", "model_class", "params"), CASES)
def test_knn_matches_plain_python(kind, model_class, params):
    rng = random.Random(hash(kind) % 1000 + params["k"])
    for trial in range(4):
        n_items = rng.randint(3, 9)
        train = [[rng.randint(1, n_items) for _ in range(rng.randint(1, 6))] for _ in range(rng.randint(3, 25))]
        ages = [float(len(train) - 1 - s) / 2 for s in range(len(train))]
        prefixes = [[rng.randint(1, n_items) for _ in range(rng.randint(1, 5))] for _ in range(12)]
        model = model_class(**params).fit(SessionIndex(_csr(train), n_items, np.array(ages)))
        fast = _dense(model, prefixes, n_items)
        for row, prefix in enumerate(prefixes):
            expected = _slow_knn(kind, params, train, ages, n_items, prefix)
            np.testing.assert_allclose(fast[row], expected, rtol=1e-9, atol=1e-12,
                                       err_msg=f"trial {trial} prefix {prefix} train {train}")


@pytest.mark.parametrize("params", GRIDS["sr"][:1] + [{"steps": 2, "weighting": "quadratic", "pruning": 2},
                                                       {"steps": 3, "weighting": "same", "pruning": 0}])
def test_rules_match_plain_python(params):
    rng = random.Random(params["steps"])
    for _ in range(4):
        n_items = rng.randint(2, 8)
        train = [[rng.randint(1, n_items) for _ in range(rng.randint(1, 7))] for _ in range(rng.randint(1, 20))]
        prefixes = [[rng.randint(1, n_items) for _ in range(rng.randint(1, 4))] for _ in range(10)]
        fast = _dense(SequentialRules(**params).fit(SessionIndex(_csr(train), n_items)), prefixes, n_items)
        for row, prefix in enumerate(prefixes):
            np.testing.assert_allclose(fast[row], _slow_rules(params, train, n_items, prefix))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.lists(st.integers(0, 3), min_size=n, max_size=n), st.integers(1, n)), min_size=1, max_size=6),
    st.integers(1, 12),
)))
def test_ranks_and_top_k_match_a_full_sort(data):
    """Integer scores force ties: order by score, then by id; unscored items after scored ones."""
    import scipy.sparse as sp

    n_items, rows, k = data
    dense = np.zeros((len(rows), n_items + 1))
    for r, (values, _) in enumerate(rows):
        dense[r, 1:] = values
    targets = np.array([t for _, t in rows], dtype=np.int64)
    ranks, top = ranks_and_top_k(sp.csr_matrix(dense), targets, k)
    for r in range(len(rows)):
        order = sorted(range(1, n_items + 1), key=lambda i: (-dense[r, i], i))
        assert ranks[r] == order.index(targets[r]) + 1
        assert top[r].tolist() == order[: min(k, n_items)]


# --- the protocol -------------------------------------------------------------------------------------


def test_parse_baselines():
    assert parse_baselines("all") == ("pop", "sr", "sknn", "vsknn", "stan", "vstan")
    assert parse_baselines("sknn, pop,sknn") == ("sknn", "pop")
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['gru'\]"):
        parse_baselines("pop,gru")


def test_session_rate_from_the_manifest():
    assert session_rate({"test_sessions": 70, "options": {"test_days": 7.0}}) == 10.0
    assert session_rate({"test_sessions": 70, "options": {}}) is None


def test_run_baselines_on_the_synthetic_dataset(synthetic_dataset):
    from srgnn_rt.dataset import PreparedDataset
    from srgnn_rt.metrics import ranking_metrics

    dataset = PreparedDataset.load(synthetic_dataset)
    results = {r.name: r for r in run_baselines(dataset, ("pop", "sr", "sknn"), k=20)}
    for result in results.values():
        assert result.ranks.shape == (len(dataset.test),)
        assert result.top_k.shape == (len(dataset.test), 20)
        assert result.params in GRIDS[result.name]
    assert len(results["sknn"].search) == len(GRIDS["sknn"])
    assert results["pop"].search == []
    pop = ranking_metrics(results["pop"].ranks)["HR@20"]
    assert ranking_metrics(results["sknn"].ranks)["HR@20"] > pop
    assert ranking_metrics(results["sr"].ranks)["HR@20"] > pop
