"""Shared fixtures: a small synthetic dataset, a model trained on it, and its bundle.

Each is built once per test session (about 10 s together on 2 cores) in a
temporary directory; tests must treat them as read-only (copy before changing).
The torch side is imported inside the fixtures, so test files that use none of
them never import torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DIGINETICA_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "diginetica-sample" / "train-item-views.csv"

# The synthetic world of the shared fixtures: small enough to train in seconds.
SYNTHETIC_SESSIONS = 3000
SYNTHETIC_ITEMS = 200
HIDDEN_SIZE = 16


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A prepared dataset directory (srgnn_rt.dataset layout) of a synthetic click log:
    3,000 sessions over 200 items, raw item ids are ints."""
    from srgnn_rt.synthetic import SyntheticConfig, generate_click_log
    from srgnn_rt_torch.prepare import prepare

    root = tmp_path_factory.mktemp("synthetic")
    log = generate_click_log(SYNTHETIC_SESSIONS, seed=0, days=30, config=SyntheticConfig(n_items=SYNTHETIC_ITEMS))
    log.write_csv(root / "clicks.csv")
    prepare(root / "clicks.csv", root / "data", format="csv",
            session_column="session", item_column="item", time_column="time")
    return root / "data"


@pytest.fixture(scope="session")
def synthetic_run(synthetic_dataset, tmp_path_factory) -> Path:
    """A training run directory (srgnn_rt_torch.run layout): d = 16, one epoch on ``synthetic_dataset``."""
    from srgnn_rt_torch.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("synthetic-run") / "run"
    train(synthetic_dataset, run_dir, TrainConfig(epochs=1, hidden_size=HIDDEN_SIZE), device="cpu",
          threads=1, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def synthetic_bundle(synthetic_run, tmp_path_factory) -> Path:
    """The bundle directory (srgnn_rt.bundle layout) exported from ``synthetic_run``."""
    from srgnn_rt_torch.onnx_export import export_run

    bundle_dir = tmp_path_factory.mktemp("synthetic-bundle") / "bundle"
    export_run(synthetic_run, bundle_dir)
    return bundle_dir


@pytest.fixture(scope="session")
def indexed_bundle(synthetic_bundle, tmp_path_factory) -> Path:
    """A copy of ``synthetic_bundle`` with an index that searches every item (nprobe = lists,
    candidates = n_items), so that retrieval="index" answers as "exact"; skips without faiss."""
    import shutil

    pytest.importorskip("faiss")
    from srgnn_rt import retrieval
    from srgnn_rt.bundle import Bundle

    path = tmp_path_factory.mktemp("indexed") / "bundle"
    shutil.copytree(synthetic_bundle, path)
    n_items = Bundle.load(path).n_items
    return retrieval.add_index(path, retrieval.IndexParameters(lists=4, nprobe=4, candidates=n_items)).path


@pytest.fixture(scope="session")
def retrieval_only_indexed_bundle(indexed_bundle, tmp_path_factory) -> Path:
    """``indexed_bundle`` rewritten without model.onnx: a retrieval-only bundle that serves only with
    retrieval="index", and then answers as ``synthetic_bundle`` does in "exact"."""
    from srgnn_rt.bundle import OPTIONAL_FILES, Bundle, write_bundle

    bundle = Bundle.load(indexed_bundle)
    manifest = {key: value for key, value in bundle.manifest.items()
                if key not in ("format", "format_version", "retrieval_only", "files")}
    path = tmp_path_factory.mktemp("retrieval-only-indexed") / "bundle"
    write_bundle(path, model=None, vocab=bundle.vocab, item_counts=bundle.item_counts,
                 item_embeddings=np.asarray(bundle.item_embeddings()), manifest=manifest,
                 optional_files={name: bundle.files[name] for name in OPTIONAL_FILES})
    return path


@pytest.fixture(scope="session")
def diginetica_sample() -> Path:
    """Path of the real Diginetica sample click log; skips the test when it is absent."""
    if not DIGINETICA_SAMPLE.is_file():
        pytest.skip(f"the Diginetica sample is not at {DIGINETICA_SAMPLE} (it lives in shared/ beside the repo)")
    return DIGINETICA_SAMPLE


SMALL_TRAIN_PREFIXES = 301  # batches of 100 leave one prefix over: the uneven last batch
SMALL_TEST_PREFIXES = 200


@pytest.fixture(scope="session")
def small_dataset(synthetic_dataset, tmp_path_factory) -> Path:
    """``synthetic_dataset`` cut to its latest 301 training prefixes and first 200 test prefixes:
    an epoch of a tiny model takes a fraction of a second (runs killed, resumed, distributed)."""
    import numpy as np

    from srgnn_rt.dataset import PreparedDataset, PrefixSplit
    from srgnn_rt.graph import CSRSessions

    def cut(split, index):
        part = CSRSessions(split.items, split.offsets).take(index)
        return PrefixSplit(items=part.items, offsets=part.offsets, targets=split.targets[index])

    full = PreparedDataset.load(synthetic_dataset)
    train = cut(full.train, np.arange(len(full.train) - SMALL_TRAIN_PREFIXES, len(full.train)))
    test = cut(full.test, np.arange(SMALL_TEST_PREFIXES))
    manifest = {**full.manifest, "train_prefixes": len(train), "test_prefixes": len(test)}
    small = PreparedDataset(train=train, test=test, vocab=full.vocab, item_counts=full.item_counts,
                            manifest=manifest)
    return small.save(tmp_path_factory.mktemp("small") / "data")


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole test session (2 CPUs, on 127.0.0.1, no dashboard), shared by the
    Ray engines' tests; each shuts down what it deployed on it."""
    ray = pytest.importorskip("ray")
    from srgnn_rt.local_ray import start_ray

    started = start_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()
