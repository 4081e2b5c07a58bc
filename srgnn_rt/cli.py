"""``srgnn-rt``: the command line of the project.

Serving commands (``recommend``, ``synth``) need only the runtime. Commands of
the torch side (``prepare``, ``train``, ``evaluate``, ``export``, ``quickstart``)
import it when they run, so that a serving install without torch still has a working CLI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time

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


def _cmd_triton(args: argparse.Namespace) -> None:
    from .engines.triton import write_repository

    python_path = list(args.python_path)
    if args.local_server_env:
        from .engines.triton_server import server_python_path

        python_path += server_python_path()
    model_dir = write_repository(
        args.bundle, args.repo_dir, name=args.name, max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us, instances=args.instances, kind=args.kind,
        threads=args.threads, python_path=python_path, overwrite=args.overwrite,
    )
    print(f"wrote Triton model {model_dir} (serve with: tritonserver --model-repository {model_dir.parent})")


def _cmd_serve(args: argparse.Namespace) -> None:
    from .engines import ray_serve

    if args.autoscale:
        low, sep, high = args.autoscale.partition(":")
        if not (sep and low.isdigit() and high.isdigit() and 0 <= int(low) <= int(high) and int(high) >= 1):
            raise ValueError(f"--autoscale takes MIN:MAX with 0 <= MIN <= MAX, MAX >= 1, got {args.autoscale!r}")
        scaling = dict(replicas=None, autoscaling={"min_replicas": int(low), "max_replicas": int(high),
                                                   "target_ongoing_requests": args.target_ongoing})
    else:
        scaling = dict(replicas=args.replicas)
    application = ray_serve.app(args.bundle, device=args.device, threads=args.threads, num_cpus=args.replica_cpus,
                                max_batch_cost=args.max_batch_cost, batch_wait_ms=args.batch_wait_ms, **scaling)
    from ray import serve

    ray_serve.start_ray(args.address)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service manager's stop drains like Ctrl-C
    deployed = False
    try:
        url = ray_serve.run(application, name=args.name, host=args.host, port=args.port)
        deployed = True
        print(f"serving {args.bundle} at {url} (POST {{\"session\": [...], \"k\": 20}}; GET {url}health); "
              "Ctrl-C stops", flush=True)
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

    triton = commands.add_parser("triton", help="a bundle -> a Triton model repository (Python backend)")
    triton.add_argument("bundle")
    triton.add_argument("repo_dir", help="model repository; the model goes to REPO_DIR/NAME, other models stay")
    triton.add_argument("--name", default="srgnn", help="model name (default srgnn)")
    triton.add_argument("--max-batch", type=_positive_int, default=64, help="requests per batch (default 64)")
    triton.add_argument("--max-queue-delay-us", type=int, default=1000,
                        help="dynamic batcher's wait to fill a batch (default 1000)")
    triton.add_argument("--instances", type=_positive_int, default=1, help="model instances (default 1)")
    triton.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="instance kind (default cpu)")
    triton.add_argument("--threads", type=_positive_int, help="onnxruntime threads per instance")
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
    serve.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica (default 1)")
    serve.add_argument("--max-batch-cost", type=_positive_int, default=1024,
                       help="a batch closes at this total cost (clicks, or the runtime's request cost)")
    serve.add_argument("--batch-wait-ms", type=float, default=2.0, help="longest wait to fill a batch (default 2)")
    serve.set_defaults(run=_cmd_serve)

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
