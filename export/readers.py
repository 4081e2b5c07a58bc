"""Click-log readers: Diginetica, Yoochoose and generic delimited files -> ``ClickLog``.

A reader streams the file in large byte chunks and parses them with numpy (field
boundaries from the delimiter and newline positions, integers and ISO dates from
their digits). A line the vectorised path cannot take as it is (quotes, a field
count that differs, text ids, unusual time formats) is parsed again on its own
with Python's ``csv`` module; if that fails too, the line is malformed: it is
left out, counted, and the first ``MALFORMED_EXAMPLES`` are reported with their
line number (1-based, header included) and the reason. Blank lines are skipped
and counted. A record is one line: a quoted field may hold the delimiter, not a
line break.

Ids. Session and item ids are compared as the text in the file, as the SR-GNN
reference does (``"07"`` and ``"7"`` are different items). A plain non-negative
integer without leading zeros (below 2**63) becomes an ``int`` raw id, any other
text (``"P-12"``, ``"007"``, ``"-3"``) stays a ``str``; an empty id is malformed.

Dates are UTC epoch seconds, the session date is taken from the session's last
row in file order (see ``srgnn_rt_torch.prepare``):

- Diginetica ``train-item-views.csv`` (``;``, header naming ``session_id``,
  ``item_id``, ``timeframe`` and ``eventdate``): the row's date is ``eventdate``
  (``%Y-%m-%d``) at midnight UTC; clicks are ordered by ``timeframe``
  (``int(...)``), ties keeping file order.
- Yoochoose ``yoochoose-clicks.dat`` (no header: ``session_id,timestamp,item_id,
  category``; a first line starting with ``session_id`` is taken as a header, as
  the reference's ``csv.DictReader`` needs one): the row's date is the first 19
  characters of ``timestamp`` (``%Y-%m-%dT%H:%M:%S``; milliseconds and ``Z`` are
  ignored, as in the reference); clicks keep file order (the reference's quirk).
- Generic delimited files: session, item and time columns by header name or
  0-based index; the time is epoch seconds (digits, optionally with a fraction)
  or ISO-8601 text (``datetime.fromisoformat``; naive times are UTC, offsets are
  converted); the row's date is the time floored to whole seconds and clicks are
  ordered by time (microseconds), ties keeping file order. ``where`` keeps only
  the rows whose named columns hold the given text (e.g. ``{"event": "view"}``);
  the others are counted as filtered, not malformed.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Union

import numpy as np

RawId = Union[int, str]
Column = Union[int, str]

MALFORMED_EXAMPLES = 20
_CHUNK_BYTES = 32 << 20
_MAX_FAST_DIGITS = 18  # 18 decimal digits always fit int64
_MAX_FAST_EPOCH_DIGITS = 12  # epoch seconds whose microseconds still fit int64
_NEWLINE, _CR, _QUOTE = 10, 13, 34
_ZERO = 48
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_PLAIN_INT = re.compile(r"(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Malformed:
    """A line left out of the log: its 1-based line number and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class SourceReport:
    """What reading a file found: its path and sha256, valid clicks, lines left out and why."""

    path: str
    sha256: str
    clicks: int
    malformed_count: int
    malformed: tuple[Malformed, ...]
    filtered_rows: int
    blank_lines: int


@dataclass(frozen=True, eq=False)
class ClickLog:
    """The valid clicks of a file, in file order: R clicks, S sessions.

    ``sessions: int32[R]`` session numbers 0..S-1 in order of first appearance;
    ``items: int32[R]`` indices into ``item_ids`` (the distinct raw item ids);
    ``session_dates: int64[S]`` UTC epoch seconds, each from the session's last row in file order;
    ``order: int64[R]`` within-session sort key, or None to keep file order.
    (Codes are int64 instead of int32 from 2**31 clicks on.)
    """

    sessions: np.ndarray
    items: np.ndarray
    item_ids: list[RawId]
    session_dates: np.ndarray
    order: np.ndarray | None
    report: SourceReport

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def n_sessions(self) -> int:
        return len(self.session_dates)


def read_diginetica(path: str | Path, *, chunk_bytes: int = _CHUNK_BYTES) -> ClickLog:
    """Read a Diginetica ``train-item-views.csv`` (``;``-separated, with a header)."""
    header = _header_fields(path, ";")
    if header is None:
        raise ValueError(f"{path} is empty; a Diginetica file starts with a header line")
    columns = _named_columns(
        path, header, {"session": "session_id", "item": "item_id", "timeframe": "timeframe", "date": "eventdate"}
    )
    layout = _Layout(b";", len(header), columns["session"], columns["item"], ())
    clock = _DigineticaClock(columns["timeframe"], columns["date"])
    return _read(path, layout, clock, skip_header=True, chunk_bytes=chunk_bytes)


def read_yoochoose(path: str | Path, *, chunk_bytes: int = _CHUNK_BYTES) -> ClickLog:
    """Read a Yoochoose ``yoochoose-clicks.dat`` (``session_id,timestamp,item_id,category``)."""
    header = _header_fields(path, ",")
    has_header = header is not None and header[:1] == ["session_id"]
    if has_header:
        columns = _named_columns(path, header, {"session": "session_id", "item": "item_id", "time": "timestamp"})
        n_fields = len(header)
    else:
        columns, n_fields = {"session": 0, "time": 1, "item": 2}, 4
    layout = _Layout(b",", n_fields, columns["session"], columns["item"], ())
    return _read(path, layout, _YoochooseClock(columns["time"]), skip_header=has_header, chunk_bytes=chunk_bytes)


def read_csv(
    path: str | Path,
    *,
    session: Column,
    item: Column,
    time: Column,
    delimiter: str = ",",
    header: bool = True,
    where: Mapping[Column, str] | None = None,
    chunk_bytes: int = _CHUNK_BYTES,
) -> ClickLog:
    """Read a delimited click log with session, item and time columns (names or 0-based indices).

    With ``header=False`` columns must be indices and the field count is that of the
    first line. ``where`` maps columns to the text a kept row must hold there.
    """
    if not isinstance(delimiter, str) or len(delimiter.encode()) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"delimiter must be one ASCII character other than a quote or newline, not {delimiter!r}")
    first = _header_fields(path, delimiter)
    if first is None:
        raise ValueError(f"{path} is empty")
    conditions = dict(where or {})
    wanted: dict[str, Column] = {"session": session, "item": item, "time": time}
    wanted.update({f"where {column!r}": column for column in conditions})
    resolved = {}
    for role, column in wanted.items():
        if isinstance(column, bool) or not isinstance(column, (int, str)):
            raise TypeError(f"the {role} column must be a header name or a 0-based index, not {column!r}")
        if isinstance(column, str):
            if not header:
                raise ValueError(f"the {role} column is named {column!r} but header=False; give a 0-based index")
            resolved[role] = _named_columns(path, first, {role: column})[role]
        elif not 0 <= column < len(first):
            raise ValueError(
                f"the {role} column index {column} is outside 0..{len(first) - 1} "
                f"(line 1 of {path} has {len(first)} fields)"
            )
        else:
            resolved[role] = column
    for column, value in conditions.items():
        if not isinstance(value, str):
            raise TypeError(f"where[{column!r}] must be the text to keep, not {value!r}")
    filters = tuple((resolved[f"where {column!r}"], value) for column, value in conditions.items())
    layout = _Layout(delimiter.encode(), len(first), resolved["session"], resolved["item"], filters)
    return _read(path, layout, _FlexibleClock(resolved["time"]), skip_header=header, chunk_bytes=chunk_bytes)


# ----------------------------------------------------------------------------------------------
# file layout and chunked parsing


@dataclass(frozen=True)
class _Layout:
    delimiter: bytes
    n_fields: int
    session: int
    item: int
    filters: tuple[tuple[int, str], ...]


class _RowError(ValueError):
    """Why one line is malformed."""


def _header_fields(path: str | Path, delimiter: str) -> list[str] | None:
    """The fields of the first line of ``path`` (without a BOM), None if the file is empty."""
    with open(path, "rb") as f:
        line = f.readline()
    if not line:
        return None
    text = line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    return next(csv.reader([text], delimiter=delimiter), [])


def _named_columns(path: str | Path, header: list[str], names: Mapping[str, str]) -> dict[str, int]:
    stripped = [name.strip() for name in header]
    found = {}
    for role, name in names.items():
        if name not in stripped:
            raise ValueError(f"{path}: the header {header} has no column {name!r} (wanted for the {role})")
        found[role] = stripped.index(name)
    return found


def _chunks(path: str | Path, chunk_bytes: int, hasher) -> Iterator[bytes]:
    """The file in pieces that end at a newline (the last one gets a newline added)."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
    carry = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            hasher.update(block)
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut]
            carry = data[cut:]
    if carry:
        yield carry + b"\n"


class _IdTable:
    """Id values: a plain integer is itself, any other text gets a negative code -1, -2, ..."""

    def __init__(self) -> None:
        self.texts: dict[str, int] = {}

    def value(self, text: str, what: str) -> int:
        if not text:
            raise _RowError(f"the {what} id is empty")
        if _PLAIN_INT.fullmatch(text) and len(text) <= 19 and int(text) < 2**63:
            return int(text)
        return self.texts.setdefault(text, -len(self.texts) - 1)


class _Collector:
    """Chunk results in file order, kept compact, and the malformed-line report.

    Sessions are kept as runs of equal consecutive values (value, length, date of
    the run's last row); items as each chunk's distinct values and int32 codes."""

    def __init__(self, keep_order: bool) -> None:
        self.runs: dict[str, list[np.ndarray]] = {"value": [], "length": [], "date": []}
        self.item_values: list[np.ndarray] = []
        self.item_codes: list[np.ndarray] = []
        self.order: list[np.ndarray] | None = [] if keep_order else None
        self.malformed_count = 0
        self.malformed: list[Malformed] = []
        self.filtered = 0
        self.blank = 0

    def reject(self, line: int, reason: str) -> None:
        self.malformed_count += 1
        if len(self.malformed) < MALFORMED_EXAMPLES:
            self.malformed.append(Malformed(line, reason))

    def add(self, session: np.ndarray, item: np.ndarray, date: np.ndarray, order: np.ndarray) -> None:
        """Valid rows of one chunk, in file order (int64 arrays)."""
        if not len(session):
            return
        run_starts = np.flatnonzero(np.concatenate(([True], session[1:] != session[:-1])))
        run_ends = np.append(run_starts[1:], len(session))
        self.runs["value"].append(session[run_starts])
        self.runs["length"].append(run_ends - run_starts)
        self.runs["date"].append(date[run_ends - 1])
        values, codes = np.unique(item, return_inverse=True)
        self.item_values.append(values)
        self.item_codes.append(codes.astype(np.int32))
        if self.order is not None:
            self.order.append(order)

    def click_log(self, item_texts: dict[str, int], path: str, sha256: str) -> ClickLog:
        report = SourceReport(
            path=path,
            sha256=sha256,
            clicks=sum(len(codes) for codes in self.item_codes),
            malformed_count=self.malformed_count,
            malformed=tuple(self.malformed),
            filtered_rows=self.filtered,
            blank_lines=self.blank,
        )
        runs = {key: _concatenate(parts) for key, parts in self.runs.items()}
        self.runs.clear()
        n_clicks = int(runs["length"].sum())
        code_type = np.int32 if n_clicks < 2**31 else np.int64
        # Sessions: number them by first run, date them by last run.
        _, first_run, run_session = np.unique(runs["value"], return_index=True, return_inverse=True)
        number = np.empty(len(first_run), dtype=np.int64)
        number[np.argsort(first_run, kind="stable")] = np.arange(len(first_run), dtype=np.int64)
        run_session = number[run_session]
        last_run = np.full(len(first_run), -1, dtype=np.int64)
        np.maximum.at(last_run, run_session, np.arange(len(run_session), dtype=np.int64))
        sessions = np.repeat(run_session.astype(code_type), runs["length"])
        # Items: one numbering over the chunks' distinct values.
        distinct = np.unique(np.concatenate(self.item_values)) if self.item_values else np.zeros(0, np.int64)
        items = np.empty(n_clicks, dtype=code_type)
        done = 0
        for values, codes in zip(self.item_values, self.item_codes):
            items[done : done + len(codes)] = np.searchsorted(distinct, values).astype(code_type)[codes]
            done += len(codes)
        self.item_values.clear()
        self.item_codes.clear()
        texts = {code: text for text, code in item_texts.items()}
        return ClickLog(
            sessions=sessions,
            items=items,
            item_ids=[texts[int(value)] if value < 0 else int(value) for value in distinct],
            session_dates=runs["date"][last_run],
            order=None if self.order is None else _concatenate(self.order),
            report=report,
        )


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _read(path: str | Path, layout: _Layout, clock, *, skip_header: bool, chunk_bytes: int) -> ClickLog:
    sessions, items = _IdTable(), _IdTable()
    collector = _Collector(keep_order=clock.orders)
    hasher = hashlib.sha256()
    line = 1
    for data in _chunks(path, chunk_bytes, hasher):
        if skip_header:
            data = data[data.index(b"\n") + 1 :]
            skip_header, line = False, 2
        line = _parse_chunk(data, line, layout, clock, sessions, items, collector)
    return collector.click_log(items.texts, str(Path(path).absolute()), hasher.hexdigest())


def _parse_chunk(
    data: bytes, first_line: int, layout: _Layout, clock, sessions: _IdTable, items: _IdTable, out: _Collector
) -> int:
    """Parse the complete lines of ``data`` (numbered from ``first_line``); returns the next line number."""
    buf = np.frombuffer(data, dtype=np.uint8)
    is_newline = buf == _NEWLINE
    separators = np.flatnonzero(is_newline | (buf == layout.delimiter[0]))
    line_ends_at = np.flatnonzero(is_newline[separators])  # index in separators of each line's newline
    n_lines = len(line_ends_at)
    if n_lines == 0:
        return first_line
    ends = separators[line_ends_at]
    starts = np.empty(n_lines, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR)
    ends = ends - has_cr
    fast = np.diff(line_ends_at, prepend=-1) == layout.n_fields
    quotes = np.flatnonzero(buf == _QUOTE)
    if quotes.size:
        fast[np.searchsorted(ends, quotes)] = False

    rows = np.flatnonzero(fast)
    first_separator = line_ends_at[rows] - layout.n_fields + 1
    with_start = np.concatenate(([-1], separators))

    def field(column: int) -> tuple[np.ndarray, np.ndarray]:
        index = first_separator + column
        field_end = separators[index]
        if column == layout.n_fields - 1:
            field_end = field_end - has_cr[rows]
        return with_start[index] + 1, field_end

    keep = np.ones(len(rows), dtype=bool)
    for column, value in layout.filters:
        keep &= _equals(buf, *field(column), value.encode())
    filtered = np.zeros(n_lines, dtype=bool)
    filtered[rows[~keep]] = True
    session_ok, session_value = _digits(buf, *field(layout.session), canonical=True)
    item_ok, item_value = _digits(buf, *field(layout.item), canonical=True)
    time_ok, date, order = clock.fast(buf, field)
    good = keep & session_ok & item_ok & time_ok

    valid = np.zeros(n_lines, dtype=bool)
    valid[rows[good]] = True
    columns = {key: np.zeros(n_lines, dtype=np.int64) for key in ("session", "item", "date", "order")}
    for key, values in (("session", session_value), ("item", item_value), ("date", date), ("order", order)):
        if values is not None:
            columns[key][rows[good]] = values[good]

    delimiter = layout.delimiter.decode()
    for line in np.flatnonzero(~valid & ~filtered):
        number = first_line + int(line)
        raw = data[starts[line] : ends[line]]
        if not raw:
            out.blank += 1
            continue
        try:
            text = raw.decode("utf-8")
            fields = next(csv.reader([text], delimiter=delimiter))
            if len(fields) != layout.n_fields:
                raise _RowError(f"expected {layout.n_fields} fields, found {len(fields)}")
            if any(fields[column] != value for column, value in layout.filters):
                out.filtered += 1
                continue
            values = (
                sessions.value(fields[layout.session], "session"),
                items.value(fields[layout.item], "item"),
                *clock.slow(fields),
            )
        except UnicodeDecodeError as exc:
            out.reject(number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        except (_RowError, csv.Error) as exc:
            out.reject(number, str(exc))
            continue
        for key, value in zip(("session", "item", "date", "order"), values):
            columns[key][line] = value
        valid[line] = True
    out.filtered += int(np.count_nonzero(filtered))
    out.add(*(values[valid] for values in columns.values()))
    return first_line + n_lines


# ----------------------------------------------------------------------------------------------
# vectorised field parsers: buf is the chunk's bytes (uint8), starts/ends are int64 field bounds


def _at(buf: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Bytes at ``positions`` (uint8; positions clipped into the buffer, callers check lengths)."""
    return buf[np.clip(positions, 0, len(buf) - 1)]


def _equals(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, value: bytes) -> np.ndarray:
    """bool[n]: the field is exactly ``value``."""
    same = (ends - starts) == len(value)
    for offset, byte in enumerate(value):
        same &= _at(buf, starts + offset) == byte
    return same


def _digits(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, canonical: bool, max_digits: int = _MAX_FAST_DIGITS
) -> tuple[np.ndarray, np.ndarray]:
    """(ok: bool[n], value: int64[n]) of fields made of 1..max_digits ASCII digits;
    ``canonical`` also rejects leading zeros (``"0"`` itself is fine)."""
    length = ends - starts
    ok = (length >= 1) & (length <= max_digits)
    value = np.zeros(len(starts), dtype=np.int64)
    width = int(length[ok].max()) if ok.any() else 0
    for offset in range(width, 0, -1):  # right-aligned: positions before a field's start count as 0
        position = ends - offset
        digit = _at(buf, position) - np.uint8(_ZERO)  # non-digits wrap above 9
        digit *= position >= starts
        ok &= digit <= 9
        value *= 10
        value += digit
    if canonical:
        ok &= (length == 1) | (_at(buf, starts) != _ZERO)
    value *= ok
    return ok, value


def _fixed(buf: np.ndarray, positions: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(ok, value) of exactly ``width`` digits starting at ``positions``."""
    return _digits(buf, positions, positions + width, canonical=False)


def _is(buf: np.ndarray, positions: np.ndarray, byte: str) -> np.ndarray:
    return _at(buf, positions) == ord(byte)


def _date_at(buf: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ok, days since 1970-01-01) of ``YYYY-MM-DD`` at ``starts`` (a valid Gregorian date)."""
    year_ok, year = _fixed(buf, starts, 4)
    month_ok, month = _fixed(buf, starts + 5, 2)
    day_ok, day = _fixed(buf, starts + 8, 2)
    ok = year_ok & month_ok & day_ok & _is(buf, starts + 4, "-") & _is(buf, starts + 7, "-")
    ok &= (year >= 1) & (month >= 1) & (month <= 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    ok &= (day >= 1) & (day <= month_days)
    return ok, _days_from_civil(year, month, day)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (int64 arrays)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _time_at(buf: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ok, seconds since midnight) of ``HH:MM:SS`` at ``starts``."""
    hour_ok, hour = _fixed(buf, starts, 2)
    minute_ok, minute = _fixed(buf, starts + 3, 2)
    second_ok, second = _fixed(buf, starts + 6, 2)
    ok = hour_ok & minute_ok & second_ok & _is(buf, starts + 2, ":") & _is(buf, starts + 5, ":")
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    return ok, hour * 3600 + minute * 60 + second


# ----------------------------------------------------------------------------------------------
# clocks: how a row's date (UTC epoch seconds) and within-session order key are read


def _strptime_utc(text: str, pattern: str, what: str) -> int:
    try:
        return calendar.timegm(time.strptime(text, pattern))
    except ValueError:
        raise _RowError(f"{what} {text!r} does not match {pattern}") from None


class _DigineticaClock:
    """Order by ``int(timeframe)``; date = ``eventdate`` (``%Y-%m-%d``) at midnight UTC."""

    orders = True

    def __init__(self, timeframe: int, date: int):
        self.timeframe, self.date = timeframe, date

    def fast(self, buf, field):
        timeframe_ok, timeframe = _digits(buf, *field(self.timeframe), canonical=False)
        starts, ends = field(self.date)
        date_ok, days = _date_at(buf, starts)
        return timeframe_ok & date_ok & (ends - starts == 10), days * 86400, timeframe

    def slow(self, fields: list[str]) -> tuple[int, int]:
        text = fields[self.timeframe]
        try:
            timeframe = int(text)
        except ValueError:
            raise _RowError(f"timeframe {text!r} is not an integer") from None
        if not -(2**63) <= timeframe < 2**63:
            raise _RowError(f"timeframe {text!r} does not fit in 64 bits")
        return _strptime_utc(fields[self.date], "%Y-%m-%d", "eventdate"), timeframe


class _YoochooseClock:
    """File order; date = the first 19 characters of the timestamp (``%Y-%m-%dT%H:%M:%S``), UTC."""

    orders = False

    def __init__(self, column: int):
        self.column = column

    def fast(self, buf, field):
        starts, ends = field(self.column)
        date_ok, days = _date_at(buf, starts)
        time_ok, seconds = _time_at(buf, starts + 11)
        ok = date_ok & time_ok & _is(buf, starts + 10, "T") & (ends - starts >= 19)
        return ok, days * 86400 + seconds, None

    def slow(self, fields: list[str]) -> tuple[int]:
        return (_strptime_utc(fields[self.column][:19], "%Y-%m-%dT%H:%M:%S", "timestamp"),)


class _FlexibleClock:
    """Epoch seconds or ISO-8601 text; order = microseconds, date = whole seconds (floor)."""

    orders = True

    def __init__(self, column: int):
        self.column = column

    def fast(self, buf, field):
        starts, ends = field(self.column)
        length = ends - starts
        epoch_ok, epoch = _digits(buf, starts, ends, canonical=False, max_digits=_MAX_FAST_EPOCH_DIGITS)
        date_ok, days = _date_at(buf, starts)
        time_ok, seconds = _time_at(buf, starts + 11)
        separator = _at(buf, starts + 10)
        time_ok &= date_ok & ((separator == ord("T")) | (separator == ord(" "))) & (length >= 19)
        # After HH:MM:SS: nothing, or "." and 1..9 digits; then an optional "Z".
        body_end = ends - _is(buf, ends - 1, "Z")
        fraction_ok, fraction = _digits(buf, starts + 20, body_end, canonical=False, max_digits=9)
        fraction_digits = body_end - starts - 20
        fraction_ok &= _is(buf, starts + 19, ".")
        plain = body_end - starts == 19
        time_ok &= plain | fraction_ok
        micro = np.where(
            fraction_ok & ~plain,
            fraction * 10 ** np.clip(6 - fraction_digits, 0, 6) // 10 ** np.clip(fraction_digits - 6, 0, 3),
            0,
        )
        day_only = date_ok & (length == 10)
        ok = epoch_ok | time_ok | day_only
        date = np.where(epoch_ok, epoch, days * 86400 + np.where(time_ok, seconds, 0))
        return ok, date, date * 1_000_000 + np.where(time_ok, micro, 0)

    def slow(self, fields: list[str]) -> tuple[int, int]:
        text = fields[self.column].strip()
        if _DECIMAL.fullmatch(text):
            try:
                micro = int((Decimal(text) * 1_000_000).to_integral_value(rounding=ROUND_FLOOR))
            except InvalidOperation:
                raise _RowError(f"time {text!r} is not a number of seconds") from None
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _RowError(f"time {text!r} is neither epoch seconds nor ISO-8601") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            micro = (moment - _EPOCH) // _MICROSECOND
        if not -(2**63) <= micro < 2**63:
            raise _RowError(f"time {text!r} is out of range")
        return micro // 1_000_000, micro
