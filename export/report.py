"""The evaluation report: metrics with session-bootstrap intervals, paired comparisons, the
printed table, HR@K / MRR@K plots, and the mean ± sd of several runs (numpy; matplotlib lazily).

A report is a JSON-ready dict::

    {"split", "prefixes", "sessions", "ks", "bootstrap": {...},
     "models": {NAME: {"selected_on", "metrics": {"HR@20": {"value", "low", "high"}, ...},
                       "curve": {"K": [...], "HR": [...], "MRR": [...]}, ...}},
     "comparisons": {BASELINE: {"HR@20": {"value", "low", "high", "p_value", "significant"}, ...}}}

Metrics are in percent; a comparison is the reference model minus the baseline
on the same prefixes, significant when its 95 % interval excludes 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.metrics import SessionBootstrap, per_prediction_metrics, popularity

from .baselines import run_baselines
from .baselines.sessions import prefix_sessions

__all__ = [
    "add_baselines",
    "baseline_report",
    "compare",
    "format_runs",
    "format_table",
    "model_entry",
    "new_report",
    "summarize_runs",
    "write_plots",
]

DEFAULT_KS = (10, 20, 50)


def model_entry(ranks: np.ndarray, top_k: np.ndarray, bootstrap: SessionBootstrap, item_counts: np.ndarray,
                ks, selected_on: str, **extra) -> dict:
    """A model's row of the report from its ``ranks: int64[P]`` and ``top_k: int64[P, >=max(ks)]``."""
    n_items = len(item_counts) - 1
    metrics = {name: bootstrap.mean(values).to_dict() for name, values in per_prediction_metrics(ranks, ks).items()}
    for k in ks:
        metrics[f"Coverage@{k}"] = bootstrap.coverage(top_k, n_items, k).to_dict()
        metrics[f"Popularity@{k}"] = bootstrap.mean(popularity(top_k, item_counts, k)).to_dict()
    cutoffs = np.arange(1, max(ks) + 1)
    ranks = np.asarray(ranks)
    hit = ranks[None, :] <= cutoffs[:, None]
    curve = {
        "K": cutoffs.tolist(),
        "HR": (100.0 * hit.mean(axis=1)).tolist(),
        "MRR": (100.0 * np.where(hit, 1.0 / ranks[None, :], 0.0).mean(axis=1)).tolist(),
    }
    return {"selected_on": selected_on, **extra, "metrics": metrics, "curve": curve}


def compare(reference_ranks: np.ndarray, other_ranks: np.ndarray, bootstrap: SessionBootstrap, ks) -> dict:
    """Paired differences (reference - other) of HR/MRR/NDCG@K with intervals and p-values."""
    mine, theirs = per_prediction_metrics(reference_ranks, ks), per_prediction_metrics(other_ranks, ks)
    return {name: bootstrap.difference(mine[name], theirs[name]).to_dict() for name in mine}


def new_report(split_name: str, prefixes: PrefixSplit, ks, n_resamples: int,
               seed: int) -> tuple[dict, SessionBootstrap]:
    """An empty report for ``prefixes`` and the bootstrap over their sessions."""
    if len(prefixes) == 0:
        raise ValueError(f"the {split_name} split has no prefixes: nothing to evaluate")
    groups = prefix_sessions(prefixes)
    bootstrap = SessionBootstrap(groups, n_resamples=n_resamples, seed=seed)
    report = {
        "split": split_name,
        "prefixes": len(prefixes),
        "sessions": bootstrap.n_groups,
        "ks": list(ks),
        "bootstrap": {"resamples": n_resamples, "seed": seed, "confidence": 0.95, "unit": "test session"},
        "models": {},
    }
    return report, bootstrap


def add_baselines(report: dict, bootstrap: SessionBootstrap, dataset: PreparedDataset, names, ks, search: bool,
                  select_metric: str, log, reference_ranks=None) -> None:
    """Run ``names`` (see ``baselines.run_baselines``), add their rows and, given the reference
    model's ranks, their paired comparisons."""
    results = run_baselines(dataset, names, k=max(ks), select_metric=select_metric, search=search, log=log)
    for result in results:
        searched = len(result.search) > 1
        selected_on = (f"validation ({select_metric}, {len(result.search)} configs)" if searched
                       else "published defaults")
        report["models"][result.name] = model_entry(
            result.ranks, result.top_k, bootstrap, dataset.item_counts, ks, selected_on,
            params=result.params, search=result.search, fit_seconds=result.fit_seconds,
            rank_seconds=result.rank_seconds, cpu_seconds=result.cpu_seconds,
        )
        if reference_ranks is not None:
            report.setdefault("comparisons", {})[result.name] = compare(reference_ranks, result.ranks, bootstrap, ks)


def baseline_report(
    data_dir: str | os.PathLike,
    baselines,
    *,
    ks=DEFAULT_KS,
    search: bool = True,
    select_metric: str = "HR@20",
    n_resamples: int = 1000,
    seed: int = 0,
    log=None,
) -> dict:
    """The baselines alone on the test split of a prepared dataset (no trained run needed)."""
    ks = tuple(ks)
    dataset = PreparedDataset.load(data_dir)
    report, bootstrap = new_report("test", dataset.test, ks, n_resamples, seed)
    add_baselines(report, bootstrap, dataset, baselines, ks, search, select_metric, log)
    return report


LABELS = {"pop": "most popular"}  # printed names; the JSON keeps the short ones


def _runtime(label: str, entry: dict) -> str:
    parts = [f"rank {entry['rank_seconds']:.1f}"]
    if "fit_seconds" in entry:
        parts.insert(0, f"fit {entry['fit_seconds']:.1f}")
    text = f"{label} {' + '.join(parts)}"
    if "cpu_seconds" in entry:
        text += f" ({entry['cpu_seconds']:.1f} CPU)"
    if entry.get("search"):
        text += f", search {sum(trial['seconds'] for trial in entry['search']):.1f}"
    return text


def _cell(estimate: dict) -> str:
    return f"{estimate['value']:.2f} [{estimate['low']:.2f}, {estimate['high']:.2f}]"


def format_table(report: dict) -> str:
    """The report as text: one block per cut-off K (models x metrics with 95 % intervals), then the
    paired comparisons."""
    models = report["models"]
    label_width = max(len(LABELS.get(name, name)) for name in models) + 2
    lines = [
        f"{report['split']} split: {report['prefixes']} prefixes of {report['sessions']} sessions; metrics in %, "
        f"[95 % interval: bootstrap over sessions, {report['bootstrap']['resamples']} resamples, "
        f"seed {report['bootstrap']['seed']}]"
    ]
    for k in report["ks"]:
        names = [f"{metric}@{k}" for metric in ("HR", "MRR", "NDCG", "Coverage", "Popularity")]
        lines.append("")
        lines.append(" " * label_width + "".join(f"{name:>24}" for name in names) + "   selected on")
        for label, entry in models.items():
            cells = "".join(f"{_cell(entry['metrics'][name]):>24}" for name in names)
            lines.append(f"{LABELS.get(label, label):<{label_width}}{cells}   {entry['selected_on']}")
    lines.append("")
    lines.append("seconds (wall): " + "; ".join(_runtime(LABELS.get(name, name), entry) for name, entry in models.items()))
    comparisons = report.get("comparisons") or {}
    if comparisons:
        reference = report["reference"]
        lines.append("")
        lines.append(f"{reference} minus each baseline (paired; * = 95 % interval excludes 0):")
        for name, differences in comparisons.items():
            shown = []
            for metric, d in differences.items():
                mark = "*" if d["significant"] else " "
                p = "p<0.001" if d["p_value"] < 0.001 else f"p={d['p_value']:.3f}"
                shown.append(f"{metric} {d['value']:+6.2f} [{d['low']:+6.2f}, {d['high']:+6.2f}] {p}{mark}")
            for begin in range(0, len(shown), 3):
                label = LABELS.get(name, name) if begin == 0 else ""
                lines.append(f"  {label:<{label_width}}" + "   ".join(shown[begin : begin + 3]))
    return "\n".join(lines)


def write_plots(report: dict, directory: str | os.PathLike) -> list[str]:
    """One PNG per model, HR@K and MRR@K against K; returns the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ValueError("--plots needs matplotlib: pip install 'srgnn-rt[test]' (or pip install matplotlib)") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, entry in report["models"].items():
        curve = entry["curve"]
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(curve["K"], curve["HR"], label="HR@K")
        axis.plot(curve["K"], curve["MRR"], label="MRR@K")
        axis.set_xlabel("K")
        axis.set_ylabel("%")
        axis.set_title(f"{name} on the {report['split']} split ({entry['selected_on']})", fontsize=9)
        axis.grid(True, alpha=0.3)
        axis.legend()
        path = directory / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in name)}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(str(path))
    return paths


def _run_record(run_dir: str) -> tuple[str, dict, dict]:
    """(selection, checkpoint metrics, config) recorded by ``train`` in a run directory."""
    path = Path(run_dir)
    try:
        metrics = json.loads((path / "metrics.json").read_text())
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{run_dir} is not a training run: {Path(exc.filename).name} is missing") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{run_dir}: metrics.json or config.json is not valid JSON: {exc}") from None
    recorded = metrics.get("selection") or config.get("selection") or {}
    selection = recorded.get("split") if isinstance(recorded, dict) else None
    best = metrics.get("best") or {}
    scores = best.get(selection) if isinstance(selection, str) else None
    if not isinstance(scores, dict):
        raise ValueError(f"{run_dir}: metrics.json records no best checkpoint with {selection!r} metrics")
    return selection, {"epoch": best.get("epoch"), **scores}, config


def summarize_runs(run_dirs, evaluations: list[dict] | None = None) -> dict:
    """Mean ± sd over runs of each metric: the checkpoint metrics each run recorded on its selection
    split, or ``evaluations`` (one ``{"HR@20": ...}`` dict per run, e.g. on the test split)."""
    run_dirs = [os.fspath(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("give at least one run directory")
    records = [_run_record(run_dir) for run_dir in run_dirs]
    selections = sorted({selection for selection, _, _ in records})
    rows = evaluations if evaluations is not None else [scores for _, scores, _ in records]
    names = [name for name in rows[0] if name != "epoch" and all(name in row for row in rows)]
    summary = {}
    for name in names:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        summary[name] = {"mean": float(values.mean()), "sd": sd, "min": float(values.min()),
                         "max": float(values.max())}
    return {
        "runs": [{"run_dir": run_dir, "seed": config.get("train", {}).get("seed"), "selection": selection,
                  "metrics": row} for run_dir, (selection, _, config), row in zip(run_dirs, records, rows)],
        "split": "test" if evaluations is not None else "/".join(selections),
        "selection": "/".join(selections),
        "summary": summary,
    }


def format_runs(summary: dict) -> str:
    """The runs summary as text: one line per metric, mean ± sd [min, max]."""
    seeds = [run["seed"] for run in summary["runs"]]
    lines = [f"{len(seeds)} runs (seeds {', '.join(str(s) for s in seeds)}); metrics in % on the "
             f"{summary['split']} split; checkpoints selected on {summary['selection']}"]
    for name, s in summary["summary"].items():
        sd = "n/a" if s["sd"] is None else f"{s['sd']:.2f}"
        lines.append(f"  {name:<12} {s['mean']:7.2f} ± {sd:<6} [{s['min']:.2f}, {s['max']:.2f}]")
    return "\n".join(lines)
