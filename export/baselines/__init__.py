"""Baselines beside SR-GNN: most-popular, sequential rules, SKNN, V-SKNN, STAN and VSTAN.

Each is fitted on the whole training sessions rebuilt from the prepared
training prefixes (``sessions.py``) and ranks the same prefixes SR-GNN ranks,
so the metrics compare. Hyper-parameters are chosen on a validation split
carved from the latest training sessions; the test split is never looked at
until the chosen configuration is fitted on all training sessions.

Search (``GRIDS``): each model's session-rec default first, then the
configurations session-rec published for Diginetica, then a few neighbours of
them; the first configuration with the best validation metric wins, so with
no improvement the default stays. Validation: the latest ``valid_fraction``
(10 %) of training sessions, at most ``max_valid_sessions`` (5,000), fitted on
the sessions before them.

Time: STAN and VSTAN decay a neighbour by its age in days. A prepared dataset
keeps the order of sessions but not their dates, so a session's age is its
distance in sessions from the end of training divided by the session rate of
the test window (``test_sessions / test_days`` from the manifest); without a
``test_days`` the decay is off. The report says which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.graph import CSRSessions
from srgnn_rt.metrics import ranking_metrics

from .knn import SKNN, STAN, VSKNN, VSTAN, SessionIndex
from .rules import MostPopular, SequentialRules
from .sessions import rebuild_sessions

__all__ = ["BASELINES", "GRIDS", "BaselineResult", "parse_baselines", "run_baselines", "session_rate"]

MODELS = {"pop": MostPopular, "sr": SequentialRules, "sknn": SKNN, "vsknn": VSKNN, "stan": STAN, "vstan": VSTAN}
BASELINES = tuple(MODELS)

GRIDS: dict[str, list[dict]] = {
    "pop": [{}],
    "sr": [
        {"steps": 10, "weighting": "div", "pruning": 20},  # session-rec default
        {"steps": 25, "weighting": "div", "pruning": 20},  # session-rec, Diginetica
        {"steps": 10, "weighting": "quadratic", "pruning": 20},
        {"steps": 10, "weighting": "div", "pruning": 0},
    ],
    "sknn": [
        {"k": 100, "sample_size": 1000},  # session-rec default (cosine)
        {"k": 50, "sample_size": 1000},  # session-rec, Diginetica (k)
        {"k": 100, "sample_size": 5000},
        {"k": 500, "sample_size": 5000},
    ],
    "vsknn": [
        {"k": 100, "sample_size": 1000, "weighting": "div", "weighting_score": "div", "idf_weighting": 0.0},
        {"k": 50, "sample_size": 2500, "weighting": "div", "weighting_score": "linear", "idf_weighting": 10.0},
        {"k": 100, "sample_size": 1000, "weighting": "quadratic", "weighting_score": "quadratic",
         "idf_weighting": 5.0},
        {"k": 500, "sample_size": 5000, "weighting": "div", "weighting_score": "div", "idf_weighting": 0.0},
    ],
    "stan": [
        {"k": 100, "sample_size": 5000, "lambda_spw": 1.02, "lambda_snh": 5.0, "lambda_inh": 2.05},  # default
        {"k": 500, "sample_size": 10000, "lambda_spw": 1.225, "lambda_snh": 20.0, "lambda_inh": 4.9},  # Digi MRR
        {"k": 100, "sample_size": 5000, "lambda_spw": 2.45, "lambda_snh": 20.0, "lambda_inh": 9.8},  # Digi HR
    ],
    "vstan": [
        {"k": 100, "sample_size": 5000, "similarity": "cosine", "lambda_spw": 1.02, "lambda_snh": 5.0,
         "lambda_inh": 2.05, "lambda_ipw": 1.02, "lambda_idf": 5.0},  # session-rec default
        {"k": 1500, "sample_size": 5000, "similarity": "cosine", "lambda_spw": 4.9, "lambda_snh": 40.0,
         "lambda_inh": 4.9, "lambda_ipw": 1.225, "lambda_idf": 10.0},  # Diginetica MRR
        {"k": 100, "sample_size": 1000, "similarity": "vec", "lambda_spw": 4.9, "lambda_snh": 80.0,
         "lambda_inh": 9.8, "lambda_ipw": 4.9, "lambda_idf": 5.0},  # Diginetica HR
    ],
}
_BATCH_ENTRIES = 2_000_000  # prefixes per batch x candidates per prefix: bounds temporary memory


def parse_baselines(text: str) -> tuple[str, ...]:
    """``"pop,sknn"`` -> ``("pop", "sknn")``; ``"all"`` -> every baseline; unknown names raise ValueError."""
    names = BASELINES if text.strip() == "all" else tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        raise ValueError(f"--baselines: unknown baseline(s) {unknown or [text]}; choose from {', '.join(BASELINES)}")
    return tuple(dict.fromkeys(names))


@dataclass
class BaselineResult:
    """One fitted baseline on the test split: ``ranks: int64[P]``, ``top_k: int64[P, K]``, the chosen
    parameters, every configuration tried on validation, and the fit / ranking seconds (wall clock)
    and the CPU seconds of both (``time.process_time``: what a loaded machine does not inflate)."""

    name: str
    params: dict
    ranks: np.ndarray
    top_k: np.ndarray
    fit_seconds: float
    rank_seconds: float
    cpu_seconds: float
    search: list[dict] = field(default_factory=list)


def session_rate(manifest: dict) -> float | None:
    """Sessions per day in the test window (``test_sessions / test_days``), or None when unknown."""
    days = (manifest.get("options") or {}).get("test_days")
    sessions = manifest.get("test_sessions")
    if not isinstance(days, (int, float)) or not days > 0 or not sessions:
        return None
    return sessions / days


def _index(sessions: CSRSessions, n_items: int, rate: float | None) -> SessionIndex:
    n = len(sessions.offsets) - 1
    ages = None if rate is None else (n - 1 - np.arange(n)) / rate
    return SessionIndex(sessions, n_items, ages)


def _rank(model, split: PrefixSplit, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks int64[P] and top-k int64[P, K] of every prefix of ``split``, in batches."""
    rows = max(1, _BATCH_ENTRIES // max(getattr(model, "sample_size", 1), 1))
    ranks, tops = [], []
    for begin in range(0, len(split), rows):
        end = min(begin + rows, len(split))
        offsets = split.offsets[begin : end + 1]
        items = split.items[offsets[0] : offsets[-1]]
        r, top = model.rank(items, offsets - offsets[0], split.targets[begin:end], k)
        ranks.append(r)
        tops.append(top)
    return np.concatenate(ranks), np.concatenate(tops)


def _tail(split: PrefixSplit, first: int) -> PrefixSplit:
    start = split.offsets[first]
    return PrefixSplit(split.items[start:], split.offsets[first:] - start, split.targets[first:])


def _selection_cutoff(select_metric: str) -> int:
    name, _, cutoff = select_metric.partition("@")
    if name not in ("HR", "MRR", "NDCG") or not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(f"select_metric must look like HR@20, MRR@20 or NDCG@20, got {select_metric!r}")
    return int(cutoff)


def run_baselines(
    dataset: PreparedDataset,
    names=BASELINES,
    *,
    k: int = 50,
    select_metric: str = "HR@20",
    search: bool = True,
    valid_fraction: float = 0.1,
    max_valid_sessions: int = 5000,
    log=None,
) -> list[BaselineResult]:
    """Choose each baseline's configuration on validation, fit it on all training sessions and rank
    the test prefixes (top ``k`` kept). ``search=False`` keeps the defaults."""
    metric_k = _selection_cutoff(select_metric)
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
    sessions, owner = rebuild_sessions(dataset.train)
    rate = session_rate(dataset.manifest)
    n_sessions = len(sessions.offsets) - 1
    full = _index(sessions, dataset.n_items, rate)
    valid_sessions = min(max(1, round(n_sessions * valid_fraction)), max_valid_sessions)
    cut = n_sessions - valid_sessions
    searching = search and cut >= 1
    if searching:
        fit_part = _index(CSRSessions(sessions.items[: sessions.offsets[cut]], sessions.offsets[: cut + 1]),
                          dataset.n_items, rate)
        valid = _tail(dataset.train, int(np.searchsorted(owner, cut)))
    results = []
    for name in names:
        grid = GRIDS[name]
        trials = []
        chosen = grid[0]
        if searching and len(grid) > 1:
            best = -1.0
            for params in grid:
                started = time.perf_counter()
                ranks, _ = _rank(MODELS[name](**params).fit(fit_part), valid, 1)
                value = ranking_metrics(ranks, ks=(metric_k,))[select_metric]
                trials.append({"params": params, select_metric: value, "seconds": time.perf_counter() - started})
                if log:
                    log(f"{name} {params}: validation {select_metric} {value:.2f}")
                if value > best:
                    best, chosen = value, params
        started, cpu_started = time.perf_counter(), time.process_time()
        model = MODELS[name](**chosen).fit(full)
        fitted = time.perf_counter()
        ranks, top_k = _rank(model, dataset.test, k)
        cpu = time.process_time() - cpu_started
        results.append(BaselineResult(name, dict(chosen), ranks, top_k, fitted - started,
                                      time.perf_counter() - fitted, cpu, trials))
        if log:
            log(f"{name}: fitted in {fitted - started:.2f} s, ranked {len(ranks)} prefixes in "
                f"{time.perf_counter() - fitted:.2f} s ({cpu:.2f} CPU s for both)")
    return results

