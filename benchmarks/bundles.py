"""The bundles and requests the latency suites run on.

A suite runs on the user's bundle (``pytest benchmarks --bundle PATH``) or on a
synthetic one: SR-GNN with random weights (latency does not depend on their
values) over ``n_items`` items, exported with the project's exporter once and
cached under ``.benchmarks/bundles/<key>`` (git-ignored), the key naming every
parameter. Requests are synthetic sessions of the bundle's own raw item ids.

Imports torch only to build a bundle that is not cached yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srgnn_rt.bundle import Bundle
from srgnn_rt.synthetic import SyntheticConfig, generate_sessions_array
from srgnn_rt.vocab import RawId, Vocab

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_CACHE = REPO_ROOT / ".benchmarks" / "bundles"
DEFAULT_ITEMS = 43_097
DEFAULT_HIDDEN_SIZE = 100

_RAW_ID_BASE = 100_000  # raw ids unrelated to internal ids, as in a real catalog
_COUNT_SESSIONS = 20_000  # sessions behind the popularity counts of a synthetic bundle


def synthetic_bundle(
    n_items: int = DEFAULT_ITEMS, *, hidden_size: int = DEFAULT_HIDDEN_SIZE, seed: int = 0, cache: Path = BUNDLE_CACHE
) -> Path:
    """Directory of the synthetic bundle with these parameters, exported on first use.

    Raw item ids are distinct ints from 100,000 up, shuffled against internal ids;
    item counts come from synthetic sessions; weights are torch's default init
    under ``torch.manual_seed(seed)``. A catalog whose exact model would pass ONNX's
    2 GB (about 2.4 M items at d = 100) gets a retrieval-only bundle (no model.onnx;
    see ``export_bundle``), which serves in index mode only.
    """
    path = Path(cache) / f"synthetic-items{n_items}-d{hidden_size}-seed{seed}"
    if (path / "manifest.json").is_file():
        return path
    import torch

    from srgnn_rt_torch.model import SRGNN, ModelConfig
    from srgnn_rt_torch.onnx_export import export_bundle

    rng = np.random.default_rng(seed)
    vocab = Vocab((_RAW_ID_BASE + rng.permutation(2 * n_items)[:n_items]).tolist())
    items, _ = generate_sessions_array(_COUNT_SESSIONS, seed=seed, config=SyntheticConfig(n_items=n_items))
    counts = np.bincount(items, minlength=n_items + 1).astype(np.int64)
    torch.manual_seed(seed)
    model = SRGNN(ModelConfig(n_items=n_items, hidden_size=hidden_size))
    try:
        export_bundle(model, path, vocab=vocab, item_counts=counts, seed=seed)
    except FileExistsError:  # another process exported it meanwhile
        pass
    return path


def trained_bundle(
    n_items: int = 100_000, *, n_sessions: int = 50_000, epochs: int = 1, hidden_size: int = DEFAULT_HIDDEN_SIZE,
    seed: int = 0, threads: int | None = None, cache: Path = BUNDLE_CACHE,
) -> Path:
    """Directory of an SR-GNN bundle trained on a synthetic click log, built on first use.

    The log has ``n_sessions`` sessions over ``n_items`` items (Zipf popularity);
    the reference pipeline keeps the items seen at least 5 times, so the bundle's
    catalog is smaller than ``n_items``. Training runs ``epochs`` epochs with the
    paper's settings: popularity shapes the item embeddings' norms, which is what an
    inner-product index must cope with (random weights make every norm alike).
    """
    path = Path(cache) / f"trained-items{n_items}-sessions{n_sessions}-epochs{epochs}-d{hidden_size}-seed{seed}"
    if (path / "manifest.json").is_file():
        return path
    import tempfile

    from srgnn_rt.synthetic import generate_click_log
    from srgnn_rt_torch.onnx_export import export_run
    from srgnn_rt_torch.prepare import prepare
    from srgnn_rt_torch.train import TrainConfig, train

    with tempfile.TemporaryDirectory(dir=Path(cache).parent if Path(cache).parent.is_dir() else None) as work:
        work = Path(work)
        log = generate_click_log(n_sessions, seed=seed, days=30, config=SyntheticConfig(n_items=n_items))
        log.write_csv(work / "clicks.csv")
        prepare(work / "clicks.csv", work / "data", format="csv",
                session_column="session", item_column="item", time_column="time")
        train(work / "data", work / "run", TrainConfig(epochs=epochs, hidden_size=hidden_size, seed=seed),
              device="cpu", threads=threads, progress=True)
        try:
            export_run(work / "run", path)
        except FileExistsError:  # another process exported it meanwhile
            pass
    return path


def indexed_bundle(n_items: int = DEFAULT_ITEMS, *, trained: bool = False, cache: Path = BUNDLE_CACHE) -> Path:
    """``synthetic_bundle(n_items)`` (or ``trained_bundle()``), with its default item
    index added on first use (``srgnn_rt.retrieval.add_index``)."""
    from srgnn_rt import retrieval

    path = trained_bundle(cache=cache) if trained else synthetic_bundle(n_items, cache=cache)
    if not Bundle.load(path).has_file(retrieval.INDEX_FILENAME):
        retrieval.add_index(path)
    return path


def requests(bundle: Bundle, n_sessions: int, *, length: int | None = None, seed: int = 0) -> list[list[RawId]]:
    """``n_sessions`` sessions of the bundle's raw item ids, from the synthetic click model.

    Default lengths are Diginetica-like (mean about 5, long tail up to 70); with
    ``length`` every session has exactly ``length`` clicks.
    """
    if length is None:
        config = SyntheticConfig(n_items=bundle.n_items)
    else:
        config = SyntheticConfig(n_items=bundle.n_items, mean_length=2.0 * length + 1, max_length=length)
    sessions: list[list[int]] = []
    attempt = 0
    while len(sessions) < n_sessions:
        items, offsets = generate_sessions_array(2 * n_sessions, seed=seed + attempt, config=config)
        bounds = zip(offsets[:-1].tolist(), offsets[1:].tolist())
        sessions += [items[a:b] for a, b in bounds if length is None or b - a == length]
        attempt += 1
    raw = bundle.vocab.decode(np.concatenate(sessions[:n_sessions]))
    ends = np.cumsum([len(s) for s in sessions[:n_sessions]])
    return [part.tolist() for part in np.split(raw, ends[:-1])]
