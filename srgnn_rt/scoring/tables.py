"""Tables of sessions in, tables of recommendations out: the streaming readers and writers of scoring.

Inputs, chosen by extension, are read in chunks and never whole:

- Parquet (``.parquet``, ``.pq``), with pyarrow: a list column of raw item ids, one
  row per session; or long format, one row per click, the consecutive rows of a
  session key forming the session (groups may straddle record batches);
- JSON lines (``.jsonl``, ``.ndjson``, ``.json``): a JSON array of raw ids per line,
  or an object holding the array in its ``session`` field (``items_column``) and
  optionally a key (``session_column``); blank lines are skipped;
- CSV (``.csv``), with pyarrow: long format with a header; keys are text, items
  are converted to the model's raw id type.

Outputs, by extension: Parquet or JSON lines, one row per input session, in input
order: the key (when the input has one), ``items`` (k raw ids), ``scores``
(float32), ``n_unknown``, ``fallback`` and ``error`` (null, or why the session
has no answer). A JSON lines error row is ``{KEY: ..., "line": N, "error": "..."}``
as ``srgnn-rt recommend`` writes them.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

INPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                 ".csv": "csv"}
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
ROW_GROUP_ROWS = 65_536
"""Parquet output: answers are buffered into row groups of this many rows."""
_LONG_CHUNK_ROWS = 65_536  # clicks per record batch read from long-format inputs


def require(module: str, extra: str):
    """``import module``, or ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == module.split(".")[0]:
            raise ImportError(f"scoring needs {exc.name}, which is not installed: pip install 'srgnn-rt[{extra}]'"
                              ) from None
        raise


def format_of(path: str | os.PathLike, formats: dict[str, str], what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise ValueError(f"{what} {os.fspath(path)!r}: unknown extension {suffix!r}; expected one of "
                         f"{', '.join(sorted(formats))}")
    return formats[suffix]


@dataclass
class Sessions:
    """Consecutive sessions of an input.

    ``sessions[i]``: raw item ids (None when the row could not be read; ``errors[i]``
    says why); ``keys``: the session keys, or None when the input has none;
    ``lines``: where each session starts (``place`` ``"line"`` or ``"row"``, 1-based),
    or None where unknown.
    """

    sessions: list
    errors: list
    keys: list | None = None
    lines: list | None = None
    place: str = "line"

    def __len__(self) -> int:
        return len(self.sessions)

    def where(self, index: int) -> str:
        """``"line 12"``, ``"session 'a'"`` or ``"session"``: how an error names session ``index``."""
        if self.lines is not None:
            return f"{self.place} {self.lines[index]}"
        if self.keys is not None:
            return f"session {self.keys[index]!r}"
        return "session"

    def slice(self, start: int, stop: int) -> Sessions:
        cut = (lambda values: None if values is None else values[start:stop])
        return replace(self, sessions=self.sessions[start:stop], errors=self.errors[start:stop],
                       keys=cut(self.keys), lines=cut(self.lines))

    @staticmethod
    def concat(parts: list[Sessions]) -> Sessions:
        if len(parts) == 1:
            return parts[0]
        join = (lambda name: None if getattr(parts[0], name) is None
                else [value for part in parts for value in getattr(part, name)])
        return replace(parts[0], sessions=join("sessions"), errors=join("errors"), keys=join("keys"),
                       lines=join("lines"))


@dataclass
class Answers:
    """The answers to ``Sessions``, row for row: ``items[i]`` raw ids and ``scores[i]`` float32[len(items[i])]
    (both None when ``errors[i]``), ``n_unknown[i]``, ``fallback[i]`` (see ``Recommendation``)."""

    items: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    n_unknown: list = field(default_factory=list)
    fallback: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


def rebatch(chunks: Iterator[Sessions], size: int) -> Iterator[Sessions]:
    """``chunks`` cut and joined into batches of exactly ``size`` sessions (the last may be smaller)."""
    pending: list[Sessions] = []
    filled = 0
    for chunk in chunks:
        start = 0
        while start < len(chunk):
            take = min(size - filled, len(chunk) - start)
            pending.append(chunk.slice(start, start + take))
            filled += take
            start += take
            if filled == size:
                yield Sessions.concat(pending)
                pending, filled = [], 0
    if filled:
        yield Sessions.concat(pending)


# --- reading ---------------------------------------------------------------------------------------


@dataclass
class Source:
    """An opened input: ``chunks`` streams its sessions; ``key_name`` / ``key_type`` (an Arrow type,
    None when only the values will tell) describe its keys; ``total``: sessions, when known up front."""

    chunks: Iterator[Sessions]
    key_name: str | None
    key_type: Any = None
    total: int | None = None


def open_sessions(
    path: str | os.PathLike,
    *,
    raw_id_type: type | None,
    session_column: str | None = None,
    items_column: str | None = None,
    chunk_rows: int = 512,
) -> Source:
    """Open ``path`` (format by extension) for streaming; ValueError for a missing column, a wrong
    item type, an unknown extension. ``chunk_rows``: sessions per chunk of list formats."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input {path!r} does not exist")
    kind = format_of(path, INPUT_FORMATS, "input")
    if kind == "jsonl":
        return _open_json_lines(path, session_column, items_column or "session", chunk_rows)
    if kind == "csv":
        return _open_csv(path, raw_id_type, session_column or "session", items_column or "item")
    return _open_parquet(path, raw_id_type, session_column, items_column, chunk_rows)


def _open_json_lines(path: str, key_field: str | None, items_field: str, chunk_rows: int) -> Source:
    def chunks() -> Iterator[Sessions]:
        chunk = _empty_chunk(key_field is not None, "line")
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                text = line.strip()
                if not text:
                    continue
                key, session, error = _json_session(text, key_field, items_field)
                chunk.sessions.append(session)
                chunk.errors.append(None if error is None else f"line {number}: {error}")
                chunk.lines.append(number)
                if chunk.keys is not None:
                    chunk.keys.append(key)
                if len(chunk) == chunk_rows:
                    yield chunk
                    chunk = _empty_chunk(key_field is not None, "line")
        if len(chunk):
            yield chunk

    return Source(chunks(), key_field)


def _json_session(text: str, key_field: str | None, items_field: str) -> tuple[Any, list | None, str | None]:
    """(key, session, error) of one JSON line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, None, f"not JSON: {exc}"
    key = None
    if isinstance(value, dict):
        key = value.get(key_field) if key_field is not None else None
        if items_field not in value:
            return key, None, f"the object has no {items_field!r} field"
        value = value[items_field]
    if not isinstance(value, list):
        return key, None, f"expected a JSON array of raw item ids, got {type(value).__name__}"
    return key, value, None


def _empty_chunk(has_keys: bool, place: str) -> Sessions:
    return Sessions(sessions=[], errors=[], keys=[] if has_keys else None, lines=[], place=place)


def _open_parquet(path: str, raw_id_type, key: str | None, items: str | None, chunk_rows: int) -> Source:
    pa = require("pyarrow", "arrow")
    pq = require("pyarrow.parquet", "arrow")
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    names = schema.names
    if items is None:
        items = "items" if "items" in names else "item"
    if items not in names:
        raise ValueError(f"input {path!r} has no column {items!r} (columns: {', '.join(names)}); "
                         "name the items with --items-column")
    item_type = schema.field(items).type
    is_list = is_list_type(pa, item_type)
    if key is not None and key not in names:
        raise ValueError(f"input {path!r} has no column {key!r} (columns: {', '.join(names)})")
    if key is None and "session" in names and items != "session":
        key = "session"
    if not is_list and key is None:
        raise ValueError(f"input {path!r}: column {items!r} is not a list, so rows are clicks grouped by a "
                         f"session column, but there is none; name it with --session-column")
    _check_item_type(pa, item_type.value_type if is_list else item_type, raw_id_type, f"input {path!r}, "
                     f"column {items!r}")
    columns = [items] if key is None else [key, items]
    key_type = None if key is None else schema.field(key).type
    if is_list:
        def chunks() -> Iterator[Sessions]:
            row = 1
            for batch in file.iter_batches(batch_size=chunk_rows, columns=columns):
                yield sessions_of_list_table(batch, key, items, first_row=row)
                row += batch.num_rows

        return Source(chunks(), key, key_type, file.metadata.num_rows)

    def clicks() -> Iterator[tuple[list, list]]:
        for batch in file.iter_batches(batch_size=_LONG_CHUNK_ROWS, columns=columns):
            yield batch.column(key).to_pylist(), batch.column(items).to_pylist()

    return Source(_group_clicks(clicks(), "row", first_line=1), key, key_type)


def is_list_type(pa, kind) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _check_item_type(pa, kind, raw_id_type: type | None, where: str) -> None:
    """ValueError when an Arrow column of this type cannot hold this model's raw item ids."""
    if raw_id_type is int and not (pa.types.is_integer(kind) or pa.types.is_null(kind)):
        raise ValueError(f"{where} holds {kind}, but this model's raw item ids are integers")
    if raw_id_type is str and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                                   or pa.types.is_null(kind)):
        raise ValueError(f"{where} holds {kind}, but this model's raw item ids are strings")


def sessions_of_list_table(table, key: str | None, items: str, *, first_row: int | None) -> Sessions:
    """Sessions of an Arrow table / record batch with a list column ``items`` (and a key column);
    rows numbered from ``first_row`` (None: unnumbered). A null list is an error row."""
    pa = require("pyarrow", "arrow")
    column = table.column(items)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        column = column.cast(pa.list_(column.type.value_type))
    # Python lists throughout: Array.to_numpy would import pandas, seconds per process.
    offsets = column.offsets.to_pylist()
    first = offsets[0]
    values = column.values.slice(first, offsets[-1] - first).to_pylist()
    valid = column.is_valid().to_pylist() if column.null_count else [True] * len(column)
    sessions = [values[a - first:b - first] if ok else None for a, b, ok in zip(offsets[:-1], offsets[1:], valid)]
    errors: list = [None] * len(sessions)
    lines = None if first_row is None else list(range(first_row, first_row + len(sessions)))
    keys = None if key is None else table.column(key).to_pylist()
    chunk = Sessions(sessions=sessions, errors=errors, keys=keys, lines=lines, place="row")
    for index, ok in enumerate(valid):
        if not ok:
            errors[index] = f"{chunk.where(index)}: {items!r} is null"
    return chunk


def _open_csv(path: str, raw_id_type, key: str, items: str) -> Source:
    pa = require("pyarrow", "arrow")
    arrow_csv = require("pyarrow.csv", "arrow")
    compute = require("pyarrow.compute", "arrow")
    with open(path, encoding="utf-8") as file:
        header = next(csv.reader([file.readline()]), [])
    for name in (key, items):
        if name not in header:
            raise ValueError(f"input {path!r} has no column {name!r} (header: {', '.join(header)}); "
                             "name the columns with --session-column and --items-column")
    options = arrow_csv.ConvertOptions(include_columns=[key, items], column_types={key: pa.string(), items: pa.string()})

    def clicks() -> Iterator[tuple[list, list]]:
        reader = arrow_csv.open_csv(path, convert_options=options)
        for batch in reader:
            values = batch.column(items)
            if raw_id_type is int:
                try:
                    values = compute.cast(values, pa.int64())
                except pa.ArrowInvalid:  # a bad value: convert one by one, keep it as text for its error
                    yield batch.column(key).to_pylist(), [_int_or_text(v) for v in values.to_pylist()]
                    continue
            yield batch.column(key).to_pylist(), values.to_pylist()

    return Source(_group_clicks(clicks(), "line", first_line=2), key, pa.string())


def _int_or_text(value: str | None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _group_clicks(batches: Iterator[tuple[list, list]], place: str, *, first_line: int) -> Iterator[Sessions]:
    """Sessions of consecutive rows with equal keys, from (keys, items) per batch of clicks; a group
    may continue in the next batch. A key that comes back later starts a new session."""
    key = line = None
    clicks: list = []
    started = False
    next_line = first_line
    for keys, items in batches:
        chunk = _empty_chunk(True, place)
        for row, (row_key, item) in enumerate(zip(keys, items)):
            if started and row_key == key:
                clicks.append(item)
                continue
            if started:
                _add_group(chunk, key, clicks, line)
            key, clicks, line, started = row_key, [item], next_line + row, True
        next_line += len(keys)
        if len(chunk):
            yield chunk
    if started:
        chunk = _empty_chunk(True, place)
        _add_group(chunk, key, clicks, line)
        yield chunk


def _add_group(chunk: Sessions, key, clicks: list, line: int) -> None:
    chunk.sessions.append(clicks)
    chunk.errors.append(None)
    chunk.keys.append(key)
    chunk.lines.append(line)


# --- writing ---------------------------------------------------------------------------------------


def arrow_item_type(raw_id_type: type | None):
    """The Arrow type of this model's raw item ids; ValueError when they mix int and str."""
    pa = require("pyarrow", "arrow")
    if raw_id_type is None:
        raise ValueError("this model's raw item ids mix int and str, which a Parquet column cannot hold; "
                         "write JSON lines (.jsonl) instead")
    return pa.int64() if raw_id_type is int else pa.string()


def answer_columns(answers: Answers, item_type, *, width: int | None = None) -> dict:
    """Arrow arrays of ``answers``: ``items`` and ``scores`` as lists (null on error rows), or with
    ``width`` as fixed-size lists of ``width`` padded with nulls / NaN plus ``length`` (the ids given);
    ``n_unknown`` int32, ``fallback`` bool, ``error`` string."""
    pa = require("pyarrow", "arrow")
    lengths = np.array([0 if row is None else len(row) for row in answers.items], dtype=np.int64)
    flat_items = [item for row in answers.items if row is not None for item in row]
    parts = [row for row in answers.scores if row is not None]
    flat_scores = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    failed = np.array([error is not None for error in answers.errors], dtype=bool)
    if width is None:
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        mask = pa.array(failed)
        items = pa.ListArray.from_arrays(offsets, pa.array(flat_items, type=item_type), mask=mask)
        scores = pa.ListArray.from_arrays(offsets, pa.array(flat_scores), mask=mask)
        columns = {"items": items, "scores": scores}
    else:
        rows = np.repeat(np.arange(len(lengths)), lengths)
        positions = np.arange(len(flat_items)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        slots = rows * width + positions
        padded_items: list = [None] * (len(lengths) * width)
        for slot, item in zip(slots.tolist(), flat_items):
            padded_items[slot] = item
        padded_scores = np.full(len(lengths) * width, np.nan, dtype=np.float32)
        padded_scores[slots] = flat_scores
        columns = {
            "items": pa.FixedSizeListArray.from_arrays(pa.array(padded_items, type=item_type), width),
            "scores": pa.FixedSizeListArray.from_arrays(pa.array(padded_scores), width),
            "length": pa.array(lengths.astype(np.int32)),
        }
    columns["n_unknown"] = pa.array(np.array(answers.n_unknown, dtype=np.int32))
    columns["fallback"] = pa.array(np.array(answers.fallback, dtype=bool))
    columns["error"] = pa.array(answers.errors, type=pa.string())
    return columns


class ParquetSink:
    """Answers into a Parquet file, in row groups of ``ROW_GROUP_ROWS``."""

    def __init__(self, path: str, key_name: str | None, key_type, raw_id_type: type | None):
        self._pa = require("pyarrow", "arrow")
        self._pq = require("pyarrow.parquet", "arrow")
        self._path = path
        self._key_name = key_name
        self._key_type = key_type
        self._item_type = arrow_item_type(raw_id_type)
        # The columns of an empty output; building them now also pays pyarrow's first-use
        # import of pandas (seconds) before the first batch rather than during it.
        self._no_answers = answer_columns(Answers(), self._item_type)
        self._writer = None
        self._pending: list = []
        self._pending_rows = 0

    def write(self, batch: Sessions, answers: Answers) -> None:
        pa = self._pa
        columns = answer_columns(answers, self._item_type)
        if self._key_name is not None:
            if self._key_type is None:  # JSON keys: the first batch sets the type
                self._key_type = pa.array(batch.keys).type
                if pa.types.is_null(self._key_type):
                    self._key_type = pa.string()
            try:
                keys = pa.array(batch.keys, type=self._key_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(f"{batch.where(0)} and after: session keys of another type than the first "
                                 f"ones ({self._key_type}): {exc}") from None
            columns = {self._key_name: keys, **columns}
        table = pa.table(columns)
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self._path, table.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(self._pa.concat_tables(self._pending))
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        if self._writer is None:  # no session at all: an empty table of the known columns
            columns = self._no_answers
            if self._key_name is not None:
                columns = {self._key_name: self._pa.array([], type=self._key_type or self._pa.string()),
                           **columns}
            self._pq.write_table(self._pa.table(columns), self._path)
            return
        self._flush()
        self._writer.close()


class JsonLinesSink:
    """Answers as JSON lines: ``{KEY, "items", "scores", "n_unknown", "fallback"}`` or, for a session
    without an answer, ``{KEY, "line", "error"}``."""

    def __init__(self, path: str, key_name: str | None):
        self._file = open(path, "w", encoding="utf-8")
        self._key_name = key_name

    def write(self, batch: Sessions, answers: Answers) -> None:
        rows = []
        for index, error in enumerate(answers.errors):
            row = {} if self._key_name is None else {self._key_name: batch.keys[index]}
            if error is None:
                row.update(items=answers.items[index], scores=answers.scores[index].tolist(),
                           n_unknown=answers.n_unknown[index], fallback=answers.fallback[index])
            else:
                if batch.lines is not None:
                    row["line"] = batch.lines[index]
                row["error"] = error
            rows.append(json.dumps(row, default=str))
        self._file.write("\n".join(rows) + "\n" if rows else "")

    def close(self) -> None:
        self._file.close()


def open_sink(path: str, staging: str, source: Source, raw_id_type: type | None):
    """The writer for OUTPUT's format (by ``path``'s extension), writing to ``staging``."""
    if format_of(path, OUTPUT_FORMATS, "output") == "parquet":
        return ParquetSink(staging, source.key_name, source.key_type, raw_id_type)
    return JsonLinesSink(staging, source.key_name)
