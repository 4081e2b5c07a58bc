"""``srgnn-rt``: the command line of the project.

Serving commands (``recommend``, ``synth``) need only the runtime. Commands of
the torch side (``prepare``, ``train``, ``evaluate``, ``export``, ``quickstart``)
import it when they run, so that a serving install without torch still has a working CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import queue
import re
import reprlib
import signal
import sys
import threading
import time

from . import __version__


def _torch_side(module: str):
    """Import ``srgnn_rt_torch.<module>``, saying how to install it when torch is missing."""
    try:
        return importlib.import_module(f"srgnn_rt_torch.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "onnx", "onnxscript", "tqdm", "scipy"):
            raise SystemExit(
                f"srgnn-rt: this command needs the training extra ({exc.name} is not installed): "
                "pip install 'srgnn-rt[train]'"
            ) from None
        raise


def _cmd_synth(args: argparse.Namespace) -> None:
    from .synthetic import SyntheticConfig, generate_click_log

    log = generate_click_log(
        args.sessions, seed=args.seed, days=args.days, config=SyntheticConfig(n_items=args.items)
    )
    log.write_csv(args.output)
    print(f"wrote {len(log)} clicks of {args.sessions} sessions over {args.items} items to {args.output}")


def _column(text: str) -> int | str:
    """A CSV column: a 0-based index when all digits, else a header name."""
    return int(text) if text.isdigit() else text


def _cmd_prepare(args: argparse.Namespace) -> None:
    prepare = _torch_side("prepare")
    options = {}
    if args.format in ("csv", "parquet"):
        options = dict(
            session_column=_column(args.session_column),
            item_column=_column(args.item_column),
            time_column=_column(args.time_column),
            where=dict(_where(condition) for condition in args.where) or None,
            time_unit=args.time_unit,
        )
        if args.format == "csv":
            options.update(delimiter=args.delimiter, header=not args.no_header)
    dataset = prepare.prepare(
        args.input, args.out_dir, format=args.format, test=args.test, test_days=args.test_days,
        fraction=args.fraction, min_item_count=args.min_item_count, overwrite=args.overwrite, **options,
    )
    manifest = dataset.manifest
    print(json.dumps({key: manifest[key] for key in manifest if key not in ("options",)}, indent=2))
    removed = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in manifest["removed"].items())
    print(f"filters removed: {removed}", file=sys.stderr)


def _delimiter(text: str) -> str:
    """A delimiter: one character, or an escape / name of a tab (``\\t``, ``tab``)."""
    named = {"\\t": "\t", "tab": "\t", "\\x09": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    text = named.get(text.lower(), text)
    if len(text.encode()) != 1:
        raise argparse.ArgumentTypeError(f"must be one character, '\\t' or 'tab', got {text!r}")
    return text


def _where(condition: str) -> tuple[int | str, str]:
    column, sep, value = condition.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--where takes COLUMN=VALUE, got {condition!r}")
    return _column(column), value


def _cmd_train(args: argparse.Namespace) -> None:
    train = _torch_side("train")
    options = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "lr", "l2", "patience", "hidden_size", "step", "nonhybrid",
                     "max_length", "edge_weight", "select_on", "valid_fraction", "seed")
        if getattr(args, name) is not None
    }
    if args.resume:  # the run's saved options, changed where given (train() refuses what cannot change)
        config = train.saved_config(args.out).replace(**options) if options else None
    else:
        config = train.TrainConfig(**options)
    run = dict(device=args.device, threads=args.threads, resume=args.resume, progress=not args.quiet)
    if args.nproc > 1:
        distributed = _torch_side("distributed")
        try:
            result = distributed.launch(args.data_dir, args.out, config, nproc=args.nproc, **run)
        except distributed.DistributedTrainingError as exc:
            raise SystemExit(f"srgnn-rt train: error: {exc}") from None
    else:
        result = train.train(args.data_dir, args.out, config, **run)
    print(json.dumps({"run_dir": result.run_dir, "selection": result.selection, "best": result.best,
                      "notes": result.notes}, indent=2))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    evaluate = _torch_side("evaluate")
    report_module = _torch_side("report")
    names = args.baselines or ("pop" if args.split == "test" else "")  # baselines only rank the test split
    baselines = _torch_side("baselines").parse_baselines(names) if names else ()
    report = evaluate.evaluate_run(
        args.run_dir, args.data_dir, split=args.split, ks=tuple(args.ks), batch_size=args.batch_size,
        device=args.device, baselines=baselines, search=not args.no_search, select_metric=args.select_metric,
        n_resamples=args.resamples, seed=args.seed, log=None if args.json else _progress,
    )
    _show_report(report_module, report, args)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _show_report(report_module, report: dict, args: argparse.Namespace) -> None:
    if args.plots:
        report["plots"] = report_module.write_plots(report, args.plots)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(report_module.format_table(report))
    if args.plots:
        print(f"plots: {', '.join(report['plots'])}")


def _cmd_baselines(args: argparse.Namespace) -> None:
    report_module = _torch_side("report")
    report = report_module.baseline_report(
        args.data_dir, _torch_side("baselines").parse_baselines(args.baselines), ks=tuple(args.ks),
        search=not args.no_search, select_metric=args.select_metric, n_resamples=args.resamples, seed=args.seed,
        log=None if args.json else _progress,
    )
    _show_report(report_module, report, args)


def _cmd_runs(args: argparse.Namespace) -> None:
    report_module = _torch_side("report")
    evaluations = None
    if args.data:
        evaluate = _torch_side("evaluate")
        evaluations = [
            evaluate.evaluate_run(run_dir, args.data, device=args.device, n_resamples=10)["model"]
            for run_dir in args.run_dirs
        ]
    summary = report_module.summarize_runs(args.run_dirs, evaluations)
    print(json.dumps(summary, indent=2) if args.json else report_module.format_runs(summary))


def _cmd_export(args: argparse.Namespace) -> None:
    onnx_export = _torch_side("onnx_export")
    bundle = onnx_export.export_run(args.run_dir, args.bundle_dir, data_dir=args.data, overwrite=args.overwrite,
                                    exact=False if args.retrieval_only else None)
    kind = "retrieval-only bundle (no model.onnx)" if bundle.retrieval_only else "bundle"
    print(f"wrote verified {kind} {bundle.path} ({bundle.n_items} items, d = {bundle.embedding_size})")
    if bundle.retrieval_only:
        print(f"serve it in index mode after: srgnn-rt index {bundle.path}")


_BOM = b"\xef\xbb\xbf"
_INT_ID = re.compile(r"-?[0-9]+")
_SKIP_CHUNK = 1 << 20  # bytes read at a time while skipping an over-long line


def _lines(stream, max_bytes: int):
    """(number, line) for each line of a binary stream, numbered from 1: its bytes without the
    newline (and without a UTF-8 BOM on line 1), or, for a line longer than ``max_bytes``, its
    length (an int): such a line is skipped in chunks, never held in memory."""
    number = 0
    while chunk := stream.readline(max_bytes + 1):
        number += 1
        if chunk.endswith(b"\n") or len(chunk) <= max_bytes:
            line = chunk.removesuffix(b"\n")
            yield number, line.removeprefix(_BOM) if number == 1 else line
            continue
        length = len(chunk)
        while chunk and not chunk.endswith(b"\n"):
            chunk = stream.readline(_SKIP_CHUNK)
            length += len(chunk)
        yield number, length - chunk.endswith(b"\n")


def _parse_session(line: bytes, raw_id_type: type | None) -> list:
    """The session of one input line: a JSON array of item ids, or ids separated by commas (ints
    when the model's ids are ints). ValueError saying what is wrong (the caller names the line)."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not text:
        raise ValueError("blank line: expected a session (a JSON array or comma-separated item ids)")
    if text.startswith("["):
        try:
            session = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, too deep
            raise ValueError(f"not a JSON array of item ids: {exc}") from None
        for position, item in enumerate(session):
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise ValueError(f"position {position} holds {reprlib.repr(item)}, not an item id (an integer "
                                 "or a string)")
            if raw_id_type is not None and not isinstance(item, raw_id_type):
                raise ValueError(f"position {position} holds {reprlib.repr(item)}, but this model's item ids "
                                 f"are {'integers' if raw_id_type is int else 'strings'}")
        return session
    session = [part.strip() for part in text.split(",")]
    if raw_id_type is int:
        for position, part in enumerate(session):
            if not _INT_ID.fullmatch(part):
                raise ValueError(f"this model's item ids are integers, got {reprlib.repr(part)} at position "
                                 f"{position}")
            try:
                session[position] = int(part)
            except ValueError:  # beyond Python's digit limit for int()
                raise ValueError(f"the item id at position {position} has {len(part):,} digits") from None
    return session


def _read_sessions(source, lines: queue.Queue, stop: threading.Event, *, max_line_bytes: int,
                   raw_id_type: type | None) -> None:
    """Reader thread: for each input line, put (number, its session or the ValueError that refuses
    it) on ``lines``; then None at the end of the input, or the error that stopped the reading.
    Stops early once ``stop`` is set."""
    try:
        with source as stream:
            for number, line in _lines(stream, max_line_bytes):
                if stop.is_set():
                    break
                if isinstance(line, int):
                    session = ValueError(f"the line is {line:,} bytes, more than --max-line-bytes {max_line_bytes:,}")
                else:
                    try:
                        session = _parse_session(line, raw_id_type)
                    except ValueError as exc:
                        session = exc
                lines.put((number, session))
    except Exception as exc:  # _batches raises it in the main thread
        lines.put(exc)
    else:
        lines.put(None)


def _batches(lines: queue.Queue, most: int):
    """Lists of at most ``most`` (number, session or ValueError): the lines read so far, waiting
    only for the first of each list. ValueError when reading the input failed."""
    while True:
        item = lines.get()
        batch = []
        while item is not None and not isinstance(item, Exception):
            batch.append(item)
            if len(batch) == most:
                break
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
        if batch:
            yield batch
        if item is None:
            return
        if isinstance(item, Exception):
            raise ValueError(f"reading the input failed: {item}") from item


def _write_answers(recommender, lines: queue.Queue, out, args: argparse.Namespace) -> None:
    """One JSON line per input line, in order: the answer, or ``{"line": N, "error": "..."}``;
    each batch flushed as soon as it is answered. With ``--fail-fast``, ValueError at the first
    error (after writing its line)."""
    from .batcher import recommend_each

    options = {"exclude_seen": args.exclude_seen}
    for batch in _batches(lines, args.batch_size):
        sessions = [session for _, session in batch if not isinstance(session, ValueError)]
        answers = iter(recommend_each(recommender, sessions, args.k, options) if sessions else ())
        for number, session in batch:
            answer = session if isinstance(session, ValueError) else next(answers)
            if isinstance(answer, Exception):
                out.write(json.dumps({"line": number, "error": str(answer)}) + "\n")
                if args.fail_fast:
                    out.flush()
                    raise ValueError(f"line {number}: {answer}")
            else:
                out.write(json.dumps(answer.to_dict()) + "\n")
        out.flush()


def _cmd_recommend(args: argparse.Namespace) -> None:
    from .runtime import Recommender

    recommender = Recommender.load(args.bundle, device=args.device, threads=args.threads,
                                  retrieval=args.retrieval)
    if args.k > recommender.n_items:  # else every line would get the same error
        raise ValueError(f"-k {args.k} is more than the model's {recommender.n_items} items")
    try:
        source = contextlib.nullcontext(sys.stdin.buffer) if args.input == "-" else open(args.input, "rb")
    except OSError as exc:
        raise ValueError(f"cannot read {args.input}: {exc.strerror}") from None
    # Read ahead by a bounded amount: a batch holds the lines read while the previous one ran.
    lines: queue.Queue = queue.Queue(maxsize=2 * args.batch_size)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_sessions, args=(source, lines, stop), name="srgnn-rt-recommend-reader", daemon=True,
        kwargs=dict(max_line_bytes=args.max_line_bytes, raw_id_type=recommender.raw_id_type),
    )
    reader.start()
    try:
        _write_answers(recommender, lines, sys.stdout, args)
    except BrokenPipeError:
        # Whoever read the output is gone (``| head``): end quietly, with the status of a stage
        # that SIGPIPE ended, and keep Python's final flush from writing to the closed pipe.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(128 + signal.SIGPIPE) from None
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):  # unblock the reader so that it ends
            while True:
                lines.get_nowait()


def _cmd_triton(args: argparse.Namespace) -> None:
    from .engines.triton import write_repository

    python_path = list(args.python_path)
    if args.local_server_env:
        from .engines.triton_server import server_python_path

        python_path += server_python_path()
    model_dir = write_repository(
        args.bundle, args.repo_dir, name=args.name, max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us, instances=args.instances, kind=args.kind,
        threads=args.threads, retrieval=args.retrieval, python_path=python_path, overwrite=args.overwrite,
    )
    print(f"wrote Triton model {model_dir} (serve with: tritonserver --model-repository {model_dir.parent})")


def _cmd_serve(args: argparse.Namespace) -> None:
    from .engines import ray_serve
    from .local_ray import start_ray

    if args.autoscale:
        low, sep, high = args.autoscale.partition(":")
        if not (sep and low.isdigit() and high.isdigit() and 0 <= int(low) <= int(high) and int(high) >= 1):
            raise ValueError(f"--autoscale takes MIN:MAX with 0 <= MIN <= MAX, MAX >= 1, got {args.autoscale!r}")
        scaling = dict(replicas=None, autoscaling={"min_replicas": int(low), "max_replicas": int(high),
                                                   "target_ongoing_requests": args.target_ongoing})
    else:
        scaling = dict(replicas=args.replicas)
    application = ray_serve.app(args.bundle, device=args.device, threads=args.threads, retrieval=args.retrieval,
                                num_cpus=args.replica_cpus, max_batch_cost=args.max_batch_cost,
                                batch_wait_ms=args.batch_wait_ms, access_log=args.access_log, **scaling)
    from ray import serve

    start_ray(args.address)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service manager's stop drains like Ctrl-C
    deployed = False
    try:
        url = ray_serve.run(application, name=args.name, host=args.host, port=args.port)
        deployed = True
        print(f"serving {args.bundle} at {url} (POST {{\"session\": [...], \"k\": 20}}; GET {url}health); "
              "Ctrl-C stops", flush=True)
        direct = ray_serve.replica_urls(args.name)
        if direct:
            print(f"each replica also answers on its own port, without the proxy hop: {' '.join(direct)}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if deployed:  # the replicas answer what they accepted while the proxy still runs
            serve.delete(args.name)
        serve.shutdown()


def _cmd_index(args: argparse.Namespace) -> None:
    import dataclasses

    import numpy as np

    from . import retrieval
    from .bundle import Bundle
    from .runtime import Recommender

    try:
        bundle = Bundle.load(args.bundle)
        parameters = retrieval.IndexParameters.default(
            bundle.n_items, lists=args.lists, nprobe=args.nprobe, candidates=args.candidates,
            subquantizers=args.subquantizers,
        )
        if args.kind == "IVFFlat":
            parameters = dataclasses.replace(parameters, kind="IVFFlat")
        bundle = retrieval.add_index(bundle, parameters, seed=args.seed)
        recommender = Recommender.load(bundle, device="cpu", retrieval="index")
    except ImportError as exc:
        raise SystemExit(f"srgnn-rt index: {exc}") from None
    section = bundle.manifest["retrieval"]
    print(f"added {section['kind']} index to {bundle.path}: {bundle.n_items} items, lists = {parameters.lists}, "
          f"nprobe = {parameters.nprobe}, candidates = {parameters.candidates}, built in {section['build_seconds']} s")
    if args.sessions_file is not None:
        with open(args.sessions_file, encoding="utf-8") as source:
            sessions = [session for _, session in _read_sessions(source, recommender.raw_id_type)]
        where = args.sessions_file
    else:
        sessions = [bundle.vocab.decode(s).tolist()
                    for s in retrieval.synthetic_sessions(bundle.n_items, args.recall_sessions, seed=args.seed)]
        where = "synthetic sessions"
    known = [session for session in sessions if any(bundle.vocab.encode(session))]
    s_h = recommender.session_embeddings(known)
    k = min(args.k, bundle.n_items)
    print(f"recall@{k} against exact scoring on {len(known)} {where} (set nprobe with --nprobe):")
    print(f"{'nprobe':>8}{'candidates':>12}{'recall':>10}{'ms/100':>10}")
    table = bundle.item_embeddings()
    for row in retrieval.recall_sweep(recommender.retriever, table, np.asarray(s_h), k):
        mark = "  <- stored" if row["nprobe"] == parameters.nprobe else ""
        print(f"{row['nprobe']:>8}{row['candidates']:>12}{row['recall']:>10.4f}{row['ms_per_batch_of_100']:>10.2f}"
              f"{mark}")


def _cmd_score(args: argparse.Namespace) -> None:
    from .scoring import score_file, score_ray

    options = dict(k=args.k, exclude_seen=args.exclude_seen, session_column=args.session_column,
                   items_column=args.items_column, batch_size=args.batch_size, device=args.device,
                   retrieval=args.retrieval)
    try:
        if args.engine == "ray":
            summary = score_ray(args.bundle, args.input, args.output, actors=args.actors, address=args.address,
                                threads=args.threads or 1, **options)
        else:
            summary = score_file(args.bundle, args.input, args.output, workers=args.workers, threads=args.threads,
                                 fail_fast=args.fail_fast, progress=not args.quiet, **options)
    except ImportError as exc:
        raise SystemExit(f"srgnn-rt score: {exc}") from None
    print(f"scored {summary.sessions:,} sessions ({summary.errors:,} errors) in {summary.seconds:.1f} s, "
          f"{summary.sessions_per_second:,.0f} sessions/s -> {args.output}")


def _cmd_quickstart(args: argparse.Namespace) -> None:
    quickstart = _torch_side("quickstart")
    given = {name: getattr(args, name) for name in ("sessions", "items", "epochs", "seed", "device", "threads")}
    options = quickstart.QuickstartOptions(**{name: value for name, value in given.items() if value is not None})
    quickstart.quickstart(args.workdir, options)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _report_options(parser: argparse.ArgumentParser, baselines_default: str | None) -> None:
    parser.add_argument("--baselines", default=baselines_default, metavar="NAMES",
                        help="comma-separated: pop,sr,sknn,vsknn,stan,vstan, or all "
                        f"(default: {baselines_default or 'pop on the test split'})")
    parser.add_argument("--no-search", action="store_true",
                        help="baselines keep their published defaults (no validation search)")
    parser.add_argument("--select-metric", default="HR@20", help="validation metric of the baseline search")
    parser.add_argument("--ks", type=_positive_int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--resamples", type=_positive_int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--plots", metavar="DIR", help="write HR@K / MRR@K against K, one PNG per model")
    parser.add_argument("--json", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srgnn-rt", description="SR-GNN session-based recommendation: prepare, train, export, serve."
    )
    parser.add_argument("--version", action="version", version=f"srgnn-rt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write a synthetic click log (session,item,time CSV)")
    synth.add_argument("output")
    synth.add_argument("--sessions", type=_positive_int, default=20_000)
    synth.add_argument("--items", type=_positive_int, default=5_000)
    synth.add_argument("--days", type=_positive_int, default=60)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_cmd_synth)

    prepare = commands.add_parser(
        "prepare", help="click log -> prepared dataset directory (the reference's preprocessing)"
    )
    prepare.add_argument("--format", required=True, choices=("diginetica", "yoochoose", "csv", "parquet"))
    prepare.add_argument("input", help="the click log file (with --test: the training file)")
    prepare.add_argument("out_dir")
    prepare.add_argument("--test", metavar="TEST_FILE",
                         help="the test sessions, already split off (same format): no date split is made")
    prepare.add_argument("--test-days", type=float,
                         help="days of test data (default 7, Yoochoose 1; not with --test)")
    prepare.add_argument("--fraction", type=_positive_int, default=1, help="keep the last 1/F of training prefixes")
    prepare.add_argument("--min-item-count", type=_positive_int,
                         help="drop items clicked fewer times (default 5, with --test 1)")
    prepare.add_argument("--session-column", default="session", help="csv/parquet: name, or csv 0-based index (default: session)")
    prepare.add_argument("--item-column", default="item", help="csv/parquet: name or index (default: item)")
    prepare.add_argument("--time-column", default="time",
                         help="csv/parquet: epoch number, ISO-8601 text or Parquet timestamp (default: time)")
    prepare.add_argument("--time-unit", default="auto", choices=("auto", "s", "ms", "us", "ns"),
                         help="csv/parquet: unit of epoch numbers (default: auto, from their magnitude)")
    prepare.add_argument("--delimiter", type=_delimiter, default=",", help="csv: one character, or \\t / tab (default: ,)")
    prepare.add_argument("--no-header", action="store_true", help="csv: the first line is data")
    prepare.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                         help="csv/parquet: keep only rows holding VALUE in COLUMN (repeatable)")
    prepare.add_argument("--overwrite", action="store_true")
    prepare.set_defaults(run=_cmd_prepare)

    train = commands.add_parser("train", help="train SR-GNN on a prepared dataset directory")
    train.add_argument("data_dir")
    train.add_argument("--out", required=True, help="run directory to create (or resume)")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--lr", type=float)
    train.add_argument("--l2", type=float)
    train.add_argument("--patience", type=_positive_int)
    train.add_argument("--hidden-size", type=_positive_int)
    train.add_argument("--step", type=_positive_int)
    train.add_argument("--nonhybrid", action="store_true", default=None)
    train.add_argument("--max-length", type=_positive_int)
    train.add_argument("--edge-weight", choices=("binary", "count"))
    train.add_argument("--select-on", choices=("validation", "test"),
                       help="split that chooses the checkpoint (by HR@20): validation (default), carved from the "
                            "latest training sessions; test only to reproduce the paper's protocol")
    train.add_argument("--valid-fraction", type=float, help="share of training prefixes held out (default 0.1)")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", default="auto", help="auto | cpu | cuda")
    train.add_argument("--threads", type=_positive_int, help="torch CPU threads (per process)")
    train.add_argument("--nproc", type=_positive_int, default=1,
                       help="processes training together (torch DDP via torchrun: gloo on CPU, nccl on CUDA); "
                            "the batch size stays the global one")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out exactly; --epochs extends it, --patience may change, "
                            "other options must match the run's")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="HR/MRR/NDCG/Coverage/Popularity@K of a run with 95%% intervals, beside baselines"
    )
    evaluate.add_argument("run_dir")
    evaluate.add_argument("data_dir")
    evaluate.add_argument("--split", default="test", choices=("train", "test"))
    evaluate.add_argument("--batch-size", type=_positive_int, default=100)
    evaluate.add_argument("--device", default="auto")
    _report_options(evaluate, baselines_default=None)
    evaluate.set_defaults(run=_cmd_evaluate)

    baselines = commands.add_parser("baselines", help="baselines alone on a prepared dataset's test split")
    baselines.add_argument("data_dir")
    _report_options(baselines, baselines_default="all")
    baselines.set_defaults(run=_cmd_baselines)

    runs = commands.add_parser("runs", help="mean ± sd of the metrics of several training runs (seeds)")
    runs.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    runs.add_argument("--data", help="evaluate every run on this prepared dataset's test split "
                                     "(default: the checkpoint metrics each run recorded)")
    runs.add_argument("--device", default="auto")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(run=_cmd_runs)

    export = commands.add_parser("export", help="a run's best model -> a verified ONNX bundle")
    export.add_argument("run_dir")
    export.add_argument("bundle_dir")
    export.add_argument("--data", help="prepared dataset (default: the one the run was trained on)")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--retrieval-only", action="store_true",
                        help="no exact model.onnx: encoder + item table, served with an index (chosen "
                             "automatically when the exact model would pass ONNX's 2 GB)")
    export.set_defaults(run=_cmd_export)

    recommend = commands.add_parser(
        "recommend", help="serve sessions from a bundle: one JSON line out per line in, answered as each is read"
    )
    recommend.add_argument("bundle")
    recommend.add_argument("input", nargs="?", default="-",
                           help="sessions, one per line: a JSON array or comma-separated ids (default: stdin); "
                                'a line that is not one gets {"line": N, "error": "..."}')
    recommend.add_argument("-k", type=_positive_int, default=20)
    recommend.add_argument("--exclude-seen", action="store_true")
    recommend.add_argument("--batch-size", type=_positive_int, default=256,
                           help="most sessions per model call, from the lines already read (default 256)")
    recommend.add_argument("--max-line-bytes", type=_positive_int, default=1 << 20,
                           help="longer lines get an error line, unread (default 1 MiB)")
    recommend.add_argument("--fail-fast", action="store_true",
                           help="stop at the first bad line (exit 2) instead of answering it with an error line")
    recommend.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    recommend.add_argument("--threads", type=_positive_int)
    recommend.add_argument("--retrieval", default="exact", choices=("exact", "index"),
                           help="score every item (default) or the candidates of the bundle's index (srgnn-rt index)")
    recommend.set_defaults(run=_cmd_recommend)

    triton = commands.add_parser("triton", help="a bundle -> a Triton model repository (Python backend)")
    triton.add_argument("bundle")
    triton.add_argument("repo_dir", help="model repository; the model goes to REPO_DIR/NAME, other models stay")
    triton.add_argument("--name", default="srgnn", help="model name (default srgnn)")
    triton.add_argument("--max-batch", type=_positive_int, default=64, help="requests per batch (default 64)")
    triton.add_argument("--max-queue-delay-us", type=int, default=1000,
                        help="dynamic batcher's wait to fill a batch (default 1000)")
    triton.add_argument("--instances", type=_positive_int,
                        help="model instances (default 2 on cpu, each with its share of the cores; 1 per GPU)")
    triton.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="instance kind (default cpu)")
    triton.add_argument("--threads", type=_positive_int, help="onnxruntime threads per instance")
    triton.add_argument("--retrieval", default="exact", choices=("exact", "index"),
                        help="score every item (default) or the candidates of the bundle's index (srgnn-rt index)")
    triton.add_argument("--python-path", action="append", default=[], metavar="DIR",
                        help="absolute directory put first on the server Python's sys.path (repeatable)")
    triton.add_argument("--local-server-env", action="store_true",
                        help="for the tritonserver of nvidia-pytriton on this machine: add a numpy<2 directory "
                             "(built once under ~/.cache/srgnn-rt) and this srgnn_rt to the python path")
    triton.add_argument("--overwrite", action="store_true")
    triton.set_defaults(run=_cmd_triton)

    serve = commands.add_parser("serve", help="serve a bundle over HTTP with Ray Serve (JSON in, JSON out)")
    serve.add_argument("bundle")
    scaling = serve.add_mutually_exclusive_group()
    scaling.add_argument("--replicas", type=_positive_int, help="fixed number of replicas (default 1)")
    scaling.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas")
    serve.add_argument("--target-ongoing", type=_positive_int, default=32,
                       help="autoscaling target of ongoing requests per replica (default 32)")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    serve.add_argument("--port", type=_positive_int, default=8000)
    serve.add_argument("--address", help="join the running Ray cluster at this address (default: a local Ray)")
    serve.add_argument("--name", default="srgnn", help="Serve application name (default srgnn)")
    serve.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    serve.add_argument("--threads", type=_positive_int, help="onnxruntime threads per replica")
    serve.add_argument("--retrieval", default="exact", choices=("exact", "index"),
                       help="score every item (default) or the candidates of the bundle's index (srgnn-rt index)")
    serve.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica (default 1)")
    serve.add_argument("--max-batch-cost", type=_positive_int, default=1024,
                       help="a batch closes at this total cost (clicks, or the runtime's request cost)")
    serve.add_argument("--batch-wait-ms", type=float, default=2.0,
                       help="longest wait to fill a batch while the model is busy; an idle replica "
                            "runs a request at once (default 2)")
    serve.add_argument("--access-log", action="store_true", help="Serve's log line per request (off by default)")
    serve.set_defaults(run=_cmd_serve)

    index = commands.add_parser(
        "index", help="add an approximate item index to a bundle (retrieval mode) and print its recall"
    )
    index.add_argument("bundle")
    index.add_argument("--kind", choices=("IVFPQFastScan", "IVFFlat"), default="IVFPQFastScan",
                       help="4-bit codes scanned with SIMD (default) or fp32 rows")
    index.add_argument("--lists", type=_positive_int, help="k-means cells (default ~ 2 sqrt(n_items))")
    index.add_argument("--nprobe", type=_positive_int, help="cells scanned per session (default ~ lists / 4, >= 16)")
    index.add_argument("--candidates", type=_positive_int, help="items re-scored exactly per session (default 200)")
    index.add_argument("--subquantizers", type=_positive_int,
                       help="IVFPQFastScan: 4-bit codes per item, dividing d (default d / 2)")
    index.add_argument("-k", type=_positive_int, default=20, help="recall@k to report (default 20)")
    index.add_argument("--sessions-file", help="sessions to measure recall on, one per line (default: synthetic)")
    index.add_argument("--recall-sessions", type=_positive_int, default=1000, help="synthetic sessions (default 1000)")
    index.add_argument("--seed", type=int, default=0)
    index.set_defaults(run=_cmd_index)

    score = commands.add_parser("score", help="score a table of sessions (Parquet, JSON lines, CSV) into a table")
    score.add_argument("bundle")
    score.add_argument("input", help="sessions: .parquet, .jsonl or .csv (Parquet file or directory with --engine ray)")
    score.add_argument("output", help=".parquet or .jsonl, written atomically (a directory with --engine ray)")
    score.add_argument("-k", type=_positive_int, default=20)
    score.add_argument("--exclude-seen", action="store_true")
    score.add_argument("--session-column", help="session key column (default: 'session' when present; JSON "
                                                "lines: none)")
    score.add_argument("--items-column", help="raw item ids: a list column, or one id a row grouped by session "
                                              "(default: 'items' or 'item'; JSON objects: 'session')")
    score.add_argument("--batch-size", type=_positive_int, default=512)
    score.add_argument("--workers", type=_positive_int, default=1, help="local engine: processes")
    score.add_argument("--engine", choices=("local", "ray"), default="local")
    score.add_argument("--address", help="ray engine: the cluster to join (default: a local Ray on 127.0.0.1)")
    score.add_argument("--actors", type=_positive_int, help="ray engine: actors (default: CPUs / threads)")
    score.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    score.add_argument("--threads", type=_positive_int, help="onnxruntime threads of each worker or actor")
    score.add_argument("--retrieval", default="exact", choices=("exact", "index"),
                       help="score every item (default) or the candidates of the bundle's index (srgnn-rt index)")
    score.add_argument("--fail-fast", action="store_true", help="stop at the first bad session (no output)")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(run=_cmd_score)

    quickstart = commands.add_parser("quickstart", help="synthetic data -> prepare -> train -> export -> serve")
    quickstart.add_argument("--workdir", default="srgnn-quickstart")
    quickstart.add_argument("--sessions", type=_positive_int, help="synthetic sessions (default 20,000)")
    quickstart.add_argument("--items", type=_positive_int, help="catalog size (default 3,000)")
    quickstart.add_argument("--epochs", type=_positive_int, help="training epochs (default 2)")
    quickstart.add_argument("--seed", type=int)
    quickstart.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    quickstart.add_argument("--threads", type=_positive_int)
    quickstart.set_defaults(run=_cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"srgnn-rt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
