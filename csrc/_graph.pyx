# cython: language_level=3
"""Compiled kernels behind ``srgnn_rt.graph.build_graphs`` (private module).

``sequences_to_csr`` turns a list of Python sessions into CSR arrays, checking
every element's type. ``build`` makes the padded graphs of a CSR batch:
``items: int64[M]`` the clicks of all sessions end to end, ``offsets:
int64[B+1]`` (session b is ``items[offsets[b]:offsets[b+1]]``) and ``kept:
int64[B]`` how many clicks to keep at the end of each session. It runs two
passes over the sessions:

1. sort and de-duplicate each session's kept clicks: its nodes, ascending by
   item id, in a node table; this gives the node counts, hence the shape;
2. allocate the padded outputs and write every element of each session's rows:
   node ids, ``[A_in | A_out]``, alias and mask.

Both passes release the GIL and spread sessions over OpenMP threads when the
extension is compiled with OpenMP (serial and identical otherwise). Sessions
are independent, so results never depend on the thread count or schedule.

``build`` checks its own preconditions (offsets inside ``items`` and
non-decreasing, kept counts within the session lengths) on a private copy of
the batch layout and raises ValueError instead of reading or writing out of
bounds. It accepts any int64 ids: rejecting ids <= 0 or above the catalog is
srgnn_rt.graph's job.
"""

from cpython.long cimport PyLong_CheckExact
from cpython.sequence cimport PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import operator

import numpy as np

cdef extern from *:
    """
    #ifndef SRGNN_RT_OPENMP
    #define SRGNN_RT_OPENMP 0
    #endif
    """
    int SRGNN_RT_OPENMP

OPENMP = bool(SRGNN_RT_OPENMP)
"""True when this extension was compiled with OpenMP (parallel over sessions)."""

# Below these sizes (kept clicks for pass 1, B * N * N adjacency cells for
# pass 2: 2**21 cells is a 16 MB adjacency, a few hundred microseconds of
# serial work) a batch runs on the calling thread only. A parallel region costs
# microseconds to enter, and when other threads or processes hold the cores it
# waits for its own threads to be scheduled: milliseconds.
cdef Py_ssize_t _PARALLEL_MIN_CLICKS = 1 << 16
cdef Py_ssize_t _PARALLEL_MIN_CELLS = 1 << 21
PARALLEL_MIN_CLICKS = _PARALLEL_MIN_CLICKS
PARALLEL_MIN_CELLS = _PARALLEL_MIN_CELLS
# Sessions up to this length are sorted by insertion sort, longer ones by heapsort.
cdef Py_ssize_t _INSERTION_SORT_MAX = 32


# ---------------------------------------------------------------------------
# validation helper

def min_max(const int64_t[::1] values not None):
    """``(min, max)`` of a non-empty ``int64[n]`` array as Python ints, in one pass.

    A numpy reduction costs about a microsecond of call overhead; validating a
    served batch needs three of them.
    """
    cdef Py_ssize_t i
    cdef int64_t low, high
    if values.shape[0] == 0:
        raise ValueError("min_max of an empty array")
    low = high = values[0]
    for i in range(1, values.shape[0]):
        low = min(low, values[i])
        high = max(high, values[i])
    return low, high


# ---------------------------------------------------------------------------
# list of Python sequences -> CSR

def sequences_to_csr(sessions):
    """CSR arrays ``(items: int64[M], offsets: int64[B+1])`` of a list or tuple of sessions.

    Each session is a list or tuple of Python ints (numpy integer scalars are
    accepted too) or a 1-D numpy integer array. Raises TypeError naming the
    session, the position and the value for anything else (bool, float, str,
    ...) and ValueError for ids outside int64. Ids are not range-checked here.
    """
    if not isinstance(sessions, (list, tuple)):
        raise TypeError(f"sessions must be a list or tuple, got {type(sessions).__name__}")
    cdef list batch = list(sessions)  # snapshot: the caller may mutate its list meanwhile
    cdef Py_ssize_t n_sessions = len(batch), s, length
    offsets = np.empty(n_sessions + 1, dtype=np.int64)
    cdef int64_t[::1] offsets_view = offsets
    offsets_view[0] = 0
    for s in range(n_sessions):
        session = batch[s]
        if isinstance(session, (list, tuple)):
            length = PySequence_Fast_GET_SIZE(session)
        elif isinstance(session, np.ndarray):
            batch[s] = _session_array(session, s)
            length = len(batch[s])
        else:
            raise TypeError(
                f"session {s} is a {type(session).__name__} ({session!r:.80}); "
                f"expected a list, tuple or 1-D integer numpy array of item ids"
            )
        offsets_view[s + 1] = offsets_view[s] + length

    items = np.empty(offsets_view[n_sessions], dtype=np.int64)
    cdef int64_t[::1] items_view = items
    cdef const int64_t[::1] array_view
    for s in range(n_sessions):
        length = offsets_view[s + 1] - offsets_view[s]
        if length == 0:
            continue
        session = batch[s]
        if isinstance(session, (list, tuple)):
            _copy_python_ints(session, s, length, &items_view[offsets_view[s]])
        else:  # the private int64 copy made by _session_array: no Python code can reach it
            array_view = session
            memcpy(&items_view[offsets_view[s]], &array_view[0], length * sizeof(int64_t))
    return items, offsets


def _session_array(array, Py_ssize_t session):
    """A private int64[L] copy of a numpy session (TypeError/ValueError naming it).

    Always a copy that only the caller holds: an element's ``__index__`` in a
    later list session may resize or retype the caller's array, and the copy
    loop must read exactly the length recorded here.
    """
    array = np.array(array, copy=True)  # a base-class ndarray: its checks below hold until we drop it
    if array.ndim != 1:
        raise ValueError(f"session {session} is a {array.ndim}-D array of shape {array.shape}; sessions are 1-D")
    if array.dtype.kind not in "iu":
        raise TypeError(f"session {session} has dtype {array.dtype}; item ids must be integers")
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        position = int(np.argmax(array > np.iinfo(np.int64).max))
        raise ValueError(
            f"session {session} has item id {int(array[position])} at position {position}, "
            f"which does not fit in int64"
        )
    return array.astype(np.int64, copy=False)


cdef int _copy_python_ints(object session, Py_ssize_t s, Py_ssize_t length, int64_t* out) except -1:
    """Copy the first ``length`` ints of a list/tuple into ``out``, type-checking each."""
    cdef Py_ssize_t j = 0
    cdef object element = None
    # Only Python code can change the list's size (another thread, or a
    # non-int element's __index__); check again whenever some may have run.
    if PySequence_Fast_GET_SIZE(session) < length:
        raise RuntimeError(f"session {s} changed length while it was being read")
    try:
        for j in range(length):
            element = <object>PySequence_Fast_GET_ITEM(session, j)  # owned reference
            if PyLong_CheckExact(element):
                out[j] = element
            else:
                out[j] = _index_value(element, s, j)
                if PySequence_Fast_GET_SIZE(session) < length:
                    raise RuntimeError(f"session {s} changed length while it was being read")
    except OverflowError:
        raise ValueError(f"session {s} has item id {element} at position {j}, which does not fit in int64") from None
    return 0


def _index_value(value, Py_ssize_t session, Py_ssize_t position):
    """``value`` as a Python int when it is an integer (not bool), else TypeError naming it."""
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(
        f"session {session} has {value!r:.80} of type {type(value).__name__} at position {position}; "
        f"item ids must be integers"
    )


# ---------------------------------------------------------------------------
# per-session work (no GIL, no allocation)

cdef inline void _insertion_sort(int64_t* values, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef int64_t value
    for i in range(1, n):
        value = values[i]
        j = i - 1
        while j >= 0 and values[j] > value:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = value


cdef inline void _sift_down(int64_t* heap, Py_ssize_t root, Py_ssize_t end) noexcept nogil:
    """Restore the max-heap property below ``root`` within ``heap[:end]``."""
    cdef Py_ssize_t child
    cdef int64_t value = heap[root]
    while True:
        child = 2 * root + 1
        if child >= end:
            break
        if child + 1 < end and heap[child + 1] > heap[child]:
            child += 1
        if heap[child] <= value:
            break
        heap[root] = heap[child]
        root = child
    heap[root] = value


cdef void _heap_sort(int64_t* values, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t start, end
    cdef int64_t largest
    start = n // 2
    while start > 0:
        start -= 1
        _sift_down(values, start, n)
    end = n
    while end > 1:
        end -= 1
        largest = values[0]
        values[0] = values[end]
        values[end] = largest
        _sift_down(values, 0, end)


cdef Py_ssize_t _sorted_distinct(const int64_t* clicks, Py_ssize_t n, int64_t* nodes) noexcept nogil:
    """Write the distinct values of ``clicks[:n]`` ascending into ``nodes``; return their count."""
    cdef Py_ssize_t i, count
    if n == 0:
        return 0
    memcpy(nodes, clicks, n * sizeof(int64_t))
    if n <= _INSERTION_SORT_MAX:
        _insertion_sort(nodes, n)
    else:
        _heap_sort(nodes, n)
    count = 1
    for i in range(1, n):
        if nodes[i] != nodes[count - 1]:
            nodes[count] = nodes[i]
            count += 1
    return count


cdef inline Py_ssize_t _node_index(const int64_t* nodes, Py_ssize_t n, int64_t item) noexcept nogil:
    """Index of ``item`` in the ascending ``nodes[:n]``, or -1 when absent."""
    cdef Py_ssize_t low = 0, high = n, middle
    while low < high:
        middle = (low + high) >> 1
        if nodes[middle] < item:
            low = middle + 1
        else:
            high = middle
    if low < n and nodes[low] == item:
        return low
    return -1


cdef struct _Batch:
    # input: the checked layout of a CSR batch (see _layout)
    const int64_t* items
    const int64_t* click_start  # [B] index in items of each session's first kept click
    const int64_t* n_clicks     # [B] kept clicks
    const int64_t* table_start  # [B] where each session's nodes start in table
    # pass 1 output
    int64_t* table
    int64_t* n_nodes            # [B]
    # pass 2 scratch: each session's in- and out-weights at 2 * table_start[b]
    float* weights
    # pass 2 output (C-contiguous)
    Py_ssize_t n_node_cols      # N
    Py_ssize_t n_click_cols     # T
    bint count_edges
    int64_t* out_items          # [B, N]
    float* adjacency            # [B, N, 2N]
    int64_t* alias              # [B, T]
    float* mask                 # [B, T]


cdef void _session_nodes(const _Batch* batch, Py_ssize_t s) noexcept nogil:
    """Pass 1 for session s: its nodes into the table, their count into n_nodes."""
    batch.n_nodes[s] = _sorted_distinct(
        batch.items + batch.click_start[s], batch.n_clicks[s], batch.table + batch.table_start[s]
    )


cdef int _session_graph(const _Batch* batch, Py_ssize_t s) noexcept nogil:
    """Pass 2 for session s: write its output rows; 1 if a click is missing from its nodes, else 0.

    Edge weights are accumulated in the adjacency block itself and each node's
    total in- and out-weight alongside (exact in float32 up to 2**24 repeats).
    Then each distinct edge is divided once: a second walk over the clicks
    stores w / total negated, which marks the edge as done when it repeats,
    and a third walk restores the sign.
    """
    cdef Py_ssize_t n_cols = batch.n_node_cols, width = 2 * n_cols, t, node, previous = -1
    cdef Py_ssize_t n_nodes = batch.n_nodes[s], n_clicks = batch.n_clicks[s]
    cdef const int64_t* clicks = batch.items + batch.click_start[s]
    cdef const int64_t* nodes = batch.table + batch.table_start[s]
    cdef int64_t* items_row = batch.out_items + s * n_cols
    cdef float* adjacency = batch.adjacency + s * n_cols * width
    cdef int64_t* alias_row = batch.alias + s * batch.n_click_cols
    cdef float* mask_row = batch.mask + s * batch.n_click_cols
    cdef float* in_weight = batch.weights + 2 * batch.table_start[s]
    cdef float* out_weight = in_weight + n_nodes
    cdef float* sent
    cdef float* received
    memset(in_weight, 0, 2 * n_nodes * sizeof(float))
    memcpy(items_row, nodes, n_nodes * sizeof(int64_t))
    memset(items_row + n_nodes, 0, (n_cols - n_nodes) * sizeof(int64_t))
    memset(adjacency, 0, n_cols * width * sizeof(float))
    for t in range(n_clicks):
        node = _node_index(nodes, n_nodes, clicks[t])
        if node < 0:
            return 1
        alias_row[t] = node
        mask_row[t] = 1.0
        if previous >= 0:
            # edge previous -> node: A_out row = sender, A_in row = receiver
            sent = adjacency + previous * width + n_cols + node
            if batch.count_edges or sent[0] == 0.0:
                sent[0] += 1.0
                adjacency[node * width + previous] += 1.0
                out_weight[previous] += 1.0
                in_weight[node] += 1.0
        previous = node
    for t in range(n_clicks, batch.n_click_cols):
        alias_row[t] = 0
        mask_row[t] = 0.0
    for t in range(1, n_clicks):
        previous, node = alias_row[t - 1], alias_row[t]
        sent = adjacency + previous * width + n_cols + node
        if sent[0] > 0.0:
            received = adjacency + node * width + previous
            sent[0] = -(sent[0] / out_weight[previous])
            received[0] = -(received[0] / in_weight[node])
    for t in range(1, n_clicks):
        previous, node = alias_row[t - 1], alias_row[t]
        sent = adjacency + previous * width + n_cols + node
        if sent[0] < 0.0:
            received = adjacency + node * width + previous
            sent[0] = -sent[0]
            received[0] = -received[0]
    return 0


# ---------------------------------------------------------------------------
# batch entry points

cdef int64_t _layout(
    const int64_t[::1] items, const int64_t[::1] offsets, const int64_t[::1] kept, int64_t* layout
) except -1:
    """Check the batch and copy its layout; return the number of kept clicks.

    ``layout`` has room for 3 * B values: the index in ``items`` of each
    session's first kept click, the kept counts, and where each session's nodes
    start in the node table. Every offset and count is read once, then checked,
    then stored, so the nogil passes depend only on this private copy.
    """
    cdef Py_ssize_t n_sessions = offsets.shape[0] - 1, s
    cdef int64_t start, end, count, total = 0
    if kept.shape[0] != n_sessions:
        raise ValueError(f"kept has {kept.shape[0]} entries for {n_sessions} sessions")
    start = offsets[0]
    if start < 0:
        raise ValueError(f"offsets[0] = {start} is negative")
    for s in range(n_sessions):
        end = offsets[s + 1]
        count = kept[s]
        if end < start or end > items.shape[0]:
            raise ValueError(f"offsets[{s + 1}] = {end} is outside {start}..{items.shape[0]}")
        if count < 1 or count > end - start:
            raise ValueError(f"session {s} keeps {count} clicks, outside 1..{end - start} (its length)")
        layout[s] = end - count
        layout[n_sessions + s] = count
        layout[2 * n_sessions + s] = total
        total += count
        start = end
    return total


def output_shape(
    const int64_t[::1] n_nodes not None, const int64_t[::1] kept not None, Py_ssize_t pad_nodes, Py_ssize_t pad_length
):
    """Padded shape ``(N, T)`` of sessions with ``n_nodes: int64[B]`` nodes and ``kept: int64[B]`` clicks.

    N = pad_nodes and T = pad_length when they are >= 1 (ValueError naming the
    first session that does not fit), else the largest count.
    """
    cdef Py_ssize_t n_node_cols, n_click_cols
    if n_nodes.shape[0] != kept.shape[0] or n_nodes.shape[0] < 1:
        raise ValueError(f"n_nodes and kept need B >= 1 entries each, got {n_nodes.shape[0]} and {kept.shape[0]}")
    _output_shape(&n_nodes[0], &kept[0], n_nodes.shape[0], pad_nodes, pad_length, &n_node_cols, &n_click_cols)
    return n_node_cols, n_click_cols


cdef int _output_shape(
    const int64_t* n_nodes, const int64_t* kept, Py_ssize_t n_sessions, Py_ssize_t pad_nodes,
    Py_ssize_t pad_length, Py_ssize_t* n_node_cols, Py_ssize_t* n_click_cols,
) except -1:
    cdef Py_ssize_t s
    cdef int64_t most_nodes = 0, longest = 0
    for s in range(n_sessions):
        if pad_nodes >= 1 and n_nodes[s] > pad_nodes:
            raise ValueError(f"session {s} has {n_nodes[s]} distinct items, more than pad_nodes={pad_nodes}")
        if pad_length >= 1 and kept[s] > pad_length:
            raise ValueError(
                f"session {s} has {kept[s]} clicks, more than pad_length={pad_length} "
                f"(max_length keeps only the last clicks)"
            )
        most_nodes = max(most_nodes, n_nodes[s])
        longest = max(longest, kept[s])
    n_node_cols[0] = pad_nodes if pad_nodes >= 1 else most_nodes
    n_click_cols[0] = pad_length if pad_length >= 1 else longest
    return 0


def build(
    const int64_t[::1] items not None, const int64_t[::1] offsets not None, const int64_t[::1] kept not None,
    Py_ssize_t pad_nodes, Py_ssize_t pad_length, bint count_edges,
):
    """Graphs of the last ``kept[b]`` clicks of each session b of a CSR batch.

    Returns ``(items int64[B, N], adjacency float32[B, N, 2N], alias int64[B, T],
    mask float32[B, T], n_nodes int64[B])``; N, T as ``output_shape`` gives
    them (pads <= 0: not fixed). ``count_edges``: weigh an edge by its number
    of occurrences instead of once.
    """
    cdef Py_ssize_t n_sessions = offsets.shape[0] - 1
    if n_sessions < 1:
        raise ValueError(f"offsets must hold B + 1 >= 2 entries, got {offsets.shape[0]}")
    cdef int64_t* layout = <int64_t*>malloc(3 * n_sessions * sizeof(int64_t))
    cdef int64_t* table = NULL
    cdef float* weights = NULL
    cdef int64_t total
    if layout == NULL:
        raise MemoryError()
    try:
        total = _layout(items, offsets, kept, layout)
        table = <int64_t*>malloc(total * sizeof(int64_t))
        weights = <float*>malloc(2 * total * sizeof(float))
        if table == NULL or weights == NULL:
            raise MemoryError()
        return _build(items, layout, table, weights, n_sessions, total, pad_nodes, pad_length, count_edges)
    finally:
        free(weights)
        free(table)
        free(layout)


cdef tuple _build(
    const int64_t[::1] items, const int64_t* layout, int64_t* table, float* weights, Py_ssize_t n_sessions,
    int64_t total, Py_ssize_t pad_nodes, Py_ssize_t pad_length, bint count_edges,
):
    """Both passes over a checked batch; ``layout`` as ``_layout`` writes it.

    ``table`` has room for ``total`` ids, ``weights`` for ``2 * total`` floats.

    Small batches run as plain loops: entering an OpenMP region, even one
    with a single thread, costs microseconds.
    """
    cdef _Batch batch
    cdef Py_ssize_t s
    cdef int failures = 0
    batch.items = &items[0]
    batch.click_start = layout
    batch.n_clicks = layout + n_sessions
    batch.table_start = layout + 2 * n_sessions
    batch.table = table
    batch.weights = weights
    batch.count_edges = count_edges

    n_nodes = np.empty(n_sessions, dtype=np.int64)
    cdef int64_t[::1] n_nodes_view = n_nodes
    batch.n_nodes = &n_nodes_view[0]
    with nogil:
        if SRGNN_RT_OPENMP and total >= _PARALLEL_MIN_CLICKS:
            for s in prange(n_sessions, schedule="guided"):
                _session_nodes(&batch, s)
        else:
            for s in range(n_sessions):
                _session_nodes(&batch, s)

    _output_shape(batch.n_nodes, batch.n_clicks, n_sessions, pad_nodes, pad_length,
                  &batch.n_node_cols, &batch.n_click_cols)
    out_items = np.empty((n_sessions, batch.n_node_cols), dtype=np.int64)
    adjacency = np.empty((n_sessions, batch.n_node_cols, 2 * batch.n_node_cols), dtype=np.float32)
    alias = np.empty((n_sessions, batch.n_click_cols), dtype=np.int64)
    mask = np.empty((n_sessions, batch.n_click_cols), dtype=np.float32)
    cdef int64_t[:, ::1] items_view = out_items, alias_view = alias
    cdef float[:, :, ::1] adjacency_view = adjacency
    cdef float[:, ::1] mask_view = mask
    batch.out_items = &items_view[0, 0]
    batch.adjacency = &adjacency_view[0, 0, 0]
    batch.alias = &alias_view[0, 0]
    batch.mask = &mask_view[0, 0]
    with nogil:
        if SRGNN_RT_OPENMP and n_sessions * batch.n_node_cols * batch.n_node_cols >= _PARALLEL_MIN_CELLS:
            for s in prange(n_sessions, schedule="guided"):
                failures += _session_graph(&batch, s)
        else:
            for s in range(n_sessions):
                failures += _session_graph(&batch, s)
    if failures:  # only when another thread rewrote ``items`` between the passes
        raise RuntimeError(f"items changed while the graphs were built: {failures} sessions lost a node")
    return out_items, adjacency, alias, mask, n_nodes
