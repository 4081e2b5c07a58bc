"""Click-log readers on pyarrow: Diginetica, Yoochoose, any delimited file or Parquet -> ``ClickLog``.

pyarrow's streaming CSV reader (``pyarrow.csv.open_csv``) and Parquet reader
(``ParquetFile.iter_batches``) tokenise the file block by block, so memory is
bounded by the block size and the compact per-click arrays, never by the file.
Fields are converted with ``pyarrow.compute``; the few values the vectorised
path cannot take as they are (unpadded dates, time-zone offsets, ids of 19
digits) are parsed again one by one in Python, and a row that fails there too
is malformed: it is left out, counted, and the first ``MALFORMED_EXAMPLES`` are
reported with their line number (1-based, header and blank lines included; for
Parquet the 1-based row number) and the reason. Blank lines are skipped and
counted. A record is one line (``\\n``, ``\\r\\n`` or a lone ``\\r`` ends it); a
quoted field may hold the delimiter, not a line break. A UTF-8 byte-order mark
at the start of the file is ignored, with or without a header.

Ids. Session and item ids are compared as their text, as the SR-GNN reference
does (``"07"`` and ``"7"`` are different items), after removing surrounding
whitespace. A plain non-negative integer without leading zeros (below 2**63)
becomes an ``int`` raw id, any other text (``"P-12"``, ``"007"``, ``"-3"``) a
``str``; an empty id, or one holding a NUL or other control character, is
malformed. Parquet integer columns are ids as they are.

Dates are UTC epoch seconds; the session date is taken from the session's last
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
- Generic delimited files and Parquet: session, item and time columns by name
  (or, in headerless files, 0-based index); the time is an epoch number in
  ``time_unit`` (``"s"``, ``"ms"``, ``"us"`` or ``"ns"``; ``"auto"`` picks it
  from the magnitude of the first values: ms from 1e11, us from 1e14, ns from
  1e17 — seconds that large are past the year 5000), ISO-8601 text
  (``datetime.fromisoformat``; naive times are UTC, offsets are converted) or,
  in Parquet, a timestamp or date column. The row's date is the time floored to
  whole seconds, and clicks are ordered by time (microseconds), ties keeping
  file order. A time outside the years 1..9999 is malformed, with its line.
  ``where`` keeps only the rows whose named columns hold the given text (e.g.
  ``{"event": "view"}``); the others are counted as filtered, not malformed.
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
import pyarrow as pa
import pyarrow.compute as pc

RawId = Union[int, str]
Column = Union[int, str]

MALFORMED_EXAMPLES = 20
TIME_UNITS = ("auto", "s", "ms", "us", "ns")
_BLOCK_BYTES = 16 << 20
_MIN_ARROW_BLOCK = 1 << 20  # pyarrow's block must hold a whole line
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}
_AUTO_UNIT_FROM = (("ns", 1e17), ("us", 1e14), ("ms", 1e11))
_PLAIN_INT = re.compile(r"(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_FAST_INT = r"^(?:0|[1-9][0-9]{0,17})$"  # canonical ints that always fit int64
_FAST_SIGNED = r"^[+-]?[0-9]{1,18}$"
_CONTROL = r"[\x00-\x1f\x7f]"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_MIN_MICROS = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND
_MAX_MICROS = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class Malformed:
    """A line (or Parquet row) left out of the log: its 1-based number and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class SourceReport:
    """What reading a file found: its path and sha256, valid clicks, lines left out and why,
    and the epoch unit the time column was read in (None when the times were not numbers)."""

    path: str
    sha256: str
    clicks: int
    malformed_count: int
    malformed: tuple[Malformed, ...]
    filtered_rows: int
    blank_lines: int
    time_unit: str | None = None


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


def read_diginetica(path: str | Path, *, block_bytes: int = _BLOCK_BYTES) -> ClickLog:
    """Read a Diginetica ``train-item-views.csv`` (``;``-separated, with a header)."""
    source = _Source(path, ";", header=True, block_bytes=block_bytes)
    if source.first_fields is None:
        raise ValueError(f"{path} is empty; a Diginetica file starts with a header line")
    columns = source.named({"session": "session_id", "item": "item_id", "timeframe": "timeframe",
                            "date": "eventdate"})
    return _read(source, columns, _DigineticaClock())


def read_yoochoose(path: str | Path, *, block_bytes: int = _BLOCK_BYTES) -> ClickLog:
    """Read a Yoochoose ``yoochoose-clicks.dat`` (``session_id,timestamp,item_id,category``)."""
    probe = _Source(path, ",", header=False, block_bytes=block_bytes)
    if probe.first_fields is not None and probe.first_fields[:1] == ["session_id"]:
        source = _Source(path, ",", header=True, block_bytes=block_bytes)
        columns = source.named({"session": "session_id", "item": "item_id", "time": "timestamp"})
    else:
        source = _Source(path, ",", header=False, block_bytes=block_bytes, n_fields=4)
        columns = {"session": 0, "time": 1, "item": 2}
    return _read(source, columns, _YoochooseClock())


def read_csv(
    path: str | Path,
    *,
    session: Column,
    item: Column,
    time: Column,
    delimiter: str = ",",
    header: bool = True,
    where: Mapping[Column, str] | None = None,
    time_unit: str = "auto",
    block_bytes: int = _BLOCK_BYTES,
) -> ClickLog:
    """Read a delimited click log with session, item and time columns (names or 0-based indices).

    With ``header=False`` columns must be indices and the field count is that of the
    first line. ``where`` maps columns to the text a kept row must hold there.
    ``time_unit``: the unit of numeric times (module docstring).
    """
    if not isinstance(delimiter, str) or len(delimiter.encode()) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"delimiter must be one ASCII character other than a quote or newline, not {delimiter!r}")
    _check_time_unit(time_unit)
    source = _Source(path, delimiter, header=header, block_bytes=block_bytes)
    if source.first_fields is None:
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
            resolved[role] = source.named({role: column})[role]
        elif not 0 <= column < len(source.first_fields):
            raise ValueError(
                f"the {role} column index {column} is outside 0..{len(source.first_fields) - 1} "
                f"(line 1 of {path} has {len(source.first_fields)} fields)"
            )
        else:
            resolved[role] = column
    for column, value in conditions.items():
        if not isinstance(value, str):
            raise TypeError(f"where[{column!r}] must be the text to keep, not {value!r}")
    filters = {resolved[f"where {column!r}"]: value for column, value in conditions.items()}
    columns = {"session": resolved["session"], "item": resolved["item"], "time": resolved["time"]}
    return _read(source, columns, _FlexibleClock(time_unit), filters)


def read_parquet(
    path: str | Path,
    *,
    session: str,
    item: str,
    time: str,
    where: Mapping[str, str] | None = None,
    time_unit: str = "auto",
    batch_rows: int = 1 << 20,
) -> ClickLog:
    """Read a Parquet click log: session, item and time columns by name, streamed in row batches.

    Id columns may be integers or text; the time column epoch numbers (``time_unit``),
    ISO-8601 text, timestamps or dates. ``where`` as in ``read_csv``. Malformed rows are
    reported by 1-based row number.
    """
    import pyarrow.parquet as pq

    _check_time_unit(time_unit)
    path = Path(path)
    _check_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    names = parquet.schema_arrow.names
    conditions = dict(where or {})
    for role, name in [("session", session), ("item", item), ("time", time)] + [
        (f"where {name!r}", name) for name in conditions
    ]:
        if not isinstance(name, str):
            raise TypeError(f"the {role} column of a Parquet file must be a column name, not {name!r}")
        if name not in names:
            raise ValueError(f"{path}: the columns {names} have no column {name!r} (wanted for the {role})")
    for name, value in conditions.items():
        if not isinstance(value, str):
            raise TypeError(f"where[{name!r}] must be the text to keep, not {value!r}")
    wanted = list(dict.fromkeys([session, item, time, *conditions]))
    clock = _FlexibleClock(time_unit)
    state = _State(keep_order=True)
    first_row = 1
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
        lines = np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
        first_row += batch.num_rows
        fields = {role: batch.column(name) for role, name in (("session", session), ("item", item), ("time", time))}
        filters = {name: (batch.column(name), value) for name, value in conditions.items()}
        _convert_batch(fields, filters, lines, clock, state)
    return state.click_log(str(path.absolute()), _sha256(path), clock.unit)


# ----------------------------------------------------------------------------------------------
# delimited files: the line structure, then pyarrow's streaming reader


def _check_time_unit(time_unit: str) -> None:
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {TIME_UNITS}, not {time_unit!r}")


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a click log file")
    if not path.is_file():
        raise FileNotFoundError(f"click log {path} does not exist")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


class _Source:
    """A delimited file: its first line's fields, its sha256 and blank lines (one streaming
    pass), and a pyarrow reader over it. Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``."""

    def __init__(self, path: str | Path, delimiter: str, *, header: bool, block_bytes: int,
                 n_fields: int | None = None):
        if isinstance(block_bytes, bool) or not isinstance(block_bytes, int) or block_bytes < 1:
            raise ValueError(f"block_bytes must be a positive int, not {block_bytes!r}")
        self.path = Path(path)
        _check_file(self.path)
        self.delimiter, self.header, self.block_bytes = delimiter, header, block_bytes
        self.first_fields = self._first_fields()
        self.n_fields = n_fields if n_fields is not None or self.first_fields is None else len(self.first_fields)
        self.sha256, self.blank = self._scan()

    def _first_fields(self) -> list[str] | None:
        with open(self.path, "rb") as f:
            head = f.read(1 << 16)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        if not head.strip(b"\r\n"):
            return None
        line = re.split(rb"\r\n|\r|\n", head, maxsplit=1)[0]
        if b"\x00" in line:
            raise ValueError(f"{self.path} holds NUL bytes in its first line: it is not a text click log")
        return next(csv.reader([line.decode("utf-8", errors="replace")], delimiter=self.delimiter), [])

    def _scan(self) -> tuple[str, np.ndarray]:
        """sha256 of the file and the 1-based numbers of its blank lines (int64, ascending)."""
        digest = hashlib.sha256()
        blank: list[np.ndarray] = []
        line, partial, carry = 1, False, b""  # partial: the current line already has content
        with open(self.path, "rb") as f:
            while True:
                block = f.read(self.block_bytes)
                digest.update(block)
                data = carry + block
                # A \r at the end of a block may start a \r\n: keep it for the next one.
                carry = b"\r" if block and data.endswith(b"\r") else b""
                if carry:
                    data = data[:-1]
                if not data:
                    if not block:
                        break
                    continue
                array = np.frombuffer(data, dtype=np.uint8)
                cr, lf = array == 13, array == 10
                next_lf = np.zeros(len(array), dtype=bool)
                next_lf[:-1] = lf[1:]
                after_cr = np.zeros(len(array), dtype=bool)
                after_cr[1:] = cr[:-1]
                crlf = cr & next_lf
                starts = np.flatnonzero(crlf | (lf & ~after_cr) | (cr & ~next_lf))
                if len(starts):
                    ends = starts + np.where(crlf[starts], 2, 1)
                    empty = starts == np.concatenate(([0], ends[:-1]))
                    empty[0] &= not partial
                    blank.append(line + np.flatnonzero(empty))
                    line += len(starts)
                    partial = int(ends[-1]) < len(array)
                else:
                    partial = True
                if not block:
                    break
        self.n_lines = line - 1 + partial
        numbers = np.concatenate(blank).astype(np.int64) if blank else np.zeros(0, np.int64)
        if self.header:
            numbers = numbers[numbers > 1]
        return digest.hexdigest(), numbers

    def named(self, names: Mapping[str, str]) -> dict[str, int]:
        """0-based indices of header columns, by their (whitespace-stripped) names."""
        stripped = [name.strip() for name in self.first_fields or []]
        found = {}
        for role, name in names.items():
            if name not in stripped:
                raise ValueError(
                    f"{self.path}: the header {self.first_fields} has no column {name!r} (wanted for the {role})"
                )
            found[role] = stripped.index(name)
        return found

    def batches(self, indices: list[int], rejected: list[tuple[int, str]]) -> Iterator[pa.RecordBatch]:
        """Record batches of the columns ``indices`` (binary), in file order; rows with a wrong
        field count go to ``rejected`` as (line, reason)."""
        import pyarrow.csv as pcsv

        names = [f"f{i}" for i in range(self.n_fields)]
        if self.n_lines <= int(self.header):
            return

        def invalid(row) -> str:
            if row.actual_columns > 1 or (row.text or "").strip("\r\n"):
                rejected.append((row.number, f"expected {row.expected_columns} fields, found {row.actual_columns}"))
            return "skip"

        reader = pcsv.open_csv(
            self.path,
            read_options=pcsv.ReadOptions(use_threads=False, block_size=max(self.block_bytes, _MIN_ARROW_BLOCK),
                                          column_names=names,
                                          skip_rows=1 if self.header else 0),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=invalid,
                                            ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(
                column_types={names[i]: pa.binary() for i in indices}, include_columns=[names[i] for i in indices],
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
        try:
            yield from reader
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{self.path} cannot be read as a {self.delimiter!r}-separated file: {exc}") from None


class _LineNumbers:
    """1-based line numbers of what pyarrow returns. pyarrow numbers rows among the non-blank
    lines (header included); rows with a wrong field count are reported with that number and
    skipped. ``blank`` holds the file's blank lines, ascending."""

    def __init__(self, first: int, blank: np.ndarray, rejected: list[tuple[int, str]]):
        self.first, self.blank, self.rejected = first, blank, rejected
        self.rows_seen = 0

    def next_batch(self, n_rows: int) -> np.ndarray:
        """int64[n_rows]: line numbers of the next ``n_rows`` returned rows."""
        skipped = np.fromiter((n for n, _ in self.rejected), np.int64, len(self.rejected))
        k = np.arange(self.rows_seen, self.rows_seen + n_rows, dtype=np.int64)
        self.rows_seen += n_rows
        return self.physical(_fixed_point(self.first + k, np.sort(skipped)))

    def physical(self, numbers: np.ndarray) -> np.ndarray:
        """Line numbers of non-blank-line numbers (int64, ascending)."""
        return _fixed_point(numbers, self.blank)


def _fixed_point(base: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """The numbers ``x = base + (entries of skipped <= x)``: ``base`` counts only the lines not in
    ``skipped`` (both ascending); returns their numbers among all lines."""
    numbers = base
    while True:
        moved = base + np.searchsorted(skipped, numbers, side="right")
        if np.array_equal(moved, numbers):
            return numbers
        numbers = moved


def _read(source: _Source, columns: Mapping[str, int], clock, filters: Mapping[int, str] | None = None) -> ClickLog:
    filters = dict(filters or {})
    indices = sorted(set(columns.values()) | set(filters))
    rejected: list[tuple[int, str]] = []
    state = _State(keep_order=clock.orders)
    if source.first_fields is not None:
        numbers = _LineNumbers(2 if source.header else 1, source.blank, rejected)
        for batch in source.batches(indices, rejected):
            lines = numbers.next_batch(batch.num_rows)
            fields = {role: batch.column(f"f{index}") for role, index in columns.items()}
            chosen = {index: (batch.column(f"f{index}"), value) for index, value in filters.items()}
            _convert_batch(fields, chosen, lines, clock, state)
    if rejected:
        lines = numbers.physical(np.array([n for n, _ in rejected], dtype=np.int64))
        for line, (_, reason) in zip(lines.tolist(), rejected):
            state.reject(line, reason)
    state.blank = len(source.blank)
    return state.click_log(str(source.path.absolute()), source.sha256, getattr(clock, "unit", None))


# ----------------------------------------------------------------------------------------------
# one batch: ids and times -> int64 columns; the rows that fail are malformed


class _RowError(ValueError):
    """Why one row is malformed."""


def _texts(array: pa.Array, bad: np.ndarray, reasons: dict[int, str], what: str) -> pa.Array:
    """``array`` (binary or string) as whitespace-stripped strings; rows that are not valid UTF-8
    are marked in ``bad`` with a reason (and become empty strings)."""
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        try:
            array = array.cast(pa.string())
        except pa.ArrowInvalid:
            values = array.to_pylist()
            for row, value in enumerate(values):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    _mark(bad, reasons, row, f"the {what} is not valid UTF-8 ({exc.reason} at byte {exc.start})")
                    values[row] = b""
            array = pa.array(values, type=pa.binary()).cast(pa.string())
    elif not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(array, ""))


def _mark(bad: np.ndarray, reasons: dict[int, str], row: int, reason: str) -> None:
    if not bad[row]:
        bad[row] = True
        reasons[row] = reason


class _IdTable:
    """Id values: a plain integer is itself, any other text gets a negative code -1, -2, ..."""

    def __init__(self) -> None:
        self.texts: dict[str, int] = {}

    def values(self, array: pa.Array, bad: np.ndarray, reasons: dict[int, str], what: str) -> np.ndarray:
        """int64[n] id values of a column (integer, binary or string)."""
        n = len(array)
        if pa.types.is_integer(array.type):
            nulls = np.array(array.is_null(), dtype=bool)
            values = np.array(array.cast(pa.int64(), safe=False).fill_null(0), dtype=np.int64)
            for row in np.flatnonzero(nulls | (values < 0)):
                _mark(bad, reasons, row, f"the {what} id is {'missing' if nulls[row] else values[row]}")
            if pa.types.is_unsigned_integer(array.type):
                too_big = np.array(pc.greater(array, 2**63 - 1).fill_null(False), dtype=bool)
                for row in np.flatnonzero(too_big):
                    _mark(bad, reasons, row, f"the {what} id {array[row].as_py()} does not fit in 64 bits")
            return values
        text = _texts(array, bad, reasons, f"{what} id")
        values = np.zeros(n, dtype=np.int64)
        plain = np.array(pc.match_substring_regex(text, _FAST_INT), dtype=bool)
        if plain.any():
            values[plain] = np.array(pc.cast(pc.filter(text, pa.array(plain)), pa.int64()), dtype=np.int64)
        other = np.flatnonzero(~plain & ~bad)
        if len(other):
            empty = np.array(pc.equal(pc.utf8_length(text), 0), dtype=bool)
            control = np.array(pc.match_substring_regex(text, _CONTROL), dtype=bool)
            for row in other[empty[other]]:
                _mark(bad, reasons, row, f"the {what} id is empty")
            for row in other[control[other] & ~empty[other]]:
                _mark(bad, reasons, row, f"the {what} id {text[row].as_py()!r} holds a control character")
            rest = other[~empty[other] & ~control[other]]
            if len(rest):
                uniques = pc.unique(pc.take(text, pa.array(rest)))
                codes = np.fromiter((self._code(value) for value in uniques.to_pylist()), np.int64, len(uniques))
                values[rest] = codes[np.array(pc.index_in(pc.take(text, pa.array(rest)), uniques), dtype=np.int64)]
        return values

    def _code(self, text: str) -> int:
        if _PLAIN_INT.fullmatch(text) and len(text) <= 19 and int(text) < 2**63:
            return int(text)
        return self.texts.setdefault(text, -len(self.texts) - 1)


def _convert_batch(fields: Mapping[str, pa.Array], filters: Mapping, lines: np.ndarray, clock, state: "_State"):
    """Add one batch's rows: ``fields`` maps roles (session, item and the clock's) to columns;
    ``filters`` maps a key to (column, text a kept row holds)."""
    n = len(lines)
    if n == 0:
        return
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    keep = np.ones(n, dtype=bool)
    for column, value in filters.values():
        text = _texts(column, bad, reasons, "filter column")
        keep &= np.array(pc.equal(text, value), dtype=bool)
    bad &= keep
    reasons = {row: reason for row, reason in reasons.items() if keep[row]}
    session = state.sessions.values(fields["session"], bad, reasons, "session")
    item = state.items.values(fields["item"], bad, reasons, "item")
    date, order = clock.convert(fields, bad, reasons)
    for row in sorted(reasons):
        if keep[row]:
            state.reject(int(lines[row]), reasons[row])
    state.filtered += int(np.count_nonzero(~keep))
    good = keep & ~bad
    state.add(session[good], item[good], date[good], None if order is None else order[good])


# ----------------------------------------------------------------------------------------------
# clocks: how a row's date (UTC epoch seconds) and within-session order key are read


def _strptime_utc(text: str, pattern: str, what: str) -> int:
    try:
        return calendar.timegm(time.strptime(text, pattern))
    except ValueError:
        raise _RowError(f"{what} {text!r} does not match {pattern}") from None


def _parse_fixed(text: pa.Array, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """(ok: bool[n], epoch seconds: int64[n]) of ``text`` in ``pattern``, accepted only when
    formatting the result gives the text back (pyarrow's strptime rolls 2016-02-30 over)."""
    parsed = pc.strptime(text, format=pattern, unit="s", error_is_null=True)
    ok = np.array(pc.fill_null(pc.equal(pc.strftime(parsed, format=pattern), text), False), dtype=bool)
    seconds = np.array(pc.fill_null(parsed.cast(pa.int64()), 0), dtype=np.int64)
    return ok, seconds


def _slow_rows(ok: np.ndarray, bad: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~ok & ~bad)


def _dates(text: pa.Array, pattern: str, what: str, bad: np.ndarray, reasons: dict[int, str]) -> np.ndarray:
    """int64[n] epoch seconds of ``text`` in ``pattern``: vectorised, then one by one with Python's
    strptime (the reference's parser) where pyarrow's result does not give the text back; rows
    that fail there too are marked malformed."""
    ok, date = _parse_fixed(text, pattern)
    for row in _slow_rows(ok, bad):
        try:
            date[row] = _strptime_utc(text[row].as_py(), pattern, what)
        except _RowError as exc:
            _mark(bad, reasons, row, str(exc))
    return date


class _DigineticaClock:
    """Order by ``int(timeframe)``; date = ``eventdate`` (``%Y-%m-%d``) at midnight UTC."""

    orders = True

    def convert(self, fields, bad, reasons):
        timeframe = _texts(fields["timeframe"], bad, reasons, "timeframe")
        day = _texts(fields["date"], bad, reasons, "eventdate")
        fast = np.array(pc.match_substring_regex(timeframe, _FAST_SIGNED), dtype=bool)
        order = np.zeros(len(bad), dtype=np.int64)
        if fast.any():
            order[fast] = np.array(pc.cast(pc.filter(timeframe, pa.array(fast)), pa.int64()), dtype=np.int64)
        for row in _slow_rows(fast, bad):
            value = timeframe[row].as_py()
            try:
                number = int(value)
            except ValueError:
                _mark(bad, reasons, row, f"timeframe {value!r} is not an integer")
                continue
            if not -(2**63) <= number < 2**63:
                _mark(bad, reasons, row, f"timeframe {value!r} does not fit in 64 bits")
                continue
            order[row] = number
        return _dates(day, "%Y-%m-%d", "eventdate", bad, reasons), order


class _YoochooseClock:
    """File order; date = the first 19 characters of the timestamp (``%Y-%m-%dT%H:%M:%S``), UTC."""

    orders = False

    def convert(self, fields, bad, reasons):
        stamp = pc.utf8_slice_codeunits(_texts(fields["time"], bad, reasons, "timestamp"), 0, 19)
        return _dates(stamp, "%Y-%m-%dT%H:%M:%S", "timestamp", bad, reasons), None


class _FlexibleClock:
    """Epoch numbers in ``unit`` or ISO-8601 text (or Parquet timestamps / dates); order =
    microseconds, date = whole seconds (floor). ``unit`` "auto" is settled on the first numbers."""

    orders = True

    def __init__(self, unit: str):
        self.unit = None if unit == "auto" else unit

    def convert(self, fields, bad, reasons):
        column = fields["time"]
        n = len(bad)
        micro = np.zeros(n, dtype=np.int64)
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            values = column.cast(pa.timestamp("us", tz=getattr(column.type, "tz", None)))
            nulls = np.array(values.is_null(), dtype=bool)
            micro[:] = np.array(values.cast(pa.int64()).fill_null(0), dtype=np.int64)
            for row in np.flatnonzero(nulls):
                _mark(bad, reasons, row, "the time is missing")
            self.unit = self.unit or "timestamp"
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            self._numbers(np.array(column.cast(pa.float64()).fill_null(np.nan), dtype=np.float64),
                          column, micro, bad, reasons)
        else:
            text = _texts(column, bad, reasons, "time")
            self._text(text, micro, bad, reasons)
        outside = ((micro < _MIN_MICROS) | (micro > _MAX_MICROS)) & ~bad
        for row in np.flatnonzero(outside):
            _mark(bad, reasons, row, f"time {fields['time'][row].as_py()!r} is outside the years 1..9999"
                                     f" (read as {self.unit or 's'} since 1970)")
        return micro // 1_000_000, micro

    def _settle_unit(self, magnitudes: np.ndarray) -> str:
        if self.unit is None and len(magnitudes):
            median = float(np.median(np.abs(magnitudes)))
            self.unit = next((unit for unit, start in _AUTO_UNIT_FROM if median >= start), "s")
        return self.unit or "s"

    def _numbers(self, values: np.ndarray, column: pa.Array, micro, bad, reasons) -> None:
        """Numeric Parquet times: ints exactly, floats to the microsecond (floor)."""
        finite = np.isfinite(values)
        for row in np.flatnonzero(~finite):
            _mark(bad, reasons, row, f"time {column[row].as_py()!r} is not a number")
        unit = self._settle_unit(values[finite])
        if pa.types.is_integer(column.type):
            exact = np.array(column.cast(pa.int64(), safe=False).fill_null(0), dtype=np.int64)
            scaled = exact // 1_000 if unit == "ns" else exact * np.int64(_MICROS[unit])
            limit = np.iinfo(np.int64).max // _MICROS[unit]
            overflow = np.abs(exact) > limit
            scaled[overflow] = _MAX_MICROS + 1
            micro[:] = scaled
        else:
            scale = 1e-3 if unit == "ns" else float(_MICROS[unit])
            with np.errstate(invalid="ignore", over="ignore"):
                micro[:] = np.where(finite & (np.abs(values * scale) < 9e18), np.floor(values * scale), _MAX_MICROS + 1)

    def _text(self, text: pa.Array, micro, bad, reasons) -> None:
        """Epoch numbers or ISO-8601 text: common spellings vectorised, the rest one by one."""
        n = len(text)
        integer = np.array(pc.match_substring_regex(text, _FAST_SIGNED), dtype=bool)
        done = np.zeros(n, dtype=bool)
        if integer.any():
            numbers = np.array(pc.cast(pc.filter(text, pa.array(integer)), pa.int64()), dtype=np.int64)
            unit = self._settle_unit(numbers)
            if unit == "ns":
                scaled = numbers // 1_000
                fits = np.ones(len(numbers), dtype=bool)
            else:
                fits = np.abs(numbers) <= np.iinfo(np.int64).max // _MICROS[unit]
                scaled = numbers * np.int64(_MICROS[unit])
            scaled[~fits] = _MAX_MICROS + 1
            micro[integer] = scaled
            done |= integer
        # YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z] and YYYY-MM-DD
        body = pc.utf8_slice_codeunits(text, 0, 19)
        spaced = pc.replace_substring(body, " ", "T", max_replacements=1)
        seconds_ok, seconds = _parse_fixed(spaced, "%Y-%m-%dT%H:%M:%S")
        tail = pc.utf8_slice_codeunits(text, 19, 1 << 30)
        tail_ok = np.array(pc.match_substring_regex(tail, r"^(?:\.[0-9]{1,9})?Z?$"), dtype=bool)
        digits = pc.utf8_rpad(pc.utf8_slice_codeunits(pc.replace_substring(pc.replace_substring(tail, "Z", ""),
                                                                           ".", ""), 0, 6), width=6, padding="0")
        fraction = np.array(pc.cast(pc.if_else(pa.array(tail_ok), digits, "000000"), pa.int64()), dtype=np.int64)
        stamp = seconds_ok & tail_ok & ~done
        micro[stamp] = seconds[stamp] * 1_000_000 + fraction[stamp]
        done |= stamp
        day_ok, day = _parse_fixed(text, "%Y-%m-%d")
        day_ok &= ~done
        micro[day_ok] = day[day_ok] * 1_000_000
        done |= day_ok
        for row in np.flatnonzero(~done & ~bad):
            try:
                micro[row] = self._one(text[row].as_py())
            except _RowError as exc:
                _mark(bad, reasons, row, str(exc))

    def _one(self, text: str) -> int:
        if _DECIMAL.fullmatch(text):
            unit = self._settle_unit(np.array([float(text)]))
            try:
                scaled = Decimal(text) * _MICROS[unit] / (1_000 if unit == "ns" else 1)
                return int(scaled.to_integral_value(rounding=ROUND_FLOOR))
            except InvalidOperation:
                raise _RowError(f"time {text!r} is not a number of {unit}") from None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _RowError(f"time {text!r} is neither an epoch number nor ISO-8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return (moment - _EPOCH) // _MICROSECOND


# ----------------------------------------------------------------------------------------------
# the per-click arrays, kept compact, and the malformed-row report


class _State:
    """Batch results in file order, kept compact, and the malformed-row report.

    Sessions are kept as runs of equal consecutive values (value, length, date of
    the run's last row); items as each batch's distinct values and int32 codes."""

    def __init__(self, keep_order: bool) -> None:
        self.sessions, self.items = _IdTable(), _IdTable()
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
        self.malformed.append(Malformed(line, reason))
        if len(self.malformed) > 4 * MALFORMED_EXAMPLES:  # keep the earliest lines, bounded
            self.malformed = sorted(self.malformed, key=lambda m: m.line)[:MALFORMED_EXAMPLES]

    def add(self, session: np.ndarray, item: np.ndarray, date: np.ndarray, order: np.ndarray | None) -> None:
        """Valid rows of one batch, in file order (int64 arrays)."""
        if not len(session):
            return
        run_starts = np.flatnonzero(np.concatenate(([True], session[1:] != session[:-1])))
        run_ends = np.append(run_starts[1:], len(session))
        self.runs["value"].append(session[run_starts])
        self.runs["length"].append(run_ends - run_starts)
        self.runs["date"].append(date[run_ends - 1])
        values, codes = np.unique(item, return_inverse=True)
        self.item_values.append(values)
        self.item_codes.append(codes.astype(np.int32).ravel())
        if self.order is not None:
            self.order.append(order)

    def click_log(self, path: str, sha256: str, time_unit: str | None) -> ClickLog:
        report = SourceReport(
            path=path,
            sha256=sha256,
            clicks=sum(len(codes) for codes in self.item_codes),
            malformed_count=self.malformed_count,
            malformed=tuple(sorted(self.malformed, key=lambda m: m.line)[:MALFORMED_EXAMPLES]),
            filtered_rows=self.filtered,
            blank_lines=self.blank,
            time_unit=time_unit,
        )
        runs = {key: _concatenate(parts) for key, parts in self.runs.items()}
        self.runs.clear()
        n_clicks = int(runs["length"].sum())
        code_type = np.int32 if n_clicks < 2**31 else np.int64
        # Sessions: number them by first run, date them by last run.
        _, first_run, run_session = np.unique(runs["value"], return_index=True, return_inverse=True)
        run_session = run_session.ravel()
        number = np.empty(len(first_run), dtype=np.int64)
        number[np.argsort(first_run, kind="stable")] = np.arange(len(first_run), dtype=np.int64)
        run_session = number[run_session]
        last_run = np.full(len(first_run), -1, dtype=np.int64)
        np.maximum.at(last_run, run_session, np.arange(len(run_session), dtype=np.int64))
        sessions = np.repeat(run_session.astype(code_type), runs["length"])
        # Items: one numbering over the batches' distinct values.
        distinct = np.unique(np.concatenate(self.item_values)) if self.item_values else np.zeros(0, np.int64)
        items = np.empty(n_clicks, dtype=code_type)
        done = 0
        for values, codes in zip(self.item_values, self.item_codes):
            items[done : done + len(codes)] = np.searchsorted(distinct, values).astype(code_type)[codes]
            done += len(codes)
        self.item_values.clear()
        self.item_codes.clear()
        texts = {code: text for text, code in self.items.texts.items()}
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
