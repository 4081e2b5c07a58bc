"""``srgnn-rt``: the command line of the project.

Serving commands (``recommend``, ``synth``) need only the runtime. Commands of
the torch side (``prepare``, ``train``, ``evaluate``, ``export``, ``quickstart``)
import it when they run, so that a serving install without torch still has a working CLI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import __version__


def _torch_side(module: str):
    """Import ``srgnn_rt_torch.<module>``, saying how to install it when torch is missing."""
    try:
        return importlib.import_module(f"srgnn_rt_torch.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "onnx", "onnxscript", "tqdm"):
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
    if args.format == "csv":
        options = dict(
            session_column=_column(args.session_column),
            item_column=_column(args.item_column),
            time_column=_column(args.time_column),
            delimiter=args.delimiter,
            header=not args.no_header,
            where=dict(_where(condition) for condition in args.where) or None,
        )
    dataset = prepare.prepare(
        args.input, args.out_dir, format=args.format, test_days=args.test_days, fraction=args.fraction,
        min_item_count=args.min_item_count, overwrite=args.overwrite, **options,
    )
    manifest = dataset.manifest
    print(json.dumps({key: manifest[key] for key in manifest if key not in ("options",)}, indent=2))


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
                     "max_length", "edge_weight", "valid_fraction", "seed")
        if getattr(args, name) is not None
    }
    result = train.train(
        args.data_dir,
        args.out,
        train.TrainConfig(**options),
        device=args.device,
        threads=args.threads,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(json.dumps({"run_dir": result.run_dir, "best": result.best}, indent=2))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    evaluate = _torch_side("evaluate")
    report = evaluate.evaluate_run(
        args.run_dir, args.data_dir, split=args.split, ks=tuple(args.ks), batch_size=args.batch_size,
        device=args.device,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    names = list(report["model"])
    print(f"{report['split']} split, {report['prefixes']} prefixes (metrics in %)")
    print(f"{'':>14}" + "".join(f"{name:>10}" for name in names))
    for label, key in (("SR-GNN", "model"), ("most popular", "most_popular")):
        print(f"{label:>14}" + "".join(f"{report[key][name]:>10.2f}" for name in names))


def _cmd_export(args: argparse.Namespace) -> None:
    onnx_export = _torch_side("onnx_export")
    bundle = onnx_export.export_run(args.run_dir, args.bundle_dir, data_dir=args.data, overwrite=args.overwrite)
    print(f"wrote verified bundle {bundle.path} ({bundle.n_items} items, d = {bundle.embedding_size})")


def _read_sessions(lines, raw_id_type: type | None):
    """Sessions from JSON lines (``[1, 2, 3]``) or comma-separated ids; blank lines skipped."""
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            try:
                session = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}: not a JSON array: {exc}") from None
            if not isinstance(session, list):
                raise ValueError(f"line {number}: expected a JSON array of item ids")
        else:
            session = [part.strip() for part in line.split(",")]
            if raw_id_type is int:
                try:
                    session = [int(part) for part in session]
                except ValueError:
                    raise ValueError(f"line {number}: this model's item ids are integers, got {line!r}") from None
        yield number, session


def _cmd_recommend(args: argparse.Namespace) -> None:
    from .runtime import Recommender

    recommender = Recommender.load(args.bundle, device=args.device, threads=args.threads)
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    with source:
        pending: list = []

        def flush():
            results = recommender.recommend([s for _, s in pending], k=args.k, exclude_seen=args.exclude_seen)
            for result in results:
                sys.stdout.write(json.dumps(result.to_dict()) + "\n")
            sys.stdout.flush()
            pending.clear()

        for number, session in _read_sessions(source, recommender.raw_id_type):
            pending.append((number, session))
            if len(pending) == args.batch_size:
                flush()
        if pending:
            flush()


def _cmd_score(args: argparse.Namespace) -> None:
    from .scoring import score_file, score_ray

    options = dict(k=args.k, exclude_seen=args.exclude_seen, session_column=args.session_column,
                   items_column=args.items_column, batch_size=args.batch_size, device=args.device)
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
    prepare.add_argument("--format", required=True, choices=("diginetica", "yoochoose", "csv"))
    prepare.add_argument("input", help="the click log file")
    prepare.add_argument("out_dir")
    prepare.add_argument("--test-days", type=float, help="days of test data (default 7, Yoochoose 1)")
    prepare.add_argument("--fraction", type=_positive_int, default=1, help="keep the last 1/F of training prefixes")
    prepare.add_argument("--min-item-count", type=_positive_int, default=5)
    prepare.add_argument("--session-column", default="session", help="csv: name or 0-based index")
    prepare.add_argument("--item-column", default="item", help="csv: name or 0-based index")
    prepare.add_argument("--time-column", default="time", help="csv: epoch seconds or ISO-8601 text")
    prepare.add_argument("--delimiter", default=",")
    prepare.add_argument("--no-header", action="store_true")
    prepare.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                         help="csv: keep only rows holding VALUE in COLUMN (repeatable)")
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
    train.add_argument("--valid-fraction", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", default="auto", help="auto | cpu | cuda")
    train.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    train.add_argument("--resume", action="store_true")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="HR/MRR/NDCG@K of a run, beside most-popular")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("data_dir")
    evaluate.add_argument("--split", default="test", choices=("train", "test"))
    evaluate.add_argument("--ks", type=_positive_int, nargs="+", default=[10, 20, 50])
    evaluate.add_argument("--batch-size", type=_positive_int, default=100)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=_cmd_evaluate)

    export = commands.add_parser("export", help="a run's best model -> a verified ONNX bundle")
    export.add_argument("run_dir")
    export.add_argument("bundle_dir")
    export.add_argument("--data", help="prepared dataset (default: the one the run was trained on)")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(run=_cmd_export)

    recommend = commands.add_parser("recommend", help="serve sessions from a bundle: JSON lines out")
    recommend.add_argument("bundle")
    recommend.add_argument("input", nargs="?", default="-",
                           help="sessions, one per line: a JSON array or comma-separated ids (default: stdin)")
    recommend.add_argument("-k", type=_positive_int, default=20)
    recommend.add_argument("--exclude-seen", action="store_true")
    recommend.add_argument("--batch-size", type=_positive_int, default=256)
    recommend.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    recommend.add_argument("--threads", type=_positive_int)
    recommend.set_defaults(run=_cmd_recommend)

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
