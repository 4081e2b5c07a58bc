"""Readers: the vectorised parser against simple line-by-line references, malformed-row reports."""

from __future__ import annotations

import calendar
import csv
import hashlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgnn_rt_torch.readers import ClickLog, read_csv, read_diginetica, read_parquet, read_yoochoose

DIGINETICA_HEADER = "session_id;user_id;item_id;timeframe;eventdate"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _rows(log: ClickLog) -> list[tuple]:
    """(session number, raw item id as text, session date, order key or None) per click."""
    order = log.order if log.order is not None else [None] * len(log)
    return [
        (int(s), str(log.item_ids[i]), int(log.session_dates[s]), None if o is None else int(o))
        for s, i, o in zip(log.sessions, log.items, order)
    ]


def _reference_read(path: Path, delimiter: str, header: bool, parse) -> tuple[list[tuple], list[int], int]:
    """Line-by-line reference: (rows as _rows gives them, malformed line numbers, blank lines).

    ``parse(fields)`` returns (session text, item text, date, order) or raises ValueError;
    a session's date is that of its last valid row."""
    rows, malformed, blank, sessions, dates = [], [], 0, {}, {}
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if header and number == 1:
            continue
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if not raw:
            blank += 1
            continue
        try:
            fields = next(csv.reader([raw.decode("utf-8")], delimiter=delimiter))
            session, item, date, order = parse(fields)
            if not session or not item:
                raise ValueError("empty id")
        except (ValueError, csv.Error):
            malformed.append(number)
            continue
        number = sessions.setdefault(session, len(sessions))
        dates[number] = date
        rows.append((number, item, order))
    return [(s, item, dates[s], order) for s, item, order in rows], malformed, blank


def _diginetica_fields(fields: list[str]):
    if len(fields) != 5:
        raise ValueError("field count")
    session, _, item, timeframe, day = fields
    order = int(timeframe)
    if not -(2**63) <= order < 2**63:
        raise ValueError("range")
    return session, item, calendar.timegm(time.strptime(day, "%Y-%m-%d")), order


def _yoochoose_fields(fields: list[str]):
    if len(fields) != 4:
        raise ValueError("field count")
    session, stamp, item, _ = fields
    return session, item, calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")), None


def _assert_matches_reference(log: ClickLog, path: Path, delimiter: str, header: bool, parse) -> None:
    rows, malformed, blank = _reference_read(path, delimiter, header, parse)
    assert _rows(log) == rows
    assert log.report.malformed_count == len(malformed)
    assert [m.line for m in log.report.malformed] == malformed[: len(log.report.malformed)]
    assert log.report.blank_lines == blank
    assert log.report.clicks == len(rows)
    assert log.report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# property tests: random files with every kind of oddity, read with random chunk sizes

_ids = st.sampled_from(["1", "2", "3", "10", "7", "007", "0", "P-1", "-4", "12345678901234567890", ""])
_timeframes = st.sampled_from(["0", "15", "15", "3", "-3", " 4", "0012", "abc", "", "99999999999999999999"])
_days = st.sampled_from(
    ["2016-05-09", "2016-05-10", "2016-05-10", "2016-5-9", "2016-02-29", "2015-02-29", "2016-13-01", "x"]
)
_stamps = st.sampled_from([
    "2014-04-07T10:51:09.277Z", "2014-04-07T10:51:09", "2014-04-07T23:59:59.999Z", "2014-04-08T00:00:00Z",
    "2014-04-07 10:51:09.277Z", "2014-4-7T10:51:09.277Z", "2014-04-07T10:51:61.000Z", "2014-04-07T24:00:00Z",
    "2014-04-07", "", "2016-02-29T12:00:00.1Z",
])


@st.composite
def _lines(draw, fields_strategy, delimiter: str) -> str:
    kind = draw(st.sampled_from(["plain", "plain", "plain", "quoted", "crlf", "blank", "short", "long"]))
    fields = draw(fields_strategy)
    if kind == "blank":
        return draw(st.sampled_from(["", "\r"]))
    if kind == "short":
        fields = fields[:-1]
    if kind == "long":
        fields = fields + ["extra"]
    if kind == "quoted":
        fields = [f'"{field}"' for field in fields]
    return delimiter.join(fields) + ("\r" if kind == "crlf" else "")


_diginetica_lines = _lines(st.tuples(_ids, st.just("NA"), _ids, _timeframes, _days).map(list), ";")
_yoochoose_lines = _lines(st.tuples(_ids, _stamps, _ids, st.sampled_from(["0", "S", "12"])).map(list), ",")
_chunk_sizes = st.sampled_from([1, 7, 64, 1 << 20])
_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(lines=st.lists(_diginetica_lines, max_size=40), chunk=_chunk_sizes, final_newline=st.booleans())
def test_diginetica_matches_line_reference(tmp_path, lines, chunk, final_newline):
    text = "\n".join([DIGINETICA_HEADER, *lines]) + ("\n" if final_newline else "")
    path = _write(tmp_path, "views.csv", text)
    log = read_diginetica(path, block_bytes=chunk)
    _assert_matches_reference(log, path, ";", True, _diginetica_fields)


@_settings
@given(lines=st.lists(_yoochoose_lines, max_size=40), chunk=_chunk_sizes)
def test_yoochoose_matches_line_reference(tmp_path, lines, chunk):
    path = _write(tmp_path, "clicks.dat", "".join(line + "\n" for line in lines))
    log = read_yoochoose(path, block_bytes=chunk)
    _assert_matches_reference(log, path, ",", False, _yoochoose_fields)


_moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 12, 31))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moment=_moments, style=st.sampled_from(["T", " ", "Tz", "frac3", "frac6z", "frac9", "date", "epoch", "offset"]))
def test_csv_time_formats(tmp_path, moment, style):
    """Every accepted time spelling gives the instant's microseconds (order) and floored seconds (date)."""
    utc = moment.replace(tzinfo=timezone.utc)
    expected = (utc - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    base = moment.strftime("%Y-%m-%d")
    clock = moment.strftime("%H:%M:%S")
    if style == "date":
        text, expected = base, expected - expected % (86400 * 10**6)
    elif style == "epoch":
        text = f"{expected // 10**6}.{expected % 10**6:06d}"
    elif style == "offset":
        shifted = moment + timedelta(hours=2)
        text = shifted.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+02:00"
    else:
        separator = " " if style == " " else "T"
        digits = {"frac3": 3, "frac6z": 6, "frac9": 9}.get(style, 0)
        fraction = f".{moment.microsecond:06d}000"[: digits + 1] if digits else ""
        text = f"{base}{separator}{clock}{fraction}" + ("Z" if style.endswith(("z", "Tz")) else "")
        expected -= expected % 10 ** (6 - min(digits, 6))
    path = _write(tmp_path, "log.csv", f"s,i,t\n1,5,{text}\n")
    log = read_csv(path, session="s", item="i", time="t")
    assert log.report.malformed_count == 0, log.report.malformed
    assert (int(log.order[0]), int(log.session_dates[0])) == (expected, expected // 10**6)


# ----------------------------------------------------------------------------------------------
# unit tests


def test_malformed_lines_are_reported_with_line_and_reason(tmp_path):
    text = "\n".join([
        DIGINETICA_HEADER,
        "1;NA;5;10;2016-05-09",
        "1;NA;5;10",
        "2;NA;6;abc;2016-05-09",
        "3;NA;6;1;2016-05-32",
        "4;NA;;1;2016-05-09",
        "",
        "5;NA;7;3;2016-05-09",
    ]).encode() + b"\n6;NA;\xff;1;2016-05-09\n"
    log = read_diginetica(_write(tmp_path, "views.csv", text))
    assert len(log) == 2
    assert log.report.blank_lines == 1
    reasons = {m.line: m.reason for m in log.report.malformed}
    assert sorted(reasons) == [3, 4, 5, 6, 9]
    assert "expected 5 fields, found 4" in reasons[3]
    assert "timeframe 'abc' is not an integer" in reasons[4]
    assert "eventdate '2016-05-32'" in reasons[5]
    assert "item id is empty" in reasons[6]
    assert "UTF-8" in reasons[9]
    assert str(log.report.malformed[0]).startswith("line 3: ")


def test_diginetica_columns_are_found_by_header_name(tmp_path):
    text = "eventdate;timeframe;item_id;session_id\n2016-05-09;5;42;9\n2016-05-09;1;43;9\n"
    log = read_diginetica(_write(tmp_path, "views.csv", text))
    assert _rows(log) == [(0, "42", 1462752000, 5), (0, "43", 1462752000, 1)]


def test_diginetica_header_without_a_needed_column(tmp_path):
    with pytest.raises(ValueError, match="no column 'timeframe'"):
        read_diginetica(_write(tmp_path, "views.csv", "session_id;item_id;eventdate\n1;2;2016-05-09\n"))


def test_yoochoose_with_and_without_header(tmp_path):
    body = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,S\n"
    plain = read_yoochoose(_write(tmp_path, "a.dat", body))
    headed = read_yoochoose(_write(tmp_path, "b.dat", "session_id,timestamp,item_id,category\n" + body))
    assert _rows(plain) == _rows(headed) == [(0, "214536502", 1396868049, None), (0, "214536500", 1396868049, None)]
    assert plain.order is None


def test_ids_are_compared_as_text(tmp_path):
    text = "s,i,t\n1,7,0\n1,007,1\n1,P-1,2\n01,7,3\n"
    log = read_csv(_write(tmp_path, "log.csv", text), session="s", item="i", time="t")
    assert [log.item_ids[i] for i in log.items] == [7, "007", "P-1", 7]
    assert log.sessions.tolist() == [0, 0, 0, 1]


def test_csv_numbered_columns_filter_and_delimiter(tmp_path):
    text = "a\tview\t5\t100\nb\tbuy\t6\t101\nb\tview\t6\t102\na\tview\t7\t99\n"
    log = read_csv(_write(tmp_path, "log.tsv", text), session=0, item=2, time=3, delimiter="\t",
                   header=False, where={1: "view"})
    # a session's date is its last row's (file order), whatever the times say
    assert _rows(log) == [(0, "5", 99, 100 * 10**6), (1, "6", 102, 102 * 10**6), (0, "7", 99, 99 * 10**6)]
    assert log.report.filtered_rows == 1


def test_csv_filter_by_name_applies_to_quoted_rows_too(tmp_path):
    text = 'session,item,time,event\n1,5,10,view\n"1",5,11,"buy"\n1,"6",12,"view"\n'
    log = read_csv(_write(tmp_path, "log.csv", text), session="session", item="item", time="time",
                   where={"event": "view"})
    assert [log.item_ids[i] for i in log.items] == [5, 6]
    assert log.report.filtered_rows == 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"session": "nope", "item": "i", "time": "t"}, ValueError, "no column 'nope'"),
        ({"session": 5, "item": "i", "time": "t"}, ValueError, "index 5 is outside 0..2"),
        ({"session": "s", "item": "i", "time": "t", "header": False}, ValueError, "header=False"),
        ({"session": 1.5, "item": "i", "time": "t"}, TypeError, "header name or a 0-based index"),
        ({"session": "s", "item": "i", "time": "t", "delimiter": ";;"}, ValueError, "delimiter"),
        ({"session": "s", "item": "i", "time": "t", "where": {"s": 1}}, TypeError, "text to keep"),
    ],
)
def test_csv_option_errors(tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        read_csv(_write(tmp_path, "log.csv", "s,i,t\n1,2,3\n"), **options)


def test_empty_files(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        read_diginetica(_write(tmp_path, "views.csv", ""))
    log = read_yoochoose(_write(tmp_path, "clicks.dat", ""))
    assert len(log) == 0 and log.n_sessions == 0


def test_chunk_size_does_not_change_the_result(tmp_path):
    rng = np.random.default_rng(0)
    lines = [f"{s};NA;{i};{t};2016-05-{d:02d}" for s, i, t, d in rng.integers(1, 28, size=(500, 4))]
    path = _write(tmp_path, "views.csv", "\n".join([DIGINETICA_HEADER, *lines]) + "\n")
    whole = _rows(read_diginetica(path))
    for chunk in (13, 100, 4096):
        assert _rows(read_diginetica(path, block_bytes=chunk)) == whole


# ----------------------------------------------------------------------------------------------
# malformed logs met in the wild (issue: readers on pyarrow)


def test_millisecond_and_microsecond_epochs_are_detected(tmp_path):
    seconds = [1_462_752_000, 1_462_752_060]
    for unit, scale in (("s", 1), ("ms", 1_000), ("us", 1_000_000)):
        text = "s,i,t\n" + "".join(f"1,{n},{value * scale}\n" for n, value in enumerate(seconds, start=5))
        log = read_csv(_write(tmp_path, f"{unit}.csv", text), session="s", item="i", time="t")
        assert log.report.malformed_count == 0, log.report.malformed
        assert log.report.time_unit == unit
        assert log.order.tolist() == [value * 10**6 for value in seconds]
        forced = read_csv(tmp_path / f"{unit}.csv", session="s", item="i", time="t", time_unit=unit)
        assert forced.order.tolist() == log.order.tolist()


def test_a_time_out_of_range_is_malformed_with_its_line(tmp_path):
    text = "s,i,t\n1,5,1462752000\n1,6,1462752001\n2,7,99999999999999999\n"
    log = read_csv(_write(tmp_path, "log.csv", text), session="s", item="i", time="t", time_unit="s")
    assert len(log) == 2
    assert [m.line for m in log.report.malformed] == [4]
    assert "outside the years 1..9999" in log.report.malformed[0].reason


def test_a_bom_on_a_headerless_file_does_not_change_the_first_id(tmp_path):
    body = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,S\n"
    plain = read_yoochoose(_write(tmp_path, "a.dat", body))
    bom = read_yoochoose(_write(tmp_path, "b.dat", b"\xef\xbb\xbf" + body.encode()))
    assert _rows(bom) == _rows(plain) and bom.n_sessions == 1
    log = read_csv(_write(tmp_path, "c.csv", b"\xef\xbb\xbf1,5,10\n1,6,11\n"), session=0, item=1, time=2,
                   header=False)
    assert log.n_sessions == 1 and log.item_ids == [5, 6]


def test_spaces_around_ids_are_stripped_and_control_characters_refused(tmp_path):
    text = "s,i,t\n1, 5,10\n1,5 ,11\n 1,6,12\n1,7\x00,13\n"
    log = read_csv(_write(tmp_path, "log.csv", text), session="s", item="i", time="t")
    assert log.item_ids == [5, 6] and log.n_sessions == 1 and len(log) == 3
    assert [m.line for m in log.report.malformed] == [5]
    assert "control character" in log.report.malformed[0].reason


def test_cr_only_line_endings(tmp_path):
    log = read_csv(_write(tmp_path, "mac.csv", "s,i,t\r1,5,10\r\r1,6,11\r"), session="s", item="i", time="t")
    assert len(log) == 2 and log.report.blank_lines == 1


def test_binary_files_and_directories_give_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="NUL bytes"):
        read_csv(_write(tmp_path, "x.bin", bytes(range(256)) * 4), session=0, item=1, time=2, header=False)
    with pytest.raises(ValueError, match="is a directory"):
        read_diginetica(tmp_path)


def test_parquet_list_of_types_matches_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(1, 5, 1_462_752_000), (1, 6, 1_462_752_001), (2, 5, 1_462_752_500), (2, 7, 1_462_752_400)]
    csv_log = read_csv(_write(tmp_path, "log.csv", "s,i,t\n" + "".join(f"{s},{i},{t}\n" for s, i, t in rows)),
                       session="s", item="i", time="t")
    for name, time_type in (("int", pa.int64()), ("stamp", pa.timestamp("s"))):
        table = pa.table({"s": [r[0] for r in rows], "i": [r[1] for r in rows],
                          "t": pa.array([r[2] for r in rows], pa.int64()).cast(time_type)})
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=2)
        log = read_parquet(tmp_path / f"{name}.parquet", session="s", item="i", time="t")
        assert _rows(log) == _rows(csv_log)
    text = pa.table({"s": ["a", "a", "b", ""], "i": ["x", "y", "x", "z"], "t": ["2016-05-09T10:00:00Z"] * 4})
    pq.write_table(text, tmp_path / "text.parquet")
    log = read_parquet(tmp_path / "text.parquet", session="s", item="i", time="t")
    assert sorted(log.item_ids) == ["x", "y"] and [m.line for m in log.report.malformed] == [4]
    with pytest.raises(ValueError, match="no column 'nope'"):
        read_parquet(tmp_path / "text.parquet", session="nope", item="i", time="t")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_parquet(_write(tmp_path, "fake.parquet", "s,i,t\n"), session="s", item="i", time="t")
