"""The srgnn-rt command line, end to end on small data; ``recommend`` against hostile input."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import subprocess
import sys
import threading
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgnn_rt.cli import main
from srgnn_rt.runtime import Recommender


def test_synth_prepare_train_evaluate_export_recommend(tmp_path, capsys, monkeypatch):
    clicks, data, run, bundle = (tmp_path / name for name in ("clicks.csv", "data", "run", "bundle"))
    assert main(["synth", str(clicks), "--sessions", "1500", "--items", "150", "--days", "20"]) == 0
    assert main(["prepare", "--format", "csv", str(clicks), str(data)]) == 0
    prepared = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert prepared["n_items"] > 0 and prepared["train_prefixes"] > prepared["test_prefixes"] > 0

    assert main(["train", str(data), "--out", str(run), "--epochs", "1", "--hidden-size", "8", "--quiet",
                 "--device", "cpu"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["best"]["epoch"] == 1 and trained["selection"]["split"] == "validation"

    assert main(["evaluate", str(run), str(data), "--json", "--ks", "5", "20", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["model"]) == {"HR@5", "MRR@5", "NDCG@5", "HR@20", "MRR@20", "NDCG@20"}
    assert main(["evaluate", str(run), str(data), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "SR-GNN" in table and "most popular" in table

    assert main(["export", str(run), str(bundle)]) == 0
    capsys.readouterr()
    recommender = Recommender.load(bundle, device="cpu")
    known = recommender.bundle.vocab.raw_ids[:3]
    lines = f"{known[0]},{known[1]}\n\n{json.dumps(known)}\n{known[2]}, 999999999\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    assert main(["recommend", str(bundle), "-k", "4", "--device", "cpu"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 4
    assert results[1] == {"line": 2, "error": "blank line: expected a session (a JSON array or comma-separated "
                                              "item ids)"}
    assert all(len(r["items"]) == 4 for r in results[:1] + results[2:])
    assert results[0]["items"] == recommender.recommend_one(known[:2], k=4).items
    assert results[3]["n_unknown"] == 1


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srgnn-rt train: error:") and "does not exist" in err
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "file").write_text("x")
    (tmp_path / "log.csv").write_text("session,item,time\n1,2,3\n")
    assert main(["prepare", "--format", "csv", str(tmp_path / "log.csv"), str(tmp_path / "occupied")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_quickstart_refuses_a_foreign_directory(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["quickstart", "--workdir", str(tmp_path)]) == 2
    assert "not made by quickstart" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    assert main(["quickstart", "--workdir", str(tmp_path / "qs"), "--sessions", "4000", "--items", "400",
                 "--epochs", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[5/5] serving on CPUExecutionProvider" in out and "latency (median)" in out
    assert (tmp_path / "qs" / "bundle" / "manifest.json").is_file()


# --- recommend: every input line gets exactly one output line, whatever it holds -------------------------


@pytest.fixture(scope="module")
def served(synthetic_bundle) -> Recommender:
    """The synthetic bundle as ``srgnn-rt recommend --device cpu --threads 1`` loads it."""
    return Recommender.load(synthetic_bundle, device="cpu", threads=1)


def _recommend(bundle, data: bytes, *options: str) -> tuple[int, list[dict], str]:
    """``srgnn-rt recommend BUNDLE`` with ``data`` on stdin: (exit status, output lines parsed, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(data))
    with mock.patch("sys.stdin", stdin), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["recommend", str(bundle), "--device", "cpu", "--threads", "1", *options])
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def _agrees(answer: dict, expected) -> bool:
    """An output line equals ``expected`` (a Recommendation), up to float noise and the order of near-tied items."""
    scores = np.asarray(expected.scores)
    if answer.keys() != {"items", "scores", "n_unknown", "fallback"} or len(answer["items"]) != len(scores):
        return False
    if (answer["n_unknown"], answer["fallback"]) != (expected.n_unknown, expected.fallback):
        return False
    if not np.allclose(answer["scores"], scores, rtol=1e-5, atol=1e-5):
        return False
    tied = np.isclose(scores[:, None], scores[None, :], rtol=1e-5, atol=1e-5).sum(axis=1) > 1
    return all(a == e or tie for a, e, tie in zip(answer["items"], expected.items, tied))


HOSTILE_LINES = {  # line -> what its error says
    b"[1,": "not a JSON array of item ids: Expecting value",
    b'["abc"]': "position 0 holds 'abc', but this model's item ids are integers",
    b"[1.5]": "position 0 holds 1.5, not an item id",
    b"[true]": "position 0 holds True, not an item id",
    b"[NaN]": "position 0 holds nan, not an item id",
    b"[[1]]": "position 0 holds [1], not an item id",
    b'[{"a": 1}]': "position 0 holds {'a': 1}, not an item id",
    b"[" + b"9" * 5000 + b"]": "not a JSON array of item ids: Exceeds the limit",
    b"9" * 5000: "the item id at position 0 has 5,000 digits",
    b'{"session": [1]}': "this model's item ids are integers, got",
    b"abc,def": "this model's item ids are integers, got 'abc' at position 0",
    b"1,,2": "this model's item ids are integers, got '' at position 1",
    b"[" * 100_000: "not a JSON array of item ids: maximum recursion depth exceeded",
    b"[1] [2]": "not a JSON array of item ids: Extra data",
    b"\xff\xfe[1]": "not UTF-8 text (byte 0: invalid start byte)",
    b"": "blank line",
    b" \t\r": "blank line",
}


def test_recommend_answers_good_lines_and_names_each_bad_one(synthetic_bundle, served):
    known = served.bundle.vocab.raw_ids
    good = [known[:3], [known[4], -77], []]
    lines = [b"\xef\xbb\xbf" + json.dumps(good[0]).encode()]  # a BOM on line 1 is accepted
    for line, session in zip(HOSTILE_LINES, good[1:] + [None] * len(HOSTILE_LINES)):
        lines.append(line)
        if session is not None:
            lines.append(",".join(map(str, session)).encode() if session else b"[]")
    status, answers, err = _recommend(synthetic_bundle, b"\n".join(lines) + b"\n", "-k", "5")
    assert (status, err, len(answers)) == (0, "", len(lines))
    expected_errors = iter(HOSTILE_LINES.values())
    answered = [answer for answer in answers if "error" not in answer]
    for number, (line, answer) in enumerate(zip(lines, answers), start=1):
        if "error" in answer:
            assert answer["line"] == number and next(expected_errors) in answer["error"], (line[:40], answer)
    assert next(expected_errors, None) is None and len(answered) == len(good)
    assert all(_agrees(answer, served.recommend_one(session, k=5)) for answer, session in zip(answered, good))
    assert answered[2]["fallback"]  # []: no known item, the most popular ones


def test_recommend_refuses_an_over_long_line_unread(synthetic_bundle, served):
    item = served.bundle.vocab.raw_ids[0]
    fits = json.dumps([item] * 10).encode()
    huge = b"[" + b"1," * 5_000_000 + b"1]"  # 5 M ids, 10 MB
    data = b"\n".join([fits, huge, fits[:-1] + b",1]", fits]) + b"\n"
    status, answers, _ = _recommend(synthetic_bundle, data, "--max-line-bytes", str(len(fits)))
    assert status == 0 and len(answers) == 4
    assert answers[1] == {"line": 2, "error": f"the line is {len(huge):,} bytes, more than --max-line-bytes "
                                             f"{len(fits):,}"}
    assert answers[2]["line"] == 3 and "more than --max-line-bytes" in answers[2]["error"]
    assert answers[0] == answers[3] and "items" in answers[0]


def test_fail_fast_stops_at_the_first_bad_line_with_status_2(synthetic_bundle, served):
    item = served.bundle.vocab.raw_ids[0]
    status, answers, err = _recommend(synthetic_bundle, f"[{item}]\nabc,def\n[{item}]\n".encode(), "--fail-fast")
    assert status == 2 and len(answers) == 2 and answers[1]["line"] == 2
    assert err == "srgnn-rt recommend: error: line 2: this model's item ids are integers, got 'abc' at position 0\n"


def test_an_unreadable_input_or_too_large_a_k_is_a_one_line_error(synthetic_bundle, served, tmp_path, capsys):
    assert main(["recommend", str(synthetic_bundle), str(tmp_path), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == f"srgnn-rt recommend: error: cannot read {tmp_path}: Is a directory\n"
    too_many = served.n_items + 1
    status, answers, err = _recommend(synthetic_bundle, b"[1]\n", "-k", str(too_many))
    assert (status, answers) == (2, [])
    assert err == f"srgnn-rt recommend: error: -k {too_many} is more than the model's {served.n_items} items\n"


_GARBAGE = st.one_of(st.sampled_from(sorted(HOSTILE_LINES)),
                     st.binary(max_size=24).map(lambda line: line.replace(b"\n", b"")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_input_line_gets_one_output_line_and_good_ones_their_answer(data, synthetic_bundle, served):
    known = served.bundle.vocab.raw_ids
    session = st.lists(st.sampled_from(known[:40]) | st.just(-5), min_size=1, max_size=12)
    good = st.tuples(st.just("good"), session, st.booleans())  # (kind, session, as JSON or comma-separated)
    lines = data.draw(st.lists(good | st.tuples(st.just("garbage"), _GARBAGE, st.none()), min_size=1, max_size=30))
    text = [json.dumps(s).encode() if as_json else ",".join(map(str, s)).encode() if kind == "good" else s
            for kind, s, as_json in lines]
    if data.draw(st.booleans()):
        text[0] = b"\xef\xbb\xbf" + text[0]
    batch_size = data.draw(st.sampled_from(["1", "3", "256"]))
    status, answers, err = _recommend(synthetic_bundle, b"\n".join(text) + b"\n", "-k", "5", "--batch-size", batch_size)
    assert (status, err, len(answers)) == (0, "", len(lines))
    for number, ((kind, session, _), answer) in enumerate(zip(lines, answers), start=1):
        if kind == "good":
            assert _agrees(answer, served.recommend_one(session, k=5)), (session, answer)
        else:
            assert "items" in answer or (answer.keys() == {"line", "error"} and answer["line"] == number)


def _cli(*arguments: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "srgnn_rt.cli", *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def test_recommend_answers_each_line_before_the_next_arrives(synthetic_bundle, served):
    """As a co-process: write a line, read its answer, only then write the next."""
    known = served.bundle.vocab.raw_ids
    process = _cli("recommend", str(synthetic_bundle), "-k", "3", "--device", "cpu", "--threads", "1",
                   stdin=subprocess.PIPE)
    answers: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in process.stdout], daemon=True).start()
    try:
        for line, session in ((json.dumps(known[:2]), known[:2]), ("[1,", None), (str(known[5]), known[5:6])):
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
            answer = json.loads(answers.get(timeout=60))
            if session is None:
                assert answer["line"] == 2 and "not a JSON array" in answer["error"]
            else:
                assert _agrees(answer, served.recommend_one(session, k=3))
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    assert process.stderr.read() == b""


def test_a_closed_output_ends_recommend_quietly(synthetic_bundle, served, tmp_path):
    """``srgnn-rt recommend ... | head -1``: no traceback, the status of a stage that SIGPIPE ended."""
    sessions = tmp_path / "sessions.txt"
    sessions.write_text(f"[{served.bundle.vocab.raw_ids[0]}]\n" * 20_000)
    process = _cli("recommend", str(synthetic_bundle), str(sessions), "--device", "cpu", "--threads", "1")
    timer = threading.Timer(60, process.kill)
    timer.start()
    try:
        assert b"items" in process.stdout.readline()
        process.stdout.close()
        assert process.wait(timeout=60) == 141
    finally:
        timer.cancel()
        process.kill()
    assert process.stderr.read() == b""
