"""``srgnn-rt prepare``: a click log -> a prepared dataset directory, as SR-GNN's reference does it.

The steps and the quirks of the authors' ``datasets/preprocess.py``, reproduced:

1. Sessions are numbered in order of first appearance in the file. A session's
   date is the date of its LAST ROW IN FILE ORDER (Diginetica: its ``eventdate``
   at midnight; Yoochoose: its timestamp cut to whole seconds), even when clicks
   are re-ordered afterwards. Clicks of a session are ordered by the reader's key
   (Diginetica ``timeframe``, generic files their time; stable, so ties keep file
   order); Yoochoose clicks keep file order.
2. Sessions of length 1 are dropped; items are counted over the remaining
   sessions, clicks on items seen fewer than ``min_item_count`` (5) times are
   dropped, then sessions left shorter than 2. This is one pass: counts are not
   recomputed after sessions go.
3. ``split = max session date - test_days`` (7 days Diginetica, 1 day Yoochoose
   and generic files 7, in seconds, UTC). Train = date < split, test = date > split:
   a session dated exactly ``split`` is in NEITHER set. Both are sorted by date
   with a stable sort (ties keep first-appearance order).
4. Items are numbered 1..n in order of first appearance over the date-sorted
   training sessions. Test clicks on items unknown to training are dropped, then
   test sessions shorter than 2.
5. Every session of length L becomes L-1 prefixes, longest first:
   ``s[:-i] -> s[-i]`` for i = 1..L-1.
6. ``fraction=k`` keeps the LAST ``P // k`` training prefixes (Yoochoose 1/4 and
   1/64 use 4 and 64); when ``P // k`` is 0 the reference's ``seqs[-0:]`` keeps all
   of them, and so do we. Item numbering, ``n_items`` and the test split stay those
   of the full training set; ``item_counts`` and ``train_sessions`` cover the
   training sessions from the one holding the first kept prefix on (the
   reference's ``all_train_seq``).

The reference uses local time (``time.mktime``); we use UTC, which is what it gives
on a UTC machine. "Average session length" = clicks of the kept train + test
sessions / their number, as the reference prints it (full training set).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from srgnn_rt.dataset import FORMAT_VERSION, PreparedDataset, PrefixSplit
from srgnn_rt.vocab import Vocab

from .readers import TIME_UNITS, ClickLog, Column, RawId, SourceReport, read_csv, read_diginetica, read_parquet, read_yoochoose

FORMATS = ("diginetica", "yoochoose", "csv", "parquet")
DEFAULT_TEST_DAYS = {"diginetica": 7.0, "yoochoose": 1.0, "csv": 7.0, "parquet": 7.0}
_COLUMN_FORMATS = ("csv", "parquet")  # formats whose session / item / time columns are named by the user
MIN_ITEM_COUNT = 5
_BLOCK = 1 << 22  # values gathered per step: bounds temporary memory

_log = logging.getLogger(__name__)


def prepare(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    format: Literal["diginetica", "yoochoose", "csv", "parquet"],
    test: str | os.PathLike | None = None,
    test_days: float | None = None,
    fraction: int = 1,
    min_item_count: int | None = None,
    session_column: Column | None = None,
    item_column: Column | None = None,
    time_column: Column | None = None,
    delimiter: str = ",",
    header: bool = True,
    where: Mapping[Column, str] | None = None,
    time_unit: str = "auto",
    overwrite: bool = False,
) -> PreparedDataset:
    """Read the click log ``source``, run the reference pipeline, write ``out_dir``; returns the dataset.

    ``format="csv"`` needs ``session_column``, ``item_column`` and ``time_column``
    (header names or 0-based indices) and takes ``delimiter``, ``header`` and
    ``where`` (column -> text a kept row holds there); ``format="parquet"`` the three
    columns (names), ``where`` and ``time_unit``; Diginetica and Yoochoose take none of
    those. ``test_days`` defaults to 7 (Diginetica, csv, parquet) or 1 (Yoochoose).

    ``test``: a second file of the same format holding the test sessions, for data that
    comes already split (e.g. session-rec's ``*_train_full.txt`` / ``*_test.txt``): no
    date split is made, ``test_days`` and ``fraction`` do not apply, and ``min_item_count``
    defaults to 1 (the files are taken as published); test clicks on items unknown to
    training are dropped, then test sessions shorter than 2, as in step 4.
    Malformed lines are left out, logged and recorded in the manifest; what each filter
    removed is recorded under ``removed``. A split that leaves no training or no test
    prefix is refused, saying what the log spans.
    """
    csv_options = {
        "session_column": session_column,
        "item_column": item_column,
        "time_column": time_column,
        "delimiter": delimiter,
        "header": header,
        "where": dict(where) if where else None,
        "time_unit": time_unit,
    }
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    if format in _COLUMN_FORMATS:
        missing = [name for name in ("session_column", "item_column", "time_column") if csv_options[name] is None]
        if missing:
            raise ValueError(f"format={format!r} needs {', '.join(missing)}")
        if format == "parquet":
            given = [name for name, default in (("delimiter", ","), ("header", True)) if csv_options[name] != default]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to format='csv', not 'parquet'")
    else:
        given = [name for name in ("session_column", "item_column", "time_column", "where") if csv_options[name]]
        given += [name for name, default in (("delimiter", ","), ("header", True), ("time_unit", "auto"))
                  if csv_options[name] != default]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to format='csv' or 'parquet', not {format!r}")
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {TIME_UNITS}, not {time_unit!r}")
    if test is not None:
        if test_days is not None or fraction != 1:
            raise ValueError("test_days and fraction do not apply with a test file: the files are the split")
        min_item_count = 1 if min_item_count is None else min_item_count
        _check_options(1.0, 1, min_item_count)
    else:
        test_days = DEFAULT_TEST_DAYS[format] if test_days is None else test_days
        min_item_count = MIN_ITEM_COUNT if min_item_count is None else min_item_count
        _check_options(test_days, fraction, min_item_count)
    source = Path(source)
    _check_source(source)
    if test is not None:
        test = Path(test)
        _check_source(test)
    target = Path(out_dir)
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it")

    options = {"test_days": test_days, "fraction": fraction, "min_item_count": min_item_count}
    if format in _COLUMN_FORMATS:
        options.update({key: value for key, value in csv_options.items() if value is not None})
    if test is None:
        sessions = _filtered_sessions(_read_log(source, format, csv_options), min_item_count)
        dataset = _build(sessions, source_format=format, test_days=test_days, fraction=fraction, options=options)
    else:
        options["test_file"] = str(test.absolute())
        train_sessions = _filtered_sessions(_read_log(source, format, csv_options), min_item_count)
        test_sessions = _filtered_sessions(_read_log(test, format, csv_options), 1)
        dataset = _build_presplit(train_sessions, test_sessions, source_format=format, options=options)
    dataset.save(target, overwrite=overwrite)
    return dataset


def _check_source(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"click log {path} is a directory; give the file")
    if not path.is_file():
        raise FileNotFoundError(f"click log {path} does not exist")


def _read_log(source: Path, format: str, options: Mapping[str, object]) -> ClickLog:
    """The click log of ``source`` in ``format``; malformed lines are logged."""
    if format == "diginetica":
        log = read_diginetica(source)
    elif format == "yoochoose":
        log = read_yoochoose(source)
    elif format == "parquet":
        log = read_parquet(source, session=options["session_column"], item=options["item_column"],
                           time=options["time_column"], where=options["where"], time_unit=options["time_unit"])
    else:
        log = read_csv(
            source, session=options["session_column"], item=options["item_column"], time=options["time_column"],
            delimiter=options["delimiter"], header=options["header"], where=options["where"],
            time_unit=options["time_unit"],
        )
    if log.report.malformed_count:
        _log.warning(
            "%s: %d malformed line(s) left out; first: %s",
            source, log.report.malformed_count, "; ".join(str(m) for m in log.report.malformed[:5]),
        )
    return log


def build_dataset(
    log: ClickLog,
    *,
    source_format: str,
    test_days: float,
    fraction: int = 1,
    min_item_count: int = MIN_ITEM_COUNT,
) -> PreparedDataset:
    """The prepared dataset of a click log (module docstring: steps and quirks); nothing is written."""
    _check_options(test_days, fraction, min_item_count)
    options = {"test_days": test_days, "fraction": fraction, "min_item_count": min_item_count}
    return _build(
        _filtered_sessions(log, min_item_count), source_format=source_format, test_days=test_days,
        fraction=fraction, options=options,
    )


def _check_options(test_days: float, fraction: int, min_item_count: int) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, int) or fraction < 1:
        raise ValueError(f"fraction must be an int >= 1 (1, 4 or 64 in the paper), not {fraction!r}")
    if isinstance(min_item_count, bool) or not isinstance(min_item_count, int) or min_item_count < 1:
        raise ValueError(f"min_item_count must be an int >= 1, not {min_item_count!r}")
    if isinstance(test_days, bool) or not isinstance(test_days, (int, float)) or not _test_seconds(test_days) >= 1:
        raise ValueError(f"test_days must be a positive number of days, not {test_days!r}")


def _test_seconds(test_days: float) -> int:
    """Whole seconds of ``test_days`` (0 when not finite; never overflows: Python ints)."""
    return round(float(test_days) * 86400) if np.isfinite(test_days) else 0


@dataclass(frozen=True, eq=False)
class _Sessions:
    """Steps 1-2 done. ``clicks: int[C]`` item codes grouped by session number, each session's
    clicks in order; ``lengths: int64[S]`` kept clicks per session (0: dropped);
    ``dates: int64[S]`` session dates; ``item_ids`` raw id per item code; the source's report;
    ``removed``: what each filter took out."""

    clicks: np.ndarray
    lengths: np.ndarray
    dates: np.ndarray
    item_ids: list[RawId]
    report: SourceReport
    removed: dict[str, int]


def _filtered_sessions(log: ClickLog, min_item_count: int) -> _Sessions:
    """Group clicks by session in order, drop sessions of length 1, rare items, then short sessions."""
    if log.order is None:
        by_session = np.argsort(log.sessions, kind="stable")
    else:
        by_session = np.lexsort((log.order, log.sessions))
    clicks = log.items[by_session]
    owner = log.sessions[by_session]
    del by_session
    n_sessions = log.n_sessions
    read_lengths = np.bincount(owner, minlength=n_sessions)
    kept = (read_lengths > 1)[owner]
    item_counts = np.bincount(clicks[kept], minlength=len(log.item_ids))
    rare = kept & (item_counts < min_item_count)[clicks]
    kept &= ~rare
    lengths = np.bincount(owner[kept], minlength=n_sessions)
    kept &= (lengths >= 2)[owner]
    removed = {
        "one_click_sessions": int(np.count_nonzero(read_lengths == 1)),
        "rare_item_clicks": int(np.count_nonzero(rare)),
        "rare_items": int(np.count_nonzero((item_counts > 0) & (item_counts < min_item_count))),
        "sessions_left_short": int(np.count_nonzero((read_lengths > 1) & (lengths < 2))),
    }
    return _Sessions(
        clicks=clicks[kept],
        lengths=np.where(lengths >= 2, lengths, 0),
        dates=log.session_dates,
        item_ids=log.item_ids,
        report=log.report,
        removed=removed,
    )


def _check_read(sessions: _Sessions, min_item_count: int) -> np.ndarray:
    """The sessions that keep 2 clicks (bool[S]); ValueError when the file gave nothing to prepare."""
    report = sessions.report
    if report.clicks == 0:
        examples = "; ".join(str(m) for m in report.malformed[:5]) or "none"
        raise ValueError(
            f"{report.path} has no valid clicks ({report.malformed_count} malformed lines; first: {examples}; "
            f"{report.filtered_rows} rows filtered out)"
        )
    alive = sessions.lengths >= 2
    if not alive.any():
        raise ValueError(
            f"{report.path}: no session keeps 2 clicks on items seen at least {min_item_count} times; "
            "nothing to prepare"
        )
    return alive


@dataclass(frozen=True, eq=False)
class _TrainSide:
    """Training sessions numbered (step 4): ``flat: int64[C]`` internal ids, ``lengths: int64[n]``,
    ``internal: int64[codes]`` the internal id of each item code of the training log (0: unseen)."""

    vocab: Vocab
    internal: np.ndarray
    flat: np.ndarray
    lengths: np.ndarray


def _train_side(sessions: _Sessions, train_ids: np.ndarray) -> _TrainSide:
    starts = np.cumsum(sessions.lengths) - sessions.lengths
    codes = _gather(sessions.clicks, starts[train_ids], sessions.lengths[train_ids])
    numbered = _by_first_appearance(codes, len(sessions.item_ids))
    vocab = Vocab([sessions.item_ids[code] for code in numbered])
    internal = np.zeros(len(sessions.item_ids), dtype=np.int64)
    internal[numbered] = np.arange(1, len(numbered) + 1, dtype=np.int64)
    return _TrainSide(vocab=vocab, internal=internal, flat=internal[codes], lengths=sessions.lengths[train_ids])


def _test_side(sessions: _Sessions, test_ids: np.ndarray, internal: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Test sessions as internal ids without unknown items, then without those left under 2 clicks;
    and what that removed."""
    starts = np.cumsum(sessions.lengths) - sessions.lengths
    lengths = sessions.lengths[test_ids]
    flat = internal[_gather(sessions.clicks, starts[test_ids], lengths)]
    known_flat, known_lengths = _known_only(flat, lengths)
    removed = {"unknown_test_clicks": int(np.count_nonzero(flat == 0)),
               "test_sessions_left_short": len(lengths) - len(known_lengths)}
    return known_flat, known_lengths, removed


def _build(
    sessions: _Sessions, *, source_format: str, test_days: float, fraction: int, options: Mapping[str, object]
) -> PreparedDataset:
    """Steps 3-6 and the manifest."""
    report, dates = sessions.report, sessions.dates
    alive = _check_read(sessions, options["min_item_count"])
    first_date, last_date = int(dates[alive].min()), int(dates[alive].max())
    span = last_date - first_date
    if _test_seconds(test_days) >= span:
        raise ValueError(
            f"{report.path}: the sessions span {span / 86400:.2f} days ({_iso(first_date)} .. {_iso(last_date)}); "
            f"test_days={test_days} leaves no training session: choose fewer test days, e.g. "
            f"{max(span / 86400 / 7, 1 / 24):.2g}"
        )
    split = last_date - _test_seconds(test_days)
    train_ids = _by_date(np.flatnonzero(alive & (dates < split)), dates)
    test_ids = _by_date(np.flatnonzero(alive & (dates > split)), dates)
    if len(train_ids) == 0:
        raise ValueError(
            f"{report.path}: no training session is dated before the split {_iso(split)} "
            f"(the sessions span {_iso(first_date)} .. {_iso(last_date)}, test_days={test_days})"
        )
    train_side = _train_side(sessions, train_ids)
    test_flat, test_lengths, test_removed = _test_side(sessions, test_ids, train_side.internal)
    if len(test_lengths) == 0:
        raise ValueError(
            f"{report.path}: the split at {_iso(split)} (test_days={test_days}; the sessions span "
            f"{_iso(first_date)} .. {_iso(last_date)}) leaves no test prefix: {len(test_ids)} test sessions, "
            f"{test_removed['unknown_test_clicks']} test clicks on items unknown to training; choose more test days"
        )
    train_flat, train_lengths = train_side.flat, train_side.lengths

    n_train_prefixes = int((train_lengths - 1).sum())
    kept = n_train_prefixes // fraction
    first_prefix = n_train_prefixes - kept if kept else 0  # the reference's seqs[-0:] keeps everything
    first_session = _session_of_prefix(train_lengths, first_prefix)
    train = _prefixes(train_flat, train_lengths, first_prefix)
    test = _prefixes(test_flat, test_lengths, 0)
    first_click = int(train_lengths[:first_session].sum())
    item_counts = np.bincount(train_flat[first_click:], minlength=len(train_side.vocab) + 1).astype(np.int64)

    manifest = {
        "format_version": FORMAT_VERSION,
        "source_format": source_format,
        "source_path": report.path,
        "source_sha256": report.sha256,
        "options": dict(options),
        "split": "date",
        "split_date": _iso(split),
        "last_session_date": _iso(last_date),
        "train_sessions": len(train_lengths) - first_session,
        "test_sessions": len(test_lengths),
        "train_prefixes": len(train),
        "test_prefixes": len(test),
        "n_items": len(train_side.vocab),
        "average_session_length": (len(train_flat) + len(test_flat)) / (len(train_lengths) + len(test_lengths)),
        **_source_fields(report),
        "removed": {**sessions.removed, **test_removed},
    }
    if fraction > 1:
        manifest["full_train_sessions"] = len(train_lengths)
        manifest["full_train_prefixes"] = n_train_prefixes
    return PreparedDataset(train=train, test=test, vocab=train_side.vocab, item_counts=item_counts, manifest=manifest)


def _build_presplit(
    train_sessions: _Sessions, test_sessions: _Sessions, *, source_format: str, options: Mapping[str, object]
) -> PreparedDataset:
    """Steps 4-5 on a train file and a test file taken as given (no date split, no fraction)."""
    train_alive = _check_read(train_sessions, options["min_item_count"])
    test_alive = _check_read(test_sessions, 1)
    train_ids = _by_date(np.flatnonzero(train_alive), train_sessions.dates)
    test_ids = _by_date(np.flatnonzero(test_alive), test_sessions.dates)
    train_side = _train_side(train_sessions, train_ids)
    # the test log numbers its items on its own: map them through their raw ids
    by_raw = {raw: internal for raw, internal in zip(train_side.vocab.raw_ids, range(1, len(train_side.vocab) + 1))}
    test_internal = np.fromiter((by_raw.get(raw, 0) for raw in test_sessions.item_ids), np.int64,
                                len(test_sessions.item_ids))
    test_flat, test_lengths, test_removed = _test_side(test_sessions, test_ids, test_internal)
    if len(test_lengths) == 0:
        raise ValueError(
            f"{test_sessions.report.path}: no test session keeps 2 clicks on items known to training "
            f"({test_removed['unknown_test_clicks']} test clicks on unknown items); nothing to evaluate on"
        )
    train = _prefixes(train_side.flat, train_side.lengths, 0)
    test = _prefixes(test_flat, test_lengths, 0)
    item_counts = np.bincount(train_side.flat, minlength=len(train_side.vocab) + 1).astype(np.int64)
    test_fields = _source_fields(test_sessions.report)
    manifest = {
        "format_version": FORMAT_VERSION,
        "source_format": source_format,
        "source_path": train_sessions.report.path,
        "source_sha256": train_sessions.report.sha256,
        "test_path": test_sessions.report.path,
        "test_sha256": test_sessions.report.sha256,
        "options": dict(options),
        "split": "files",
        "last_session_date": _iso(int(train_sessions.dates[train_alive].max())),
        "train_sessions": len(train_side.lengths),
        "test_sessions": len(test_lengths),
        "train_prefixes": len(train),
        "test_prefixes": len(test),
        "n_items": len(train_side.vocab),
        "average_session_length": (len(train_side.flat) + len(test_flat))
        / (len(train_side.lengths) + len(test_lengths)),
        **_source_fields(train_sessions.report),
        "test_file": {key: test_fields[key] for key in ("clicks_read", "malformed_rows", "malformed_examples")},
        "removed": {**train_sessions.removed,
                    **{f"test_{key}": value for key, value in test_sessions.removed.items()}, **test_removed},
    }
    return PreparedDataset(train=train, test=test, vocab=train_side.vocab, item_counts=item_counts, manifest=manifest)


def _source_fields(report: SourceReport) -> dict:
    fields = {
        "clicks_read": report.clicks,
        "malformed_rows": report.malformed_count,
        "malformed_examples": [{"line": m.line, "reason": m.reason} for m in report.malformed],
        "filtered_rows": report.filtered_rows,
        "blank_lines": report.blank_lines,
    }
    if report.time_unit is not None:
        fields["time_unit"] = report.time_unit
    return fields


def _by_date(sessions: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """``sessions`` (ascending numbers) stably sorted by date."""
    return sessions[np.argsort(dates[sessions], kind="stable")]


def _by_first_appearance(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """The distinct values of ``codes`` (ints in 0..n_codes-1) in order of first appearance."""
    first = np.full(n_codes, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes), dtype=np.int64))
    present = np.flatnonzero(first < len(codes))
    return present[np.argsort(first[present])]


def _known_only(flat: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sessions (``flat: int64[C]``, ``lengths``) without id 0 (unknown items), then without those left under 2."""
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    known = flat > 0
    known_lengths = np.bincount(owner[known], minlength=len(lengths))
    long_enough = known_lengths >= 2
    return flat[known & long_enough[owner]], known_lengths[long_enough]


def _blocks(sizes: np.ndarray):
    """Consecutive ranges ``(begin, end)`` of ``sizes`` holding about ``_BLOCK`` in total (at least one each)."""
    ends = np.cumsum(sizes)
    begin = 0
    while begin < len(sizes):
        done = int(ends[begin - 1]) if begin else 0
        end = max(int(np.searchsorted(ends, done + _BLOCK, side="right")), begin + 1)
        yield begin, end
        begin = end


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int64 indices ``starts[i], ..., starts[i] + lengths[i] - 1`` for every i, concatenated."""
    offsets = np.cumsum(lengths) - lengths
    index = np.repeat(starts - offsets, lengths)
    index += np.arange(len(index), dtype=np.int64)
    return index


def _gather(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``values[starts[i] : starts[i] + lengths[i]]`` for every i, concatenated."""
    out = np.empty(int(lengths.sum()), dtype=values.dtype)
    done = 0
    for begin, end in _blocks(lengths):
        part = values[_ranges(starts[begin:end], lengths[begin:end])]
        out[done : done + len(part)] = part
        done += len(part)
    return out


def _session_of_prefix(lengths: np.ndarray, prefix: int) -> int:
    """The session holding prefix number ``prefix`` (each session of length L has L-1)."""
    return int(np.searchsorted(np.cumsum(lengths - 1), prefix, side="right"))


def _prefixes(flat: np.ndarray, lengths: np.ndarray, first_prefix: int) -> PrefixSplit:
    """Prefixes of the sessions (``flat: int64[C]``, ``lengths: int64[n]``, all >= 2), from
    prefix number ``first_prefix`` on: session s gives ``s[:-i] -> s[-i]`` for i = 1..L-1."""
    first_session = _session_of_prefix(lengths, first_prefix)
    skipped = first_prefix - int((lengths[:first_session] - 1).sum())
    longest = lengths - 1  # the longest kept prefix of each session; it keeps prefixes longest..1
    longest[:first_session] = 0
    if first_session < len(longest):
        longest[first_session] -= skipped
    starts = np.cumsum(lengths) - lengths
    sizes = longest * (longest + 1) // 2
    items = np.empty(int(sizes.sum()), dtype=np.int64)
    targets = np.empty(int(longest.sum()), dtype=np.int64)
    offsets = np.zeros(len(targets) + 1, dtype=np.int64)
    n_prefixes = n_items = 0
    for begin, end in _blocks(sizes):
        counts = longest[begin:end]
        session = np.repeat(np.arange(begin, end, dtype=np.int64), counts)
        rank = np.arange(len(session), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        length = longest[session] - rank
        first = starts[session]
        block = slice(n_prefixes, n_prefixes + len(length))
        targets[block] = flat[first + length]
        offsets[n_prefixes + 1 : n_prefixes + 1 + len(length)] = n_items + np.cumsum(length)
        part = flat[_ranges(first, length)]
        items[n_items : n_items + len(part)] = part
        n_prefixes += len(length)
        n_items += len(part)
    return PrefixSplit(items=items, offsets=offsets, targets=targets)


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
