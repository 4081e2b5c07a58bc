"""The latency report: one table of every path's median with its ratios to the reference path
and to the floor, the other suites' tables, the issue's goals, and PNG plots.

Reads pytest-benchmark JSON (the newest saved run under ``.benchmarks/`` by default,
or the files given; later files win for a benchmark in several), or runs the suites
first with ``--run``::

    python -m benchmarks.report                       # newest saved run
    python -m benchmarks.report run1.json run2.json   # merged
    python -m benchmarks.report --run [--bundle PATH] [-- EXTRA PYTEST ARGS]
    python -m benchmarks.report --plots /tmp/bench    # where the PNGs go

Saving and comparing runs is pytest-benchmark's own (machine info and commit are
in every saved file)::

    pytest benchmarks --benchmark-autosave                          # .benchmarks/<machine>/NNNN_*.json
    pytest benchmarks --benchmark-compare                           # against the newest saved run
    pytest benchmarks --benchmark-compare=0001 --benchmark-compare-fail=median:10%
    pytest-benchmark compare 0001 0002 --group-by=group             # two saved runs, side by side

``--benchmark-compare-fail=median:10%`` makes the run fail (exit status 1) when any
benchmark's median is more than 10% above the saved one. The CI smoke run is
``pytest tests benchmarks --benchmark-disable``: every benchmark once, small sizes,
nothing timed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STORAGE = REPO_ROOT / ".benchmarks"
DEFAULT_PLOTS = STORAGE / "report"
REFERENCE = "reference"
FLOOR = "floor"
_PATH_ORDER = ("reference", "torch+builder", "runtime-cpu", "runtime-cuda", "floor+topk", "floor")
_LINE_STYLES = ("-", "--", ":", "-.")
_ENGINES = ("triton", "ray-serve", "ray-serve-proxy")  # service modes through an inference server (benchmarks/test_engines.py)

Benchmark = dict  # one entry of pytest-benchmark's "benchmarks" list


def load_runs(files: Sequence[str | Path]) -> tuple[list[Benchmark], dict]:
    """Benchmarks of the JSON files, merged by full name (later files win), and the last file's header
    (``machine_info``, ``commit_info``, ``datetime``)."""
    merged: dict[str, Benchmark] = {}
    header: dict = {}
    for file in files:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
        if "benchmarks" not in data:
            raise ValueError(f"{file} is not pytest-benchmark JSON (it has no 'benchmarks' list)")
        for bench in data["benchmarks"]:
            merged[bench["fullname"]] = bench
        header = {key: data.get(key) for key in ("machine_info", "commit_info", "datetime")}
    return list(merged.values()), header


def newest_saved_run(storage: Path = STORAGE) -> Path:
    """The newest ``NNNN_*.json`` that ``--benchmark-autosave`` / ``--benchmark-save`` wrote."""
    saved = sorted(storage.glob("*/[0-9][0-9][0-9][0-9]_*.json"), key=lambda path: path.stat().st_mtime)
    if not saved:
        raise FileNotFoundError(
            f"no saved benchmark run under {storage}; run the suites with --benchmark-autosave, "
            "pass JSON files, or use --run"
        )
    return saved[-1]


def run_suites(bundle: str | None, extra: Sequence[str], output: Path) -> None:
    """``pytest benchmarks`` writing its JSON to ``output``; raises CalledProcessError when it fails."""
    command = [sys.executable, "-m", "pytest", str(REPO_ROOT / "benchmarks"), f"--benchmark-json={output}",
               "-p", "no:cacheprovider", *(["--bundle", bundle] if bundle else []), *extra]
    print("running:", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def _median_ms(bench: Benchmark) -> float:
    return bench["stats"]["median"] * 1000.0


def _suite(benchmarks: Iterable[Benchmark], suite: str) -> list[Benchmark]:
    return [b for b in benchmarks if b.get("extra_info", {}).get("suite") == suite]


def _path_key(path: str) -> int:
    return _PATH_ORDER.index(path) if path in _PATH_ORDER else len(_PATH_ORDER)


def _ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns under a header; "" without rows."""
    if not rows:
        return ""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).rjust(width) for cell, width in zip(line, widths)) for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def end_to_end_table(benchmarks: Sequence[Benchmark]) -> str:
    """Every path per batch size: median, per session, sessions/s, reference / path, path / floor."""
    rows = []
    suite = _suite(benchmarks, "end_to_end")
    by_key = {(b["extra_info"]["path"], b["extra_info"]["batch_size"]): _median_ms(b) for b in suite}
    for (path, size), median in sorted(by_key.items(), key=lambda item: (item[0][1], _path_key(item[0][0]))):
        reference, floor = by_key.get((REFERENCE, size)), by_key.get((FLOOR, size))
        rows.append([
            path, size, f"{median:.3f}", f"{1000 * median / size:.1f}", f"{1000 * size / median:,.0f}",
            _ratio(reference / median if reference else None), _ratio(median / floor if floor else None),
        ])
    return _table(["path", "B", "median ms", "us/session", "sessions/s", "ref/path", "path/floor"], rows)


def session_length_table(benchmarks: Sequence[Benchmark]) -> str:
    rows = []
    for bench in sorted(_suite(benchmarks, "session_length"), key=lambda b: (
            b["extra_info"]["batch_size"], b["extra_info"]["session_length"], _path_key(b["extra_info"]["path"]))):
        info = bench["extra_info"]
        rows.append([info["path"], info["batch_size"], info["session_length"], info["kept_length"],
                     f"{_median_ms(bench):.3f}"])
    return _table(["path", "B", "clicks", "kept", "median ms"], rows)


def catalog_table(benchmarks: Sequence[Benchmark]) -> str:
    rows = []
    for bench in sorted(_suite(benchmarks, "catalog"), key=lambda b: (
            b["extra_info"]["batch_size"], b["extra_info"]["n_items"], _path_key(b["extra_info"]["path"]))):
        info = bench["extra_info"]
        memory = f"{info['peak_rss_mb']:,.0f}" if "peak_rss_mb" in info else "-"
        load = f"{info['load_s']:.2f}" if "load_s" in info else "-"
        recall = f"{info['recall_at_20']:.4f}" if "recall_at_20" in info else "-"
        rows.append([info["path"], info["batch_size"], f"{info['n_items']:,}", f"{_median_ms(bench):.3f}",
                     memory, load, recall])
    return _table(["path", "B", "items", "median ms", "peak RSS MB", "load s", "recall@20"], rows)


def trained_recall_table(benchmarks: Sequence[Benchmark]) -> str:
    """recall@20 of the item index against exact scoring on a trained model, per nprobe."""
    rows = []
    for bench in _suite(benchmarks, "trained-recall"):
        info = bench["extra_info"]
        rows += [[f"{info['n_items']:,}", row["nprobe"], row["candidates"], f"{row['recall']:.4f}",
                  f"{row['ms_per_batch_of_100']:.2f}"] for row in info["sweep"]]
    return _table(["items", "nprobe", "candidates", "recall@20", "ms per 100"], rows)


def large_catalog_goals(benchmarks: Sequence[Benchmark]) -> list[tuple[str, bool]]:
    """Goals of retrieval mode at 1 M items (issue 11), where measured."""
    index = {b["extra_info"]["batch_size"]: b for b in _suite(benchmarks, "catalog")
             if b["extra_info"]["path"] == "runtime-index" and b["extra_info"]["n_items"] == 1_000_000}
    checks = []
    for batch_size, limit in ((1, 1.0), (100, 15.0)):
        if batch_size in index:
            median = _median_ms(index[batch_size])
            checks.append((f"1 M items, index, B={batch_size} <= {limit:g} ms: {median:.3f} ms", median <= limit))
    info = next(iter(index.values()))["extra_info"] if index else {}
    if "recall_at_20" in info:
        checks.append((f"1 M items, index, recall@20 >= 0.99: {info['recall_at_20']:.4f}",
                       info["recall_at_20"] >= 0.99))
    if "peak_rss_mb" in info:
        checks.append((f"1 M items, index, peak RSS <= 1.5 GB: {info['peak_rss_mb']:,.0f} MB",
                       info["peak_rss_mb"] <= 1536))
    return checks


def service_table(benchmarks: Sequence[Benchmark]) -> str:
    suite = _suite(benchmarks, "service")
    direct = {b["extra_info"]["clients"]: b["extra_info"].get("throughput_rps") for b in suite
              if b["extra_info"]["mode"] == "direct"}
    rows = []
    for bench in sorted(suite, key=lambda b: (b["extra_info"]["clients"], b["extra_info"]["mode"])):
        info = bench["extra_info"]
        throughput, baseline = info.get("throughput_rps"), direct.get(info["clients"])
        rows.append([
            info["mode"], info["clients"], f"{throughput:,.0f}" if throughput else "-",
            f"{info['p50_ms']:.2f}", f"{info['p99_ms']:.2f}",
            f"{info['mean_batch']:.1f}" if "mean_batch" in info else "-",
            _ratio(throughput / baseline if throughput and baseline else None),
        ])
    return _table(["mode", "clients", "requests/s", "p50 ms", "p99 ms", "mean batch", "vs direct"], rows)


def scoring_table(benchmarks: Sequence[Benchmark]) -> str:
    """Offline scoring: sessions/s of each path over the same sessions, and its ratio to the recommend loop."""
    suite = _suite(benchmarks, "scoring")
    rates = {b["extra_info"]["path"]: b["extra_info"]["sessions"] / b["stats"]["median"] for b in suite}
    loop = rates.get("recommend loop")
    rows = [[info["path"], f"{info['sessions']:,}", f"{bench['stats']['median']:.2f}", f"{rates[info['path']]:,.0f}",
             _ratio(rates[info["path"]] / loop if loop else None)]
            for bench in sorted(suite, key=lambda b: (b["extra_info"]["path"] != "recommend loop",
                                                      b["extra_info"]["path"]))
            for info in [bench["extra_info"]]]
    return _table(["path", "sessions", "median s", "sessions/s", "vs loop"], rows)


def other_table(benchmarks: Sequence[Benchmark]) -> str:
    """Benchmarks of the other suites (the graph builder's), by group."""
    rows = [[b.get("group") or "-", b["name"], f"{_median_ms(b):.4f}"]
            for b in sorted(benchmarks, key=lambda b: (b.get("group") or "", b["name"]))
            if "suite" not in b.get("extra_info", {})]
    return _table(["group", "benchmark", "median ms"], rows)


def goals(benchmarks: Sequence[Benchmark]) -> list[str]:
    """The issue's goals (CPU, 2 threads, 43,098 items, d = 100), each met or not, where measured."""
    end = {(b["extra_info"]["path"], b["extra_info"]["batch_size"]): _median_ms(b)
           for b in _suite(benchmarks, "end_to_end")}
    service = {(b["extra_info"]["mode"], b["extra_info"]["clients"]): b["extra_info"]
               for b in _suite(benchmarks, "service")}
    checks = []
    one, reference_one = end.get(("runtime-cpu", 1)), end.get((REFERENCE, 1))
    if one is not None:
        checks.append((f"one session <= 0.5 ms: {one:.3f} ms", one <= 0.5))
        if reference_one:
            checks.append((f"one session >= 6x faster than reference: {reference_one / one:.1f}x",
                           reference_one / one >= 6))
    hundred, floor_hundred = end.get(("runtime-cpu", 100)), end.get((FLOOR, 100))
    if hundred is not None and floor_hundred:
        ratio = hundred / floor_hundred
        checks.append((f"B=100 within 1.5x of the floor: {ratio:.2f}x", ratio <= 1.5))
    big = end.get(("runtime-cpu", 512))
    if big is not None:
        checks.append((f"B=512 >= 9,000 sessions/s: {512_000 / big:,.0f}", 512_000 / big >= 9000))
    batched, direct = service.get(("batcher", 64)), service.get(("direct", 64))
    if batched and direct and batched.get("throughput_rps") and direct.get("throughput_rps"):
        gain = batched["throughput_rps"] / direct["throughput_rps"]
        checks.append((f"batcher, 64 clients, >= 3x direct throughput: {gain:.2f}x", gain >= 3))
    if batched:
        checks.append((f"batcher, 64 clients, p99 < 25 ms: {batched['p99_ms']:.1f} ms", batched["p99_ms"] < 25))
    for engine in _ENGINES:
        served = service.get((engine, 64))
        # The batcher measured in turn with the engine where the run has it, else its own row.
        reference = (served or {}).get("batcher_rps") or (batched or {}).get("throughput_rps")
        if served and served.get("throughput_rps") and reference:
            share = served["throughput_rps"] / reference
            when = "in turn with it" if served.get("batcher_rps") else "in its own test"
            label = (f"{engine}, 64 clients, >= 0.5x the batcher's throughput ({when}): {share:.2f}x "
                     f"({served['throughput_rps']:,.0f} / {reference:,.0f})")
            checks.append((label, share >= 0.5))
        if served:
            checks.append((f"{engine}, 64 clients, p99 < 50 ms: {served['p99_ms']:.1f} ms", served["p99_ms"] < 50))
    checks += large_catalog_goals(benchmarks)
    scoring = {b["extra_info"]["path"]: b["extra_info"]["sessions"] / b["stats"]["median"]
               for b in _suite(benchmarks, "scoring")}
    if "recommend loop" in scoring and "score, 1 worker" in scoring:
        ratio = scoring["score, 1 worker"] / scoring["recommend loop"]
        checks.append((f"score, 1 worker, >= 0.8x the recommend loop's sessions/s: {ratio:.2f}x", ratio >= 0.8))
    return [f"[{'met' if ok else 'NOT met'}] {text}" for text, ok in checks]


def plot(benchmarks: Sequence[Benchmark], directory: Path) -> list[Path]:
    """PNGs: latency vs batch size per path (log-log), latency vs catalog size, service throughput."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def lines(axis, suite: str, x_field: str) -> bool:
        """One line per path (and batch size, unless it is the x axis): the path's colour, one
        line style per batch size."""
        series: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for bench in _suite(benchmarks, suite):
            info = bench["extra_info"]
            size = 0 if x_field == "batch_size" else info["batch_size"]
            series.setdefault((info["path"], size), []).append((info[x_field], _median_ms(bench)))
        sizes = sorted({size for _, size in series})
        for path, size in sorted(series, key=lambda key: (_path_key(key[0]), key[1])):
            points = sorted(series[path, size])
            label = f"{path}, B={size}" if size else path
            axis.plot([x for x, _ in points], [y for _, y in points], marker="o", label=label,
                      color=f"C{_path_key(path)}", linestyle=_LINE_STYLES[sizes.index(size) % len(_LINE_STYLES)])
        return bool(series)

    def save(figure, axis, name: str, title: str, xlabel: str, ylabel: str = "median latency (ms)"):
        axis.set(xscale="log", yscale="log", title=title, xlabel=xlabel, ylabel=ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
        figure.tight_layout()
        path = directory / name
        figure.savefig(path, dpi=120)
        written.append(path)

    figure, axis = pyplot.subplots(figsize=(7, 5))
    if lines(axis, "end_to_end", "batch_size"):
        save(figure, axis, "latency_vs_batch.png", "Raw ids in, top-20 raw ids out", "batch size (sessions)")
    pyplot.close(figure)

    figure, axis = pyplot.subplots(figsize=(7, 5))
    if lines(axis, "catalog", "n_items"):
        save(figure, axis, "latency_vs_catalog.png", "Growth with the catalog (d = 100)", "items in the catalog")
    pyplot.close(figure)

    figure, axis = pyplot.subplots(figsize=(7, 5))
    if lines(axis, "session_length", "session_length"):
        save(figure, axis, "latency_vs_session_length.png", "Growth with session length", "clicks per session")
    pyplot.close(figure)

    service = [b for b in _suite(benchmarks, "service") if "throughput_rps" in b["extra_info"]]
    if service:
        figure, axis = pyplot.subplots(figsize=(7, 5))
        for mode in ("direct", "batcher", *_ENGINES):
            points = sorted((b["extra_info"]["clients"], b["extra_info"]["throughput_rps"])
                            for b in service if b["extra_info"]["mode"] == mode)
            if points:
                axis.plot([x for x, _ in points], [y for _, y in points], marker="o", label=mode)
        save(figure, axis, "service_throughput.png", "Service path: throughput", "concurrent clients", "requests/s")
        pyplot.close(figure)
    return written


def render(benchmarks: Sequence[Benchmark], header: dict) -> str:
    """The whole text report."""
    machine = header.get("machine_info") or {}
    commit = header.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    sections = [
        f"srgnn-rt latency report  {header.get('datetime', '')}  commit {str(commit.get('id', '?'))[:10]}"
        f"{' (dirty)' if commit.get('dirty') else ''}\n{cpu.get('brand_raw', machine.get('processor', '?'))}, "
        f"{cpu.get('count', '?')} cores, Python {machine.get('python_version', '?')}",
    ]
    for title, table in (
        ("End to end (raw ids in, top-20 raw ids out); ref/path = speed-up over the reference, "
         "path/floor = times the scoring product alone", end_to_end_table(benchmarks)),
        ("Session length", session_length_table(benchmarks)),
        ("Catalog size (synthetic bundles, d = 100; peak RSS of a process serving B = 1, 100, 512)",
         catalog_table(benchmarks)),
        ("Item index on a trained model (recall@20 against exact scoring)", trained_recall_table(benchmarks)),
        ("Service path (clients each wait for their answer)", service_table(benchmarks)),
        ("Offline scoring (Parquet in and out, batches of 512) beside recommend on batches of 512 in a loop",
         scoring_table(benchmarks)),
        ("Other suites", other_table(benchmarks)),
    ):
        if table:
            sections.append(f"{title}\n{table}")
    checks = goals(benchmarks)
    if checks:
        sections.append("Goals (CPU, 2 threads, 43,098 items, d = 100)\n" + "\n".join(checks))
    return "\n\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report`` (and ``srgnn-rt bench``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="*", help="pytest-benchmark JSON files (default: the newest saved run)")
    parser.add_argument("--run", action="store_true", help="run the suites first and report on that run")
    parser.add_argument("--bundle", help="with --run: the bundle to benchmark (default: the synthetic one)")
    parser.add_argument("--plots", type=Path, default=DEFAULT_PLOTS, help=f"PNG directory (default {DEFAULT_PLOTS})")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:split]), argv[split + 1 :]  # after --: more pytest arguments (--run)
    try:
        if args.run:
            with tempfile.TemporaryDirectory() as scratch:
                output = Path(scratch) / "run.json"
                run_suites(args.bundle, extra, output)
                benchmarks, header = load_runs([output])
        else:
            benchmarks, header = load_runs(args.json or [newest_saved_run()])
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"benchmarks.report: error: {exc}", file=sys.stderr)
        return 2
    print(render(benchmarks, header))
    try:
        written = plot(benchmarks, args.plots)
    except ImportError:
        print("\nno plots: matplotlib is not installed (pip install 'srgnn-rt[bench]')")
        return 0
    if written:
        print("\nplots: " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
