"""srgnn_rt.graph: the compiled builder against the numpy specification, layouts, errors, threads."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgnn_rt import _graph
from srgnn_rt.graph import CSRSessions, SessionGraphs, build_graphs
from srgnn_rt.synthetic import generate_sessions

FIELDS = ("items", "adjacency", "alias", "mask", "lengths", "n_nodes")
DTYPES = {"items": np.int64, "adjacency": np.float32, "alias": np.int64, "mask": np.float32}
DIGINETICA = Path(__file__).resolve().parents[2] / "shared" / "data" / "diginetica-sample" / "train-item-views.csv"

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(actual: SessionGraphs, expected: SessionGraphs) -> None:
    for field in FIELDS:
        a, e = getattr(actual, field), getattr(expected, field)
        assert a.dtype == e.dtype, field
        np.testing.assert_array_equal(a, e, err_msg=field)


def padded(sessions: list[list[int]], width: int | None = None) -> np.ndarray:
    """0-padded int64[B, width] array of the sessions."""
    width = width or max(map(len, sessions))
    array = np.zeros((len(sessions), width), dtype=np.int64)
    for row, session in enumerate(sessions):
        array[row, : len(session)] = session
    return array


def check_invariants(graphs: SessionGraphs, sessions: list[list[int]], max_length: int | None) -> None:
    """Structure every batch of graphs has, whatever the backend."""
    n_cols = graphs.items.shape[1]
    assert graphs.adjacency.shape == (len(sessions), n_cols, 2 * n_cols)
    for b, session in enumerate(sessions):
        clicks = session[-max_length:] if max_length else session
        n, length = graphs.n_nodes[b], graphs.lengths[b]
        assert length == len(clicks)
        np.testing.assert_array_equal(graphs.items[b, :n], np.unique(clicks))
        assert not graphs.items[b, n:].any()
        np.testing.assert_array_equal(graphs.items[b, graphs.alias[b, :length]], clicks)
        assert graphs.mask[b, :length].all() and not graphs.mask[b, length:].any()
        assert not graphs.alias[b, length:].any()
        for half in (graphs.adjacency[b, :, :n_cols], graphs.adjacency[b, :, n_cols:]):
            assert not half[n:].any() and not half[:, n:].any()
            sums = half.sum(axis=1)
            assert np.all((np.abs(sums - 1) < 1e-6) | (sums == 0))


# --- strategies ---------------------------------------------------------------

short_sessions = st.lists(st.integers(1, 12), min_size=1, max_size=12)  # small catalog: repeats, self-loops
one_item_repeated = st.builds(lambda item, n: [item] * n, st.integers(1, 12), st.integers(1, 20))
long_sessions = st.builds(
    lambda seed: np.random.default_rng(seed).integers(1, 80, size=200).tolist(), st.integers(0, 2**32 - 1)
)
sessions_strategy = st.one_of(short_sessions, short_sessions, short_sessions, one_item_repeated, long_sessions)
batches = st.lists(sessions_strategy, min_size=1, max_size=8)
edge_weights = st.sampled_from(["binary", "count"])
max_lengths = st.one_of(st.none(), st.integers(1, 15))


# --- compiled == specification ------------------------------------------------


@PROPERTY
@given(batch=batches, edge_weight=edge_weights, max_length=max_lengths)
def test_compiled_matches_reference(batch, edge_weight, max_length):
    compiled = build_graphs(batch, edge_weight=edge_weight, max_length=max_length)
    reference = build_graphs(batch, edge_weight=edge_weight, max_length=max_length, backend="python")
    assert_same(compiled, reference)
    for field, dtype in DTYPES.items():
        assert getattr(compiled, field).dtype == dtype
    check_invariants(compiled, batch, max_length)


@PROPERTY
@given(batch=batches, edge_weight=edge_weights, extra_nodes=st.integers(0, 3), extra_clicks=st.integers(0, 3))
def test_fixed_padding_matches_reference(batch, edge_weight, extra_nodes, extra_clicks):
    pad_nodes = max(len(set(session)) for session in batch) + extra_nodes
    pad_length = max(map(len, batch)) + extra_clicks
    options = dict(pad_nodes=pad_nodes, pad_length=pad_length, edge_weight=edge_weight)
    compiled = build_graphs(batch, **options)
    assert compiled.items.shape == (len(batch), pad_nodes)
    assert compiled.alias.shape == compiled.mask.shape == (len(batch), pad_length)
    assert_same(compiled, build_graphs(batch, backend="python", **options))
    # Extra padding only appends zeros to the natural shape.
    natural = build_graphs(batch, edge_weight=edge_weight)
    n, t = natural.items.shape[1], natural.alias.shape[1]
    np.testing.assert_array_equal(compiled.items[:, :n], natural.items)
    np.testing.assert_array_equal(compiled.adjacency[:, :n, :n], natural.adjacency[:, :, :n])
    np.testing.assert_array_equal(compiled.adjacency[:, :n, pad_nodes : pad_nodes + n], natural.adjacency[:, :, n:])
    np.testing.assert_array_equal(compiled.alias[:, :t], natural.alias)


@settings(PROPERTY, max_examples=60)
@given(batch=batches, edge_weight=edge_weights)
def test_input_forms_agree(batch, edge_weight):
    expected = build_graphs(batch, edge_weight=edge_weight)
    dtypes = [np.int64, np.int32, np.uint16]
    forms = [
        tuple(tuple(session) for session in batch),
        [np.array(session, dtype=dtypes[i % 3]) for i, session in enumerate(batch)],
        [[np.int64(item) for item in session] for session in batch],
        CSRSessions.from_sequences(batch),
        CSRSessions(np.concatenate(batch).astype(np.int32), np.cumsum([0] + [len(s) for s in batch])),
        padded(batch),
        padded(batch, width=max(map(len, batch)) + 2).astype(np.uint32),
    ]
    for form in forms:
        assert_same(build_graphs(form, edge_weight=edge_weight), expected)


def test_batches_of_synthetic_sessions_match_reference():
    sessions = generate_sessions(300, seed=7)
    for edge_weight in ("binary", "count"):
        for max_length in (None, 5):
            options = dict(edge_weight=edge_weight, max_length=max_length, n_items=43097)
            assert_same(build_graphs(sessions, **options), build_graphs(sessions, backend="python", **options))


def test_real_diginetica_sessions_match_reference():
    if not DIGINETICA.exists():
        pytest.skip(f"real data sample not found at {DIGINETICA}")
    with open(DIGINETICA, newline="") as f:
        reader = csv.DictReader(f, delimiter=";")
        rows = [(int(r["session_id"]), int(r["timeframe"]), int(r["item_id"])) for r in reader]
    rows.sort()
    raw_items = np.array([item for _, _, item in rows])
    _, internal = np.unique(raw_items, return_inverse=True)
    session_ids = np.array([session for session, _, _ in rows])
    starts = np.flatnonzero(np.r_[True, session_ids[1:] != session_ids[:-1]])
    csr = CSRSessions(internal + 1, np.r_[starts, len(rows)])
    assert len(csr.lengths) > 2000
    # The longest sessions plus a spread of the others keep the (slow) specification quick.
    subset = csr.take(np.r_[np.argsort(csr.lengths)[-200:], np.arange(0, len(csr.lengths), 4)])
    for edge_weight in ("binary", "count"):
        options = dict(edge_weight=edge_weight, max_length=50, n_items=int(internal.max()) + 1)
        assert_same(build_graphs(subset, **options), build_graphs(subset, backend="python", **options))


# --- semantics by hand --------------------------------------------------------


@pytest.mark.parametrize("edge_weight", ["binary", "count"])
@pytest.mark.parametrize("backend", ["compiled", "python"])
def test_paper_example_rows(edge_weight, backend):
    g = build_graphs([[1, 2, 3, 2, 4]], edge_weight=edge_weight, backend=backend)
    np.testing.assert_array_equal(g.items, [[1, 2, 3, 4]])
    np.testing.assert_array_equal(g.alias, [[0, 1, 2, 1, 3]])
    np.testing.assert_array_equal(g.mask, [[1, 1, 1, 1, 1]])
    a_in, a_out = g.adjacency[0, :, :4], g.adjacency[0, :, 4:]
    # Node 2 (index 1) receives from 1 and 3, sends to 3 and 4.
    np.testing.assert_array_equal(a_in[1], [0.5, 0, 0.5, 0])
    np.testing.assert_array_equal(a_out[1], [0, 0, 0.5, 0.5])
    np.testing.assert_array_equal(a_in, [[0, 0, 0, 0], [0.5, 0, 0.5, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(a_out, [[0, 1, 0, 0], [0, 0, 0.5, 0.5], [0, 1, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("backend", ["compiled", "python"])
def test_repeated_edges_binary_vs_count(backend):
    # 1->2 twice, 2->1 twice, 1->3 once.
    binary = build_graphs([[1, 2, 1, 2, 1, 3]], backend=backend).adjacency[0]
    count = build_graphs([[1, 2, 1, 2, 1, 3]], edge_weight="count", backend=backend).adjacency[0]
    np.testing.assert_array_equal(binary[0, 3:], [0, 0.5, 0.5])
    np.testing.assert_array_equal(count[0, 3:], np.array([0, 2 / 3, 1 / 3], dtype=np.float32))
    for matrix in (binary, count):
        np.testing.assert_array_equal(matrix[:, :3], [[0, 1, 0], [1, 0, 0], [1, 0, 0]])  # A_in


@pytest.mark.parametrize("backend", ["compiled", "python"])
def test_self_loops_and_single_clicks(backend):
    g = build_graphs([[5, 5, 5], [7]], backend=backend)
    np.testing.assert_array_equal(g.items, [[5], [7]])
    np.testing.assert_array_equal(g.adjacency, [[[1, 1]], [[0, 0]]])
    np.testing.assert_array_equal(g.lengths, [3, 1])
    np.testing.assert_array_equal(g.mask, [[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("backend", ["compiled", "python"])
def test_max_length_keeps_the_last_clicks(backend):
    g = build_graphs([[1, 2, 3, 4, 5], [9, 8]], max_length=2, pad_length=2, backend=backend)
    np.testing.assert_array_equal(g.items, [[4, 5], [8, 9]])
    np.testing.assert_array_equal(g.alias, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(g.lengths, [2, 2])


def test_padding_id_is_never_a_node():
    g = build_graphs(padded([[3, 1], [2, 2, 2, 6]]))
    np.testing.assert_array_equal(g.items, [[1, 3], [2, 6]])
    np.testing.assert_array_equal(g.n_nodes, [2, 2])


# --- bad input ----------------------------------------------------------------

items3 = np.array([1, 2, 3])
BAD_INPUT = [
    ([], {}, ValueError, "batch is empty"),
    ((), {}, ValueError, "batch is empty"),
    ([[1], []], {}, ValueError, "session 1 is empty"),
    ([[1, 2], [3, 0, 4]], {}, ValueError, "session 1 has item id 0 at position 1 \\(ids start at 1\\)"),
    ([[1, -5]], {}, ValueError, "session 0 has item id -5 at position 1"),
    ([[1, 2], [3, 99]], {"n_items": 50}, ValueError, "session 1 has item id 99 at position 1 above n_items=50"),
    ([[1, 2.0]], {}, TypeError, "session 0 has 2.0 of type float at position 1"),
    ([[1], [1, True]], {}, TypeError, "session 1 has True of type bool at position 1"),
    ([[np.bool_(True)]], {}, TypeError, "session 0 has .* bool_? at position 0"),
    ([[1, "3"]], {}, TypeError, "session 0 has '3' of type str at position 1"),
    ([[1, None]], {}, TypeError, "session 0 has None of type NoneType at position 1"),
    ([[1], np.array([1.0, 2.0])], {}, TypeError, "session 1 has dtype float64"),
    ([[1], np.array([True])], {}, TypeError, "session 1 has dtype bool"),
    ([[1], np.array([[1, 2]])], {}, ValueError, "session 1 is a 2-D array"),
    ([[1], 5], {}, TypeError, "session 1 is a int"),
    ([[1], {2, 3}], {}, TypeError, "session 1 is a set"),
    ([[1, 2**70]], {}, ValueError, "session 0 has item id 1180591620717411303424 at position 1, which does not"),
    ([[1], np.array([3, 2**64 - 1], dtype=np.uint64)], {}, ValueError, "session 1 has item id 1844674407370955"),
    ("12", {}, TypeError, "got str"),
    ((s for s in [[1]]), {}, TypeError, "got generator"),
    (np.array([1, 2, 3]), {}, ValueError, "must be 2-D"),
    (np.array([[1.0, 2.0]]), {}, TypeError, "dtype float64"),
    (np.array([[True]]), {}, TypeError, "dtype bool"),
    (np.array([["a"]]), {}, TypeError, "dtype <U1"),
    (np.zeros((0, 3), dtype=np.int64), {}, ValueError, "batch is empty"),
    (np.array([[1, 2], [0, 0]]), {}, ValueError, "session 1 is empty"),
    (np.array([[1, 2, 0], [3, 0, 5]]), {}, ValueError, "session 1 has item id 5 at position 2 after padding"),
    (np.array([[1, 2], [4, -1]]), {}, ValueError, "session 1 has item id -1 at position 1"),
    (np.array([[1, 2], [4, 7]]), {"n_items": 6}, ValueError, "session 1 has item id 7 at position 1 above n_items=6"),
    (np.array([[2**63 + 5]], dtype=np.uint64), {}, ValueError, "does not fit in int64"),
    (CSRSessions(items3, np.array([0, 2, 1, 3])), {}, ValueError, "offsets decrease at session 1"),
    (CSRSessions(items3, np.array([1, 3])), {}, ValueError, "must start at 0 and end at len\\(items\\) = 3"),
    (CSRSessions(items3, np.array([0, 2])), {}, ValueError, "must start at 0 and end at len\\(items\\) = 3"),
    (CSRSessions(items3, np.array([0])), {}, ValueError, "batch is empty"),
    (CSRSessions(items3, np.array([0, 0, 3])), {}, ValueError, "session 0 is empty"),
    (CSRSessions(np.array([1, 0, 3]), np.array([0, 1, 3])), {}, ValueError, "session 1 has item id 0 at position 0"),
    (CSRSessions(np.array([1.0, 2.0]), np.array([0, 2])), {}, TypeError, "CSRSessions.items has dtype float64"),
    (CSRSessions(items3, np.array([0.0, 3.0])), {}, TypeError, "CSRSessions.offsets has dtype float64"),
    (CSRSessions(np.array([[1, 2]]), np.array([0, 2])), {}, ValueError, "must be 1-D"),
    ([[1, 2, 3], [4]], {"pad_nodes": 2}, ValueError, "session 0 has 3 distinct items, more than pad_nodes=2"),
    ([[1], [1, 1, 1]], {"pad_length": 2}, ValueError, "session 1 has 3 clicks, more than pad_length=2"),
    ([[1]], {"edge_weight": "weighted"}, ValueError, "edge_weight must be one of"),
    ([[1]], {"backend": "cuda"}, ValueError, "backend must be one of"),
    ([[1]], {"n_items": 0}, ValueError, "n_items must be >= 1, got 0"),
    ([[1]], {"max_length": True}, TypeError, "max_length must be an int"),
    ([[1]], {"pad_nodes": 2.5}, TypeError, "pad_nodes must be an int >= 1, got 2.5 of type float"),
    ([[1]], {"pad_nodes": 2**63}, ValueError, "pad_nodes must be in 1..65536, got 9223372036854775808"),
    ([[1]], {"pad_nodes": np.uint64(2**64 - 1)}, ValueError, "pad_nodes must be in 1..65536"),
    ([[1]], {"pad_length": 2**63}, ValueError, "pad_length must be in 1..16777216"),
    ([[1]], {"max_length": 2**63}, ValueError, "max_length must be in 1..9223372036854775807"),
    ([[1]], {"n_items": 2**64}, ValueError, "n_items must be in 1..9223372036854775807"),
    ([[1]], {"n_items": -(10**5000)}, ValueError, "n_items must be in 1..9223372036854775807, got an int of 16610"),
    ([[1]], {"max_length": 10**5000}, ValueError, "max_length must be in 1..9223372036854775807, got an int of"),
]


@pytest.mark.parametrize("backend", ["compiled", "python"])
@pytest.mark.parametrize(("sessions", "options", "error", "message"), BAD_INPUT)
def test_bad_input_is_named(sessions, options, error, message, backend):
    options = {"backend": backend, **options}
    with pytest.raises(error, match=message):
        build_graphs(sessions, **options)


def test_fitting_pads_with_max_length_are_fine():
    g = build_graphs([[1, 2, 3, 4], [5]], max_length=2, pad_length=2, pad_nodes=2)
    assert g.alias.shape == (2, 2) and g.items.shape == (2, 2)


def test_session_mutated_while_read_raises():
    session = [1, 2, 3]

    class Shrinking:
        def __index__(self):
            session.clear()
            return 4

    session.insert(1, Shrinking())
    with pytest.raises(RuntimeError, match="session 0 changed length"):
        build_graphs([session])


_MUTATION_CASES = {
    # A list element's __index__ resizes a numpy session read earlier (it segfaulted: the copy
    # used the length recorded before the callback ran).
    "resize a later array": """
        victim = np.arange(1, 1_000_001, dtype=np.int64)
        class Shrinks:
            def __index__(self):
                victim.resize(1, refcheck=False)
                return 1
        items, offsets = _graph.sequences_to_csr([[Shrinks()], victim])
        assert offsets.tolist() == [0, 1, 1_000_001] and items[-1] == 1_000_000
    """,
    "retype and reshape a later array": """
        victim = np.arange(1, 9, dtype=np.int64)
        class Retypes:
            def __index__(self):
                victim.dtype = np.int32
                victim.shape = (4, 4)
                return 2
        items, offsets = _graph.sequences_to_csr([[Retypes()], victim])
        assert items.tolist() == [2, *range(1, 9)]
    """,
    # An int subclass whose __index__ resizes: ints convert without calling it.
    "int subclass resizing an array": """
        victim = np.arange(1, 100_001, dtype=np.uint64)
        class Sneaky(int):
            def __index__(self):
                victim.resize(0, refcheck=False)
                return 1
        items, offsets = _graph.sequences_to_csr([victim, [Sneaky(7)], victim])
        assert offsets.tolist() == [0, 100_000, 100_001, 200_001] and items[100_000] == 7
    """,
    # __index__ empties the list of a later session (its own list: test_session_mutated_while_read_raises).
    "shrink a later list": """
        later = list(range(1, 10_001))
        class Clears:
            def __index__(self):
                later.clear()
                return 4
        try:
            _graph.sequences_to_csr([[Clears()], later])
        except RuntimeError as exc:
            assert "session 1 changed length" in str(exc)
        else:
            raise AssertionError("no error")
    """,
    # The batch list itself mutated from an element's __index__: the kernel reads a snapshot.
    "mutate the batch": """
        batch = []
        class Empties:
            def __index__(self):
                batch.clear()
                return 3
        batch += [[Empties()], np.arange(1, 5)]
        items, offsets = _graph.sequences_to_csr(batch)
        assert items.tolist() == [3, 1, 2, 3, 4]
    """,
}


def test_python_callbacks_never_crash_the_kernel():
    """Each case runs in a subprocess, so a crash fails this test instead of killing pytest."""
    import subprocess
    import sys
    import textwrap

    script = "import numpy as np\nfrom srgnn_rt import _graph\n" + "".join(
        f"\ndef case_{i}():\n" + textwrap.indent(textwrap.dedent(body), "    ")
        for i, body in enumerate(_MUTATION_CASES.values())
    ) + "".join(f"\ncase_{i}()\nprint({name!r}, flush=True)" for i, name in enumerate(_MUTATION_CASES))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"exit {run.returncode}; passed: {run.stdout!r}; {run.stderr[-2000:]}"
    assert run.stdout.splitlines() == list(_MUTATION_CASES)


# --- CSRSessions --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(short_sessions, min_size=1, max_size=10), data=st.data())
def test_take_gathers_sessions(batch, data):
    csr = CSRSessions.from_sequences(batch)
    np.testing.assert_array_equal(csr.lengths, [len(s) for s in batch])
    indices = data.draw(st.lists(st.integers(0, len(batch) - 1), max_size=12))
    taken = csr.take(np.array(indices, dtype=np.int64))
    assert taken.items.dtype == taken.offsets.dtype == np.int64
    expected = [batch[i] for i in indices]
    np.testing.assert_array_equal(taken.offsets, np.cumsum([0] + [len(s) for s in expected]))
    np.testing.assert_array_equal(taken.items, np.array(sum(expected, []), dtype=np.int64))


@pytest.mark.parametrize(
    ("indices", "error", "message"),
    [
        ([0, 3], ValueError, "indices\\[1\\] = 3 is outside 0..2"),
        ([-1], ValueError, "indices\\[0\\] = -1 is outside"),
        ([0.0], TypeError, "must be integers"),
        ([[0]], ValueError, "must be 1-D"),
    ],
)
def test_take_rejects_bad_indices(indices, error, message):
    with pytest.raises(error, match=message):
        CSRSessions.from_sequences([[1], [2, 3], [4]]).take(indices)


def test_from_sequences_validates():
    with pytest.raises(ValueError, match="session 1 has item id 9 at position 0 above n_items=5"):
        CSRSessions.from_sequences([[1], [9]], n_items=5)


# --- threads ------------------------------------------------------------------


def parallel_sized_batch(seed: int) -> tuple[list[list[int]], int]:
    """Sessions and a pad_nodes big enough for both kernel passes to use OpenMP threads."""
    rng = np.random.default_rng(seed)
    n_sessions = _graph.PARALLEL_MIN_CLICKS // 200 + 2
    pad_nodes = int(np.sqrt(_graph.PARALLEL_MIN_CELLS / n_sessions)) + 1
    sessions = rng.integers(1, pad_nodes + 1, size=(n_sessions, 200)).tolist()
    return sessions, pad_nodes


@pytest.mark.parametrize("edge_weight", ["binary", "count"])
def test_parallel_sized_batch_matches_reference(edge_weight):
    sessions, pad_nodes = parallel_sized_batch(seed=5)
    options = dict(edge_weight=edge_weight, pad_nodes=pad_nodes)
    assert_same(build_graphs(sessions, **options), build_graphs(sessions, backend="python", **options))


def test_threads_building_at_once_match_sequential_builds():
    big, pad_nodes = parallel_sized_batch(seed=6)
    jobs = [(generate_sessions(n, seed=seed), {}) for seed, n in enumerate([3, 40, 100, 600, 7, 250, 512])]
    jobs.append((big, {"pad_nodes": pad_nodes}))
    weights = ("binary", "count")
    jobs = [(sessions, {**options, "edge_weight": weights[i % 2]}) for i, (sessions, options) in enumerate(jobs)]
    expected = [build_graphs(sessions, **options) for sessions, options in jobs]
    start = threading.Barrier(len(jobs))
    results: list[list[SessionGraphs]] = [[] for _ in jobs]

    def work(i: int) -> None:
        start.wait()
        sessions, options = jobs[i]
        for _ in range(4):
            results[i].append(build_graphs(sessions, **options))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, runs in enumerate(results):
        assert len(runs) == 4
        for graphs in runs:
            assert_same(graphs, expected[i])


# --- the kernel on its own: garbage in, exception out -------------------------


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_min_max_helper(values):
    assert _graph.min_max(np.array(values, dtype=np.int64)) == (min(values), max(values))


def test_min_max_helper_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        _graph.min_max(np.zeros(0, dtype=np.int64))


def test_kernel_rejects_inconsistent_arrays():
    items = np.arange(1, 7, dtype=np.int64)
    good_offsets, good_kept = np.array([0, 2, 6]), np.array([2, 4])
    cases = [
        (items, np.array([0, 2, 7]), good_kept),  # past the items
        (items, np.array([-1, 2, 6]), good_kept),  # negative start
        (items, np.array([0, 4, 2]), good_kept),  # decreasing
        (items, good_offsets, np.array([0, 4])),  # keeps nothing
        (items, good_offsets, np.array([3, 4])),  # keeps more than the session
        (items, good_offsets, np.array([2])),  # wrong count
        (items, np.array([0]), np.array([], dtype=np.int64)),  # no sessions
        (items, np.array([], dtype=np.int64), np.array([], dtype=np.int64)),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            _graph.build(*case, 0, 0, False)
    with pytest.raises(ValueError):
        _graph.build(items.astype(np.int32), good_offsets, good_kept, 0, 0, False)  # dtype
    with pytest.raises(ValueError):
        _graph.build(np.arange(1, 13)[::2], good_offsets, good_kept, 0, 0, False)  # not contiguous
    with pytest.raises(TypeError):
        _graph.build(None, good_offsets, good_kept, 0, 0, False)
    with pytest.raises(ValueError):
        _graph.output_shape(np.array([1, 2]), np.array([1]), 0, 0)


def test_kernel_survives_random_garbage():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n_items = int(rng.integers(0, 12))
        n_sessions = int(rng.integers(0, 5))
        items = rng.integers(-3, 5, size=n_items)
        offsets = np.sort(rng.integers(-1, n_items + 2, size=n_sessions + 1))
        if rng.random() < 0.3:
            offsets = rng.integers(-2, n_items + 2, size=n_sessions + 1)
        kept = rng.integers(-1, 5, size=int(rng.integers(max(0, n_sessions - 1), n_sessions + 2)))
        pad_nodes, pad_length = (int(pad) for pad in rng.integers(-1, 6, size=2))
        try:
            out_items, adjacency, alias, mask, n_nodes = _graph.build(
                items, offsets, kept, pad_nodes, pad_length, bool(rng.random() < 0.5)
            )
        except ValueError:
            continue
        # Whatever got through was a consistent batch, and the outputs are too.
        n_cols, n_click_cols = out_items.shape[1], alias.shape[1]
        assert len(kept) == n_sessions and (kept >= 1).all()
        assert adjacency.shape == (n_sessions, n_cols, 2 * n_cols) and mask.shape == alias.shape
        assert n_cols >= n_nodes.max() and n_click_cols >= kept.max()
        assert (alias < n_nodes[:, None]).all() and mask.sum() == kept.sum()
