"""The prepare pipeline against a plain-Python oracle of the reference, and the dataset directory format."""

from __future__ import annotations

import calendar
import csv
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.vocab import Vocab
from srgnn_rt_torch.prepare import build_dataset, prepare
from srgnn_rt_torch.readers import read_csv, read_diginetica, read_yoochoose

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "diginetica-sample" / "train-item-views.csv"
DAY = 86400


# ----------------------------------------------------------------------------------------------
# the oracle: the reference's steps with dicts and lists, as plainly as possible


def oracle(path: Path, kind: str, test_days: float, fraction: int = 1) -> dict | None:
    """The reference's output for a diginetica / yoochoose / csv (session,item,time) file,
    or None where the reference would have nothing to train on."""
    delimiter = ";" if kind == "diginetica" else ","
    clicks: dict[str, list] = {}
    dates: dict[str, int] = {}
    current = current_date = None
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        if kind != "yoochoose":
            header = next(reader)
        for fields in reader:
            if kind == "diginetica":
                row = dict(zip(header, fields))
                session, date = row["session_id"], calendar.timegm(time.strptime(row["eventdate"], "%Y-%m-%d"))
                click = (row["item_id"], int(row["timeframe"]))
            elif kind == "yoochoose":
                session, stamp, item, _ = fields
                date = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
                click = item
            else:
                session, item, seconds = fields
                date, click = int(seconds), (item, int(seconds))
            # the reference dates a session when a different session id comes next
            if current is not None and session != current:
                dates[current] = current_date
            current, current_date = session, date
            clicks.setdefault(session, []).append(click)
    if current is None:
        return None
    dates[current] = current_date
    if kind != "yoochoose":
        clicks = {s: [c[0] for c in sorted(seq, key=lambda c: c[1])] for s, seq in clicks.items()}

    for s in [s for s, seq in clicks.items() if len(seq) == 1]:
        del clicks[s], dates[s]
    counts = Counter(item for seq in clicks.values() for item in seq)
    for s in list(clicks):
        kept = [item for item in clicks[s] if counts[item] >= 5]
        if len(kept) < 2:
            del clicks[s], dates[s]
        else:
            clicks[s] = kept
    if not dates:
        return None
    split = max(dates.values()) - round(test_days * DAY)
    train = sorted([(s, d) for s, d in dates.items() if d < split], key=lambda pair: pair[1])
    test = sorted([(s, d) for s, d in dates.items() if d > split], key=lambda pair: pair[1])
    if not train:
        return None
    number: dict[str, int] = {}
    train_seqs = []
    for s, _ in train:
        train_seqs.append([number.setdefault(item, len(number) + 1) for item in clicks[s]])
    test_seqs = [[number[i] for i in clicks[s] if i in number] for s, _ in test]
    test_seqs = [seq for seq in test_seqs if len(seq) >= 2]
    if not test_seqs:  # prepare refuses a split that leaves nothing to evaluate on
        return None

    def expand(seqs):
        pairs = [(seq[:-i], seq[-i], owner) for owner, seq in enumerate(seqs) for i in range(1, len(seq))]
        return [(p, t) for p, t, _ in pairs], [owner for _, _, owner in pairs]

    train_pairs, owners = expand(train_seqs)
    test_pairs, _ = expand(test_seqs)
    used = train_seqs
    if fraction > 1:
        cut = len(train_pairs) // fraction
        train_pairs, owners = train_pairs[-cut:], owners[-cut:]
        used = train_seqs[owners[0]:]
    item_counts = Counter(i for seq in used for i in seq)
    n_clicks = sum(map(len, train_seqs)) + sum(map(len, test_seqs))
    return {
        "train": train_pairs,
        "test": test_pairs,
        "vocab": list(number),
        "item_counts": [0] + [item_counts[i] for i in range(1, len(number) + 1)],
        "train_sessions": len(used),
        "test_sessions": len(test_seqs),
        "average_session_length": n_clicks / (len(train_seqs) + len(test_seqs)),
    }


def _pairs(split: PrefixSplit) -> list[tuple[list[int], int]]:
    return [
        (split.items[split.offsets[i] : split.offsets[i + 1]].tolist(), int(split.targets[i]))
        for i in range(len(split))
    ]


def _assert_same(dataset: PreparedDataset, expected: dict) -> None:
    assert _pairs(dataset.train) == expected["train"]
    assert _pairs(dataset.test) == expected["test"]
    assert [str(raw) for raw in dataset.vocab.raw_ids] == expected["vocab"]
    assert dataset.item_counts.tolist() == expected["item_counts"]
    manifest = dataset.manifest
    assert (manifest["train_sessions"], manifest["test_sessions"]) == (
        expected["train_sessions"], expected["test_sessions"]
    )
    assert (manifest["train_prefixes"], manifest["test_prefixes"], manifest["n_items"]) == (
        len(expected["train"]), len(expected["test"]), len(expected["vocab"])
    )
    assert manifest["average_session_length"] == pytest.approx(expected["average_session_length"], rel=1e-12)


def _needs_sample() -> Path:
    if not SAMPLE.is_file():
        pytest.skip(f"the Diginetica sample is not at {SAMPLE}")
    return SAMPLE


# ----------------------------------------------------------------------------------------------
# the Diginetica sample: the reference's own numbers


def test_diginetica_sample_matches_the_reference(tmp_path):
    sample = _needs_sample()
    dataset = prepare(sample, tmp_path / "sample", format="diginetica")
    manifest = dataset.manifest
    assert (manifest["train_sessions"], manifest["test_sessions"]) == (469, 39)
    assert (manifest["train_prefixes"], manifest["test_prefixes"]) == (1205, 99)
    assert manifest["n_items"] == 309
    assert round(manifest["average_session_length"], 3) == 3.567
    assert manifest["split_date"] == "2016-05-25T00:00:00Z"
    assert manifest["source_sha256"] == "98da96e05c87ef12b739e4bfd9bc7b4864106ee77371f1db9eb4413e3f78d37e"
    _assert_same(dataset, oracle(sample, "diginetica", 7))
    loaded = PreparedDataset.load(tmp_path / "sample")
    assert _pairs(loaded.train) == _pairs(dataset.train) and loaded.vocab == dataset.vocab
    assert loaded.manifest == json.loads(json.dumps(manifest))


@pytest.mark.parametrize("test_days", [1, 3.5, 30])
def test_diginetica_sample_other_splits(test_days):
    sample = _needs_sample()
    dataset = build_dataset(read_diginetica(sample), source_format="diginetica", test_days=test_days)
    _assert_same(dataset, oracle(sample, "diginetica", test_days))


# ----------------------------------------------------------------------------------------------
# random click logs (interleaved sessions, tied dates and times) against the oracle

_settings = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_clicks = st.tuples(st.integers(1, 12), st.integers(1, 8), st.integers(0, 4), st.integers(0, 9))


def _check_against_oracle(path: Path, kind: str, log, test_days: float, fraction: int = 1) -> None:
    expected = oracle(path, kind, test_days, fraction)
    if expected is None:
        with pytest.raises(ValueError, match="no valid clicks|nothing to prepare|no training session|no test prefix"):
            build_dataset(log, source_format=kind, test_days=test_days, fraction=fraction)
        return
    _assert_same(build_dataset(log, source_format=kind, test_days=test_days, fraction=fraction), expected)


@_settings
@given(rows=st.lists(_clicks, min_size=30, max_size=150), test_days=st.sampled_from([1, 2, 7]))
def test_diginetica_logs_match_the_oracle(tmp_path, rows, test_days):
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    lines += [f"{s};NA;{i};{t};2016-05-{1 + d:02d}" for s, i, t, d in rows]
    path = tmp_path / "views.csv"
    path.write_text("\n".join(lines) + "\n")
    _check_against_oracle(path, "diginetica", read_diginetica(path), test_days)


@_settings
@given(rows=st.lists(_clicks, min_size=30, max_size=150), fraction=st.sampled_from([1, 4, 64]))
def test_yoochoose_logs_match_the_oracle(tmp_path, rows, fraction):
    # times on a coarse grid so that sessions tie and land exactly on the split
    lines = [f"{s},2014-04-0{1 + d // 3}T{(d % 3) * 6:02d}:00:0{t}.{t}00Z,{i},0" for s, i, t, d in rows]
    path = tmp_path / "clicks.dat"
    path.write_text("".join(line + "\n" for line in lines))
    _check_against_oracle(path, "yoochoose", read_yoochoose(path), 1, fraction)


@_settings
@given(rows=st.lists(_clicks, min_size=30, max_size=150))
def test_csv_logs_match_the_oracle(tmp_path, rows):
    lines = ["session,item,time"] + [f"{s},{i},{d * DAY // 2 + t}" for s, i, t, d in rows]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    log = read_csv(path, session="session", item="item", time="time")
    _check_against_oracle(path, "csv", log, 1)


# ----------------------------------------------------------------------------------------------
# the quirks, one by one, on hand-made logs


def _diginetica(tmp_path: Path, rows: list[str]) -> PreparedDataset:
    path = tmp_path / "views.csv"
    path.write_text("\n".join(["session_id;user_id;item_id;timeframe;eventdate", *rows]) + "\n")
    return build_dataset(read_diginetica(path), source_format="diginetica", test_days=7)


def _filler(session: int, day: str, items=(1, 2, 3, 4, 5)) -> list[str]:
    """A session clicking ``items`` on ``day``, so that each gets seen often enough."""
    return [f"{session};NA;{item};{n};{day}" for n, item in enumerate(items)]


def test_session_on_the_split_day_is_in_neither_set(tmp_path):
    rows = []
    for number, day in enumerate(["2016-05-01", "2016-05-02", "2016-05-03", "2016-05-10", "2016-05-03"]):
        rows += _filler(number + 1, day)
    dataset = _diginetica(tmp_path, rows)  # last date 05-10, split 05-03: sessions 3 and 5 are in neither
    assert (dataset.manifest["train_sessions"], dataset.manifest["test_sessions"]) == (2, 1)
    assert dataset.manifest["split_date"] == "2016-05-03T00:00:00Z"


def test_session_date_is_its_last_row_in_file_order(tmp_path):
    # session 1's rows: 05-20 then 05-01 (file order): it is dated 05-01, a training session
    rows = _filler(1, "2016-05-20", (1, 2)) + _filler(2, "2016-05-20") + _filler(1, "2016-05-01", (3, 4, 5))
    rows += _filler(3, "2016-05-02") + _filler(4, "2016-05-03") + _filler(5, "2016-05-04")
    dataset = _diginetica(tmp_path, rows)
    assert dataset.manifest["train_sessions"] == 4
    assert dataset.manifest["test_sessions"] == 1


def test_clicks_sorted_by_timeframe_ties_keep_file_order(tmp_path):
    rows = ["1;NA;5;30;2016-05-01", "1;NA;3;10;2016-05-01", "1;NA;4;30;2016-05-01", "1;NA;1;10;2016-05-01"]
    rows += _filler(2, "2016-05-01") * 4 + _filler(3, "2016-05-20")
    dataset = _diginetica(tmp_path, rows)
    raw = dataset.vocab.decode(dataset.train.items[: dataset.train.offsets[1]]).tolist()
    assert raw + [int(dataset.vocab.decode(dataset.train.targets[:1])[0])] == [3, 1, 5, 4]


def test_prefixes_longest_first_and_items_numbered_by_first_train_appearance(tmp_path):
    rows = ["1;NA;9;0;2016-05-02", "1;NA;8;1;2016-05-02", "1;NA;9;2;2016-05-02", "1;NA;7;3;2016-05-02"]
    rows += _filler(2, "2016-05-01", (7, 8, 9)) * 4 + _filler(3, "2016-05-20", (7, 8))
    dataset = _diginetica(tmp_path, rows)
    assert dataset.vocab.raw_ids == [7, 8, 9]  # session 2 (05-01) comes first in date order
    pairs = _pairs(dataset.train)
    assert pairs[-3:] == [([3, 2, 3], 1), ([3, 2], 3), ([3], 2)]


def test_yoochoose_fraction_keeps_the_last_prefixes(tmp_path):
    lines = []
    for session in range(1, 41):
        lines += [f"{session},2014-04-01T{session % 24:02d}:00:00.000Z,{item},0" for item in (1, 2, 3)]
    lines += ["99,2014-04-05T00:00:00.000Z,1,0", "99,2014-04-05T00:00:01.000Z,2,0"]
    path = tmp_path / "clicks.dat"
    path.write_text("\n".join(lines) + "\n")
    log = read_yoochoose(path)
    full = build_dataset(log, source_format="yoochoose", test_days=1)
    quarter = build_dataset(log, source_format="yoochoose", test_days=1, fraction=4)
    assert len(quarter.train) == len(full.train) // 4 == 20
    assert _pairs(quarter.train) == _pairs(full.train)[-20:]
    assert quarter.manifest["n_items"] == full.manifest["n_items"]
    assert quarter.manifest["full_train_prefixes"] == len(full.train)
    assert quarter.manifest["options"]["fraction"] == 4
    tiny = build_dataset(log, source_format="yoochoose", test_days=1, fraction=1000)
    assert len(tiny.train) == len(full.train)  # the reference's seqs[-0:] keeps everything


def test_malformed_rows_reach_the_manifest(tmp_path, caplog):
    path = tmp_path / "views.csv"
    rows = _filler(1, "2016-05-01") + ["2;NA;1;x;2016-05-01"] + _filler(3, "2016-05-02") + _filler(4, "2016-05-20")
    rows += _filler(5, "2016-05-03") + _filler(6, "2016-05-04")
    path.write_text("\n".join(["session_id;user_id;item_id;timeframe;eventdate", *rows]) + "\n")
    manifest = prepare(path, tmp_path / "out", format="diginetica").manifest
    assert manifest["malformed_rows"] == 1
    assert manifest["malformed_examples"] == [{"line": 7, "reason": "timeframe 'x' is not an integer"}]
    assert "1 malformed line(s)" in caplog.text


# ----------------------------------------------------------------------------------------------
# prepare's options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "orc"}, "format must be one of"),
        ({"format": "csv", "session_column": "s"}, "needs item_column, time_column"),
        ({"format": "diginetica", "where": {"a": "b"}}, "where only apply to format='csv'"),
        ({"format": "diginetica", "delimiter": ";"}, "delimiter only apply"),
        ({"format": "diginetica", "fraction": 0}, "fraction must be an int >= 1"),
        ({"format": "diginetica", "test_days": 0}, "test_days must be a positive"),
        ({"format": "diginetica", "min_item_count": 0}, "min_item_count must be"),
    ],
)
def test_prepare_rejects_bad_options(tmp_path, options, message):
    path = tmp_path / "log.csv"
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n")
    with pytest.raises(ValueError, match=message):
        prepare(path, tmp_path / "out", **options)


def test_prepare_refuses_a_non_empty_directory_before_reading(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare(tmp_path / "missing.csv", tmp_path / "new", format="diginetica")
    path = tmp_path / "log.csv"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare(path, tmp_path / "out", format="diginetica")


def test_prepare_generic_csv_with_filter(tmp_path):
    lines = ["when,who,what,event"]
    for session in range(1, 8):
        lines += [f"2020-01-{session:02d}T10:00:0{n}Z,s{session},{item},view" for n, item in enumerate((1, 2, 3))]
        lines.append(f"2020-01-{session:02d}T10:00:09Z,s{session},4,purchase")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    dataset = prepare(path, tmp_path / "out", format="csv", session_column="who", item_column="what",
                      time_column="when", where={"event": "view"}, test_days=1)
    assert dataset.vocab.raw_ids == [1, 2, 3]
    assert (dataset.manifest["train_sessions"], dataset.manifest["test_sessions"]) == (5, 1)
    assert dataset.manifest["filtered_rows"] == 7
    assert dataset.manifest["options"]["where"] == {"event": "view"}


def test_nothing_left_is_an_error(tmp_path):
    path = tmp_path / "views.csv"
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;1;0;2016-05-01\n1;NA;2;1;2016-05-01\n")
    with pytest.raises(ValueError, match="nothing to prepare"):
        prepare(path, tmp_path / "out", format="diginetica")
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;1;x;2016-05-01\n")
    with pytest.raises(ValueError, match=r"no valid clicks \(1 malformed lines; first: line 2: timeframe"):
        prepare(path, tmp_path / "out", format="diginetica")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# the dataset directory


def _tiny() -> PreparedDataset:
    def split(items, offsets, targets):
        return PrefixSplit(*(np.array(a, dtype=np.int64) for a in (items, offsets, targets)))

    manifest = {"format_version": 1, "train_sessions": 1, "test_sessions": 1, "train_prefixes": 2,
                "test_prefixes": 1, "n_items": 3}
    return PreparedDataset(
        train=split([1, 1, 2], [0, 1, 3], [2, 3]), test=split([2], [0, 1], [3]), vocab=Vocab([10, "b", 30]),
        item_counts=np.array([0, 2, 2, 1], dtype=np.int64), manifest=manifest,
    )


def test_save_and_load_round_trip(tmp_path):
    original = _tiny()
    original.save(tmp_path / "data")
    loaded = PreparedDataset.load(tmp_path / "data")
    assert _pairs(loaded.train) == _pairs(original.train) and _pairs(loaded.test) == _pairs(original.test)
    assert loaded.vocab == original.vocab and loaded.manifest == original.manifest
    assert loaded.item_counts.tolist() == [0, 2, 2, 1] and len(loaded.train) == 2 and loaded.n_items == 3
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "manifest.json", "test.npz", "train.npz", "vocab.json"
    ]


def test_save_refuses_non_empty_and_overwrites_when_asked(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    _tiny().save(target)  # an empty directory is fine
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _tiny().save(target)
    (target / "stale.txt").write_text("old")
    _tiny().save(target, overwrite=True)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging directory left


def test_a_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def broken(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr(Vocab, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        _tiny().save(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    _tiny().save(tmp_path / "data")
    monkeypatch.setattr(Vocab, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        _tiny().save(tmp_path / "data", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert PreparedDataset.load(tmp_path / "data").manifest == _tiny().manifest


def _corrupt_train(directory: Path, **changes) -> None:
    with np.load(directory / "train.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(changes)
    np.savez(directory / "train.npz", **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"items": np.array([1, 1, 2], dtype=np.int32)}, "train items must be int64"),
        ({"offsets": np.array([0, 1, 2], dtype=np.int64)}, r"offsets\[-1\] is 2 but there are 3 items"),
        ({"offsets": np.array([0, 3, 3], dtype=np.int64)}, "prefix 1 has 0 items"),
        ({"offsets": np.array([0, 3], dtype=np.int64)}, "2 targets but 2 offsets"),
        ({"items": np.array([1, 0, 2], dtype=np.int64)}, r"train items\[1\] is 0, outside 1..3"),
        ({"targets": np.array([2, 4], dtype=np.int64)}, r"train targets\[1\] is 4, outside 1..3"),
        ({"item_counts": np.array([0, 1], dtype=np.int64)}, "item_counts has 2 entries; expected n_items"),
        ({"item_counts": None}, r"missing \['item_counts'\]"),
        ({"extra": np.zeros(1)}, r"unexpected \['extra'\]"),
        ({"items": np.array([1, "x", 2], dtype=object)}, "cannot be read without pickle"),
    ],
)
def test_load_says_what_is_wrong(tmp_path, change, message):
    _tiny().save(tmp_path / "data")
    _corrupt_train(tmp_path / "data", **change)
    with pytest.raises(ValueError, match=message):
        PreparedDataset.load(tmp_path / "data")


def test_load_checks_files_vocab_and_manifest(tmp_path):
    directory = tmp_path / "data"
    _tiny().save(directory)
    (directory / "vocab.json").write_text("[10, 20]")
    with pytest.raises(ValueError, match=r"train targets\[1\] is 3, outside 1..2"):
        PreparedDataset.load(directory)
    _tiny().save(directory, overwrite=True)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "test_prefixes": 5}))
    with pytest.raises(ValueError, match="manifest test_prefixes is 5 but test.npz holds 1"):
        PreparedDataset.load(directory)
    (directory / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version is 99"):
        PreparedDataset.load(directory)
    (directory / "test.npz").unlink()
    with pytest.raises(FileNotFoundError, match="test.npz is missing"):
        PreparedDataset.load(directory)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PreparedDataset.load(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------
# pre-split files, and the frictions of preparing published benchmark files


def _session_rec_file(path: Path, sessions: dict[int, list[int]], start: int) -> None:
    """A session-rec style file: tab-separated, header SessionId ItemId Time (+ another column)."""
    lines = ["SessionId\tItemId\tTime\tCategory"]
    for session, items in sessions.items():
        lines += [f"{session}\t{item}\t{start + 60 * session + n}.5\t0" for n, item in enumerate(items)]
    path.write_text("\n".join(lines) + "\n")


def test_presplit_files_give_exactly_the_pairs_they_define(tmp_path):
    rng = np.random.default_rng(3)
    train = {s: rng.integers(1, 40, size=rng.integers(2, 7)).tolist() for s in range(1, 200)}
    test = {s: rng.integers(1, 45, size=rng.integers(1, 6)).tolist() for s in range(500, 540)}
    _session_rec_file(tmp_path / "x_train_full.txt", train, 1_000_000)
    _session_rec_file(tmp_path / "x_test.txt", test, 2_000_000)
    dataset = prepare(tmp_path / "x_train_full.txt", tmp_path / "out", format="csv", test=tmp_path / "x_test.txt",
                      delimiter="\t", session_column="SessionId", item_column="ItemId", time_column="Time")
    raw = dataset.vocab.raw_ids
    known = set(raw)
    expected = []
    for items in test.values():
        items = [item for item in items if item in known]
        expected += [(items[:-i], items[-i]) for i in range(1, len(items))]
    got = [([raw[i - 1] for i in prefix], raw[target - 1]) for prefix, target in _pairs(dataset.test)]
    assert got == expected
    train_expected = [(items[:-i], items[-i]) for items in train.values() for i in range(1, len(items))]
    assert [([raw[i - 1] for i in p], raw[t - 1]) for p, t in _pairs(dataset.train)] == train_expected
    manifest = dataset.manifest
    assert manifest["split"] == "files" and manifest["options"]["min_item_count"] == 1
    assert manifest["removed"]["unknown_test_clicks"] == sum(
        i not in known for s in test.values() if len(s) >= 2 for i in s
    )
    with pytest.raises(ValueError, match="do not apply with a test file"):
        prepare(tmp_path / "x_train_full.txt", tmp_path / "o2", format="csv", test=tmp_path / "x_test.txt",
                test_days=1, delimiter="\t", session_column="SessionId", item_column="ItemId", time_column="Time")


def test_test_days_beyond_the_log_says_what_it_spans(tmp_path):
    path = tmp_path / "views.csv"
    rows = _filler(1, "2016-05-01") + _filler(2, "2016-05-03") + _filler(3, "2016-05-06")
    path.write_text("\n".join(["session_id;user_id;item_id;timeframe;eventdate", *rows]) + "\n")
    for days in (7, 1e300):
        with pytest.raises(ValueError, match=r"span 5.00 days .* leaves no training session: choose fewer"):
            prepare(path, tmp_path / "out", format="diginetica", test_days=days, min_item_count=1)


def test_a_split_without_test_prefixes_is_refused(tmp_path):
    path = tmp_path / "views.csv"
    rows = _filler(1, "2016-05-01") + _filler(2, "2016-05-02") + _filler(3, "2016-05-10", items=(1, 9))
    path.write_text("\n".join(["session_id;user_id;item_id;timeframe;eventdate", *rows]) + "\n")
    with pytest.raises(ValueError, match="leaves no test prefix"):
        prepare(path, tmp_path / "out", format="diginetica", test_days=3, min_item_count=1)
    assert not (tmp_path / "out").exists()


def test_what_each_filter_removed_is_recorded(tmp_path):
    rows = _filler(1, "2016-05-01") + _filler(2, "2016-05-01") + ["9;NA;77;0;2016-05-01"]
    rows += _filler(3, "2016-05-02", items=(1, 2, 88)) + _filler(4, "2016-05-20")
    path = tmp_path / "views.csv"
    path.write_text("\n".join(["session_id;user_id;item_id;timeframe;eventdate", *rows]) + "\n")
    removed = prepare(path, tmp_path / "out", format="diginetica", min_item_count=2).manifest["removed"]
    assert removed["one_click_sessions"] == 1
    assert (removed["rare_items"], removed["rare_item_clicks"]) == (1, 1)


def test_cli_prepare_takes_a_tab_and_reports_errors_in_one_line(tmp_path, capsys):
    from srgnn_rt.cli import main

    train = {s: [1 + s % 3, 2 + s % 4, 3] for s in range(1, 30)}
    _session_rec_file(tmp_path / "tr.txt", train, 1_000_000)
    _session_rec_file(tmp_path / "te.txt", {100: [1, 2, 3], 101: [3, 2]}, 2_000_000)
    common = ["--format", "csv", "--session-column", "SessionId", "--item-column", "ItemId", "--time-column", "Time"]
    assert main(["prepare", str(tmp_path / "tr.txt"), str(tmp_path / "out"), "--test", str(tmp_path / "te.txt"),
                 "--delimiter", "\\t", *common]) == 0
    assert "filters removed:" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path), str(tmp_path / "o2"), "--format", "diginetica"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "tr.txt"), str(tmp_path / "o3"), "--test-days", "1e300",
                 "--delimiter", "tab", *common]) == 2
    assert "leaves no training session" in capsys.readouterr().err
