"""Atomic writes leave no leftovers: staging entries of writers killed with SIGKILL are removed
by the next write to the same destination, never those of live writers or other destinations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from srgnn_rt import atomic
from srgnn_rt.atomic import DirectoryVersion, read_consistently, staging_directory, staging_file

pytestmark = pytest.mark.skipif(atomic.fcntl is None, reason="no flock on this system: stale entries are kept")

# A writer that stops in the middle of its write (after some files, before the rename) and
# prints its staging path; the test kills it there with SIGKILL.
_KILLED_EXPORT = """
import json, sys, time
import numpy as np
import srgnn_rt.bundle as bundle_module
from srgnn_rt.vocab import Vocab

def stalled_dump(manifest, f, **kwargs):
    print(f.name.rsplit("/", 1)[0], flush=True)
    time.sleep(120)

bundle_module.json.dump = stalled_dump
manifest = {"n_items": 2, "embedding_size": 2, "model": {"n_items": 2, "hidden_size": 2},
            "graph_builder": {"max_length": None, "edge_weight": "binary"}, "onnx": {"opset": 18}}
bundle_module.write_bundle(sys.argv[1], model=b"", vocab=Vocab([1, 2]), item_counts=np.array([0, 1, 1]),
                           item_embeddings=np.zeros((2, 2), np.float32), manifest=manifest, overwrite=True)
"""
_STALLED_DIRECTORY = """
import sys, time
from srgnn_rt.atomic import staging_directory
with staging_directory(sys.argv[1], overwrite=True) as staging:
    (staging / "train.npz").write_bytes(b"partial")
    print(staging, flush=True)
    time.sleep(120)
"""
_STALLED_FILE = """
import sys, time
from srgnn_rt.atomic import staging_file
with staging_file(sys.argv[1]) as staging:
    open(staging, "wb").write(b"partial")
    print(staging, flush=True)
    time.sleep(120)
"""


class _Writer:
    """A writer in a child process, stopped mid-write; ``staging`` is its staging entry."""

    def __init__(self, script: str, target: Path):
        self.process = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        assert line, f"the writer exited with {self.process.wait()} before writing"
        self.staging = Path(line)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def writers():
    started: list[_Writer] = []
    yield lambda script, target: started.append(_Writer(script, target)) or started[-1]
    for writer in started:
        if writer.process.poll() is None:
            writer.kill()


def _write_directory(target: Path) -> None:
    with staging_directory(target, overwrite=True) as staging:
        (staging / "done").write_text("complete")


def test_killed_export_leftovers_go_on_the_next_write(tmp_path, writers):
    target = tmp_path / "bundle"
    killed = writers(_KILLED_EXPORT, target)
    assert killed.staging.name.startswith(".bundle.") and (killed.staging / "model.onnx").is_file()
    killed.kill()
    assert killed.staging.is_dir()  # kill -9 leaves the partial directory behind
    live = writers(_STALLED_DIRECTORY, target)
    other = tmp_path / ".bundle-old.abcdefgh.tmp"  # another destination's name
    unlike = tmp_path / ".bundle.not-ours.tmp"  # not a staging name
    other.mkdir()
    unlike.mkdir()
    _write_directory(target)
    assert (target / "done").read_text() == "complete"
    assert not killed.staging.exists()
    assert (live.staging / "train.npz").is_file(), "a live writer's staging directory was removed"
    assert other.is_dir() and unlike.is_dir()
    live.kill()
    _write_directory(target)
    assert sorted(os.listdir(tmp_path)) == sorted(["bundle", other.name, unlike.name])


def test_killed_file_write_leftovers_go_on_the_next_write(tmp_path, writers):
    target = tmp_path / "last.pt"
    killed = writers(_STALLED_FILE, target)
    assert killed.staging.name.startswith(".last.pt.") and killed.staging.name.endswith(".tmp.pt")
    killed.kill()
    live = writers(_STALLED_FILE, target)
    (tmp_path / ".tmp-legacy.pt").write_bytes(b"")  # not of this destination's pattern
    with staging_file(target) as staging, open(staging, "wb") as f:
        f.write(b"complete")
    assert target.read_bytes() == b"complete"
    assert not killed.staging.exists() and live.staging.read_bytes() == b"partial"
    live.kill()
    with staging_file(target) as staging, open(staging, "wb") as f:
        f.write(b"again")
    assert sorted(os.listdir(tmp_path)) == [".tmp-legacy.pt", "last.pt"]


def test_a_cleaner_between_creation_and_lock_makes_the_writer_start_again(tmp_path):
    """A cleaner may remove a staging directory after mkdtemp and before its writer locks it;
    the writer then sees it is gone and makes another."""
    target = tmp_path / "data"
    made = []

    def make_then_clean():
        made.append(Path(atomic.tempfile.mkdtemp(prefix=".data.", suffix=".tmp", dir=tmp_path)))
        if len(made) == 1:
            atomic._remove_stale(target)  # another writer's cleanup, right now
        return str(made[-1])

    staging, lock = atomic._new_staging(target, make_then_clean)
    try:
        assert len(made) == 2 and staging == made[1] and not made[0].exists()
        atomic._remove_stale(target)  # held: stays
        assert staging.is_dir()
    finally:
        os.close(lock)


def test_read_consistently_raises_errors_of_a_directory_left_in_place(tmp_path):
    (tmp_path / "d").mkdir()
    calls = []

    def read(version: DirectoryVersion):
        calls.append(version)
        return version.open("missing").read()

    with pytest.raises(FileNotFoundError):
        read_consistently(tmp_path / "d", read)
    assert len(calls) == 1
    os.mkfifo(tmp_path / "d" / "fifo")  # opening a FIFO for reading would block
    with pytest.raises(OSError, match="not a regular file"):
        read_consistently(tmp_path / "d", lambda version: version.open("fifo"))
    with pytest.raises(NotADirectoryError):
        read_consistently(tmp_path / "d" / "fifo", read)
