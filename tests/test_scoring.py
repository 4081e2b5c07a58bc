"""Offline scoring (srgnn_rt.scoring, ``srgnn-rt score``) against ``Recommender.recommend``.

Every format, with 1 and 2 worker processes, must give exactly the ids and scores
that ``recommend`` gives on the same batches; bad sessions become error rows in
place; a killed run leaves no OUTPUT; Ray Data with 2 actors gives the answers
of the single-machine path.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from srgnn_rt.cli import main  # noqa: E402
from srgnn_rt.runtime import Recommender  # noqa: E402
from srgnn_rt.scoring import score_file  # noqa: E402
from srgnn_rt.scoring import tables  # noqa: E402

BATCH = 64
K = 7


@pytest.fixture(scope="module")
def recommender(synthetic_bundle) -> Recommender:
    return Recommender.load(synthetic_bundle, device="cpu", threads=1)


@pytest.fixture(scope="module")
def sessions(recommender) -> list[list[int]]:
    """300 sessions of 1..15 raw ids, some with unknown ids, one of unknown ids only."""
    rng = np.random.default_rng(0)
    raw_ids = np.array(recommender.bundle.vocab.raw_ids)
    result = [rng.choice(raw_ids, size=int(n)).tolist() for n in rng.integers(1, 16, size=300)]
    result[3] = result[3] + [-5]
    result[10] = [-1, -2]
    return result


def _expected(recommender, sessions, k=K, exclude_seen=False, batch=BATCH):
    """``recommend`` on the batches ``score`` cuts."""
    return [result for start in range(0, len(sessions), batch)
            for result in recommender.recommend(sessions[start:start + batch], k, exclude_seen=exclude_seen)]


def _read(path) -> list[dict]:
    if str(path).endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _assert_same(rows, expected, keys=None, key_name="session"):
    assert len(rows) == len(expected)
    for index, (row, result) in enumerate(zip(rows, expected)):
        assert row.get("error") is None, row
        assert row["items"] == result.items
        np.testing.assert_array_equal(np.asarray(row["scores"], dtype=np.float32), result.scores)
        assert (row["n_unknown"], row["fallback"]) == (result.n_unknown, result.fallback)
        if keys is not None:
            assert row[key_name] == keys[index]


def _write_input(kind: str, path, sessions, keys):
    if kind == "parquet-list":
        pq.write_table(pa.table({"session": keys, "items": sessions}), path, row_group_size=50)
    elif kind == "parquet-long":
        rows = [(key, item) for key, session in zip(keys, sessions) for item in session]
        pq.write_table(pa.table({"session": [r[0] for r in rows], "item": [r[1] for r in rows]}), path,
                       row_group_size=97)
    elif kind == "csv":
        with open(path, "w", encoding="utf-8") as out:
            out.write("time,session,item\n")
            out.writelines(f"0,{key},{item}\n" for key, session in zip(keys, sessions) for item in session)
    elif kind == "jsonl-arrays":
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(session) + "\n" + ("\n" if index % 50 == 0 else "")
                           for index, session in enumerate(sessions))
    else:  # jsonl-objects
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps({"id": key, "session": session}) + "\n" for key, session in zip(keys, sessions))


_SUFFIX = {"parquet-list": ".parquet", "parquet-long": ".parquet", "csv": ".csv", "jsonl-arrays": ".jsonl",
           "jsonl-objects": ".jsonl"}


@pytest.mark.parametrize("kind,output,workers", [
    ("parquet-list", ".parquet", 1), ("parquet-list", ".jsonl", 2), ("parquet-long", ".parquet", 1),
    ("csv", ".jsonl", 1), ("csv", ".parquet", 2), ("jsonl-arrays", ".jsonl", 1), ("jsonl-objects", ".parquet", 1),
])
def test_every_format_gives_the_answers_of_recommend(recommender, synthetic_bundle, sessions, tmp_path, monkeypatch,
                                                      kind, output, workers):
    long_format = kind in ("parquet-long", "csv")
    if long_format:  # a session of no click has no row; groups straddle record batches
        sessions = [session for session in sessions if session]
        monkeypatch.setattr(tables, "_LONG_CHUNK_ROWS", 97)
    keys = [f"s{index}" if kind == "csv" else 1000 + index for index in range(len(sessions))]
    source, target = tmp_path / f"in{_SUFFIX[kind]}", tmp_path / f"out{output}"
    _write_input(kind, source, sessions, keys)
    key_name = {"jsonl-arrays": None, "jsonl-objects": "id"}.get(kind, "session")
    summary = score_file(synthetic_bundle, source, target, k=K, batch_size=BATCH, workers=workers, device="cpu",
                         session_column="id" if kind == "jsonl-objects" else None, progress=False)
    assert (summary.sessions, summary.errors) == (len(sessions), 0)
    rows = _read(target)
    _assert_same(rows, _expected(recommender, sessions), None if key_name is None else keys, key_name)
    if key_name is None:
        assert set(rows[0]) == {"items", "scores", "n_unknown", "fallback"} | ({"error"} if output == ".parquet"
                                                                                  else set())


def test_exclude_seen_and_one_worker_equal_two(recommender, synthetic_bundle, sessions, tmp_path):
    source = tmp_path / "in.parquet"
    _write_input("parquet-list", source, sessions, list(range(len(sessions))))
    outputs = []
    for workers in (1, 2):
        target = tmp_path / f"out{workers}.parquet"
        score_file(synthetic_bundle, source, target, k=K, exclude_seen=True, batch_size=BATCH, workers=workers,
                   device="cpu", threads=1, progress=False)
        outputs.append(pq.read_table(target))
    assert outputs[0].equals(outputs[1])
    _assert_same(outputs[0].to_pylist(), _expected(recommender, sessions, exclude_seen=True))


def test_index_mode_in_one_and_two_workers_answers_as_exact(recommender, retrieval_only_indexed_bundle, sessions,
                                                            tmp_path):
    """A retrieval-only bundle loads only with retrieval="index" (here and in each worker); its index
    searches every item, so the rows are those of exact mode up to float rounding and near-ties."""
    source = tmp_path / "in.parquet"
    _write_input("parquet-list", source, sessions, list(range(len(sessions))))
    expected = _expected(recommender, sessions)
    outputs = []
    for workers in (1, 2):
        target = tmp_path / f"out{workers}.parquet"
        summary = score_file(retrieval_only_indexed_bundle, source, target, k=K, batch_size=BATCH, workers=workers,
                             device="cpu", threads=1, retrieval="index", progress=False)
        assert (summary.sessions, summary.errors) == (len(sessions), 0)
        outputs.append(pq.read_table(target))
    assert outputs[0].equals(outputs[1])
    for row, result in zip(outputs[0].to_pylist(), expected, strict=True):
        assert (row["error"], row["n_unknown"], row["fallback"]) == (None, result.n_unknown, result.fallback)
        np.testing.assert_allclose(row["scores"], result.scores, rtol=1e-5, atol=1e-4)
        tie = np.isclose(result.scores[:, None], result.scores[None, :], rtol=0, atol=1e-4).sum(axis=1) > 1
        assert [x for x, t in zip(row["items"], tie) if not t] == [x for x, t in zip(result.items, tie) if not t]
    with pytest.raises(ValueError, match="retrieval-only"):
        score_file(retrieval_only_indexed_bundle, source, tmp_path / "exact.parquet", device="cpu", progress=False)
    assert main(["score", str(retrieval_only_indexed_bundle), str(source), str(tmp_path / "cli.parquet"),
                 "-k", str(K), "--batch-size", str(BATCH), "--device", "cpu", "--quiet", "--retrieval", "index"]) == 0
    assert pq.read_table(tmp_path / "cli.parquet").equals(outputs[0])


def test_ray_data_actor_answers_in_the_retrieval_mode_asked(retrieval_only_indexed_bundle, sessions, tmp_path):
    """The actor class Ray Data runs, called here without Ray, gives the rows of the local scorer."""
    from srgnn_rt.scoring.ray_data import _RecommendBatches

    table = pa.table({"session": list(range(len(sessions))), "items": sessions})
    actor = _RecommendBatches(str(retrieval_only_indexed_bundle), K, False, "session", "items", "cpu", 1, "index")
    answers = actor(table).to_pylist()
    pq.write_table(table, tmp_path / "in.parquet")
    score_file(retrieval_only_indexed_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", k=K,
               batch_size=len(sessions), device="cpu", retrieval="index", progress=False)
    for row, expected in zip(answers, pq.read_table(tmp_path / "out.parquet").to_pylist(), strict=True):
        assert (row["session"], row["length"], row["items"]) == (expected["session"], K, expected["items"])
        np.testing.assert_array_equal(np.asarray(row["scores"], np.float32), np.asarray(expected["scores"], np.float32))


def test_bad_sessions_get_error_rows_in_place(recommender, synthetic_bundle, sessions, tmp_path):
    """Malformed JSON, a str id for an int model, a float id: error rows where they were; the other
    sessions of their batch get recommend's answers for the batch without them."""
    bad = {5: None, 70: sessions[70][:1] + ["x"], 71: [1.5]}
    mixed = [bad.get(index, session) for index, session in enumerate(sessions)]
    source = tmp_path / "in.jsonl"
    with open(source, "w", encoding="utf-8") as out:
        for index, session in enumerate(mixed):
            out.write("{oops\n" if session is None else json.dumps(session) + "\n")
    target = tmp_path / "out.jsonl"
    summary = score_file(synthetic_bundle, source, target, k=K, batch_size=BATCH, device="cpu", progress=False)
    assert (summary.sessions, summary.errors) == (len(sessions), 3)
    rows = _read(target)
    assert rows[5]["line"] == 6 and rows[5]["error"].startswith("line 6: not JSON")
    assert rows[70] == {"line": 71, "error": "line 71: session has 'x' (str) at position 1, but this model's "
                                             "raw item ids are all int"}
    assert rows[71]["line"] == 72 and "float" in rows[71]["error"]
    good = [index for index in range(len(sessions)) if index not in bad]
    expected = []
    for start in range(0, len(sessions), BATCH):
        batch = [index for index in good if start <= index < start + BATCH]
        expected += recommender.recommend([sessions[index] for index in batch], K)
    _assert_same([rows[index] for index in good], expected)
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"items": [None if index == 5 else session for index, session in enumerate(sessions)]}),
                   nulls)
    score_file(synthetic_bundle, nulls, tmp_path / "nulls-out.parquet", k=K, batch_size=BATCH, device="cpu",
               progress=False)
    rows = _read(tmp_path / "nulls-out.parquet")
    assert rows[5] == {"items": None, "scores": None, "n_unknown": 0, "fallback": False,
                       "error": "row 6: 'items' is null"}
    assert rows[4]["items"] == _read(target)[4]["items"]
    for name in ("nulls.parquet", "nulls-out.parquet"):
        os.unlink(tmp_path / name)
    with pytest.raises(ValueError, match=r"line 6: not JSON.*--fail-fast"):
        score_file(synthetic_bundle, source, tmp_path / "failed.jsonl", k=K, device="cpu", progress=False,
                   fail_fast=True)
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]  # no failed.jsonl, no staging file


def test_refusals_name_the_problem(synthetic_bundle, tmp_path):
    strings = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"items": [["a", "b"]]}), strings)
    with pytest.raises(ValueError, match=r"column 'items' holds string, but this model's raw item ids are integers"):
        score_file(synthetic_bundle, strings, tmp_path / "out.parquet", device="cpu", progress=False)
    long = tmp_path / "long.parquet"
    pq.write_table(pa.table({"user": [1, 1], "item": [3, 4]}), long)
    with pytest.raises(ValueError, match="is not a list, so rows are clicks grouped by a session column"):
        score_file(synthetic_bundle, long, tmp_path / "out.parquet", device="cpu", progress=False)
    with pytest.raises(ValueError, match="unknown extension '.txt'"):
        score_file(synthetic_bundle, long, tmp_path / "out.txt", device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"k must be in 1\.\."):
        score_file(synthetic_bundle, long, tmp_path / "out.parquet", k=10**6, device="cpu", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["long.parquet", "strings.parquet"]


def test_missing_pyarrow_names_the_extra(synthetic_bundle, tmp_path, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text("[1, 2]\n")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"pip install 'srgnn-rt\[arrow\]'"):
        score_file(synthetic_bundle, source, tmp_path / "out.parquet", device="cpu", progress=False)


def test_cli_score_writes_and_reports(synthetic_bundle, sessions, recommender, tmp_path, capsys):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    _write_input("jsonl-arrays", source, sessions[:20], None)
    assert main(["score", str(synthetic_bundle), str(source), str(target), "-k", "3", "--quiet",
                 "--device", "cpu"]) == 0
    assert "scored 20 sessions (0 errors)" in capsys.readouterr().out
    _assert_same(_read(target), _expected(recommender, sessions[:20], k=3, batch=512))
    assert main(["score", str(synthetic_bundle), str(source), str(tmp_path / "out.csv"), "--quiet"]) == 2
    assert "unknown extension '.csv'" in capsys.readouterr().err


@given(
    keys=st.lists(st.sampled_from([1, 2, 3, None]), max_size=40),
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    batch=st.integers(1, 7),
)
@settings(max_examples=60, deadline=None)
def test_grouping_and_batching_match_a_reference(keys, cuts, batch):
    """Long-format rows cut into record batches anywhere, then rebatched: the sessions of
    ``itertools.groupby`` in order, with the line each starts on, in batches of ``batch``."""
    items = list(range(len(keys)))
    chunks, start = [], 0
    for cut in itertools.cycle(cuts):
        if start >= len(keys):
            break
        chunks.append((keys[start:start + cut], items[start:start + cut]))
        start += cut
    batches = list(tables.rebatch(tables._group_clicks(iter(chunks), "line", first_line=2), batch))
    expected, line = [], 2
    for key, group in itertools.groupby(zip(keys, items), key=lambda pair: pair[0]):
        group = [item for _, item in group]
        expected.append((key, group, line))
        line += len(group)
    got = [(batch_.keys[i], batch_.sessions[i], batch_.lines[i]) for batch_ in batches for i in range(len(batch_))]
    assert got == expected
    assert all(len(b) == batch for b in batches[:-1]) and all(0 < len(b) <= batch for b in batches)


def test_fixed_width_columns_pad_short_and_error_rows():
    """Ray's fixed-width [B, k] columns: real entries first, then null ids and NaN scores; ``length`` counts."""
    answers = tables.Answers(items=[[5, 6], None, [7, 8, 9]],
                             scores=[np.float32([2, 1]), None, np.float32([3, 2, 1])],
                             n_unknown=[0, 0, 1], fallback=[False, False, True], errors=[None, "row 2: bad", None])
    columns = tables.answer_columns(answers, pa.int64(), width=3)
    assert columns["items"].type == pa.list_(pa.int64(), 3)
    assert columns["items"].to_pylist() == [[5, 6, None], [None] * 3, [7, 8, 9]]
    scores = np.array(columns["scores"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(scores, np.float32([[2, 1, np.nan], [np.nan] * 3, [3, 2, 1]]))
    assert columns["length"].to_pylist() == [2, 0, 3]
    assert columns["error"].to_pylist() == [None, "row 2: bad", None]
    ragged = tables.answer_columns(answers, pa.int64())
    assert ragged["items"].to_pylist() == [[5, 6], None, [7, 8, 9]]
    assert ragged["n_unknown"].to_pylist() == [0, 0, 1] and ragged["fallback"].to_pylist() == [False, False, True]


def test_killed_run_leaves_no_output(synthetic_bundle, sessions, tmp_path):
    """SIGKILL in the middle of a 2-worker run: no OUTPUT, and the workers exit."""
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input("jsonl-arrays", source, sessions * 60, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "srgnn_rt.cli", "score", str(synthetic_bundle), str(source), str(target),
         "--workers", "2", "--threads", "1", "--batch-size", "16", "--device", "cpu", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(name.startswith(".out.jsonl.") and ".tmp" in name and (tmp_path / name).stat().st_size > 0
                      for name in os.listdir(tmp_path)):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
        workers = _children(process.pid)
        assert len(workers) >= 2
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert not target.exists()
    deadline = time.monotonic() + 15
    while [pid for pid in workers if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)], "workers still run after their parent was killed"


def _children(pid: int) -> list[int]:
    """Process ids of the children of ``pid`` (Linux /proc)."""
    return [int(child) for task in os.listdir(f"/proc/{pid}/task")
            for child in open(f"/proc/{pid}/task/{task}/children").read().split()]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- Ray Data ---------------------------------------------------------------------------------------


def test_ray_actor_pool_gives_the_single_machine_answers(local_ray, synthetic_bundle, sessions, tmp_path):
    from srgnn_rt.scoring import score_ray

    keys = list(range(len(sessions)))
    source = tmp_path / "in.parquet"
    _write_input("parquet-list", source, sessions, keys)
    score_file(synthetic_bundle, source, tmp_path / "local.parquet", k=K, batch_size=BATCH, device="cpu",
               progress=False)
    local = {row["session"]: row for row in pq.read_table(tmp_path / "local.parquet").to_pylist()}
    summary = score_ray(synthetic_bundle, source, tmp_path / "ray", k=K, batch_size=BATCH, actors=2, device="cpu")
    assert (summary.sessions, summary.errors) == (len(sessions), 0)
    table = pq.read_table(tmp_path / "ray")
    assert table.schema.field("items").type == pa.list_(pa.int64(), K)
    assert table.schema.field("scores").type == pa.list_(pa.float32(), K)
    rows = table.to_pylist()
    assert sorted(row["session"] for row in rows) == keys
    for row in rows:
        expected = local[row["session"]]
        assert row["length"] == K and row["error"] is None
        assert row["items"] == expected["items"]
        np.testing.assert_allclose(row["scores"], expected["scores"], rtol=0, atol=1e-5)
        assert (row["n_unknown"], row["fallback"]) == (expected["n_unknown"], expected["fallback"])
