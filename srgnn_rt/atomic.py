"""Atomic writes: a file or a whole directory appears complete or not at all.

Readers of datasets, runs and bundles never see a half-written file: writers
fill a temporary sibling and rename it into place (a rename within one
directory is atomic on POSIX), and remove it on any failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_target(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The absolute path of a directory to write; FileExistsError when ``path`` is a file,
    or a non-empty directory and not ``overwrite`` (so long work can fail before it starts)."""
    target = Path(path).absolute()
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a directory")
        if any(target.iterdir()) and not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it")
    return target


@contextmanager
def staging_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path``; on success rename it to ``path``.

    An existing ``path`` is replaced only with ``overwrite`` (see ``check_target``).
    On any exception the temporary directory is removed and ``path`` is untouched.
    """
    target = check_target(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; the result is read by whoever serves it
        yield staging
        if target.exists():
            retired = staging.with_suffix(".old")
            os.rename(target, retired)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(retired, target)
                raise
            shutil.rmtree(retired)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staging_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it goes."""
    path = os.fspath(path)
    # Keep the suffix: some writers (torch.save) judge a file by its name.
    fd, staging = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=Path(path).suffix)
    os.close(fd)
    try:
        yield staging
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.unlink(staging)
        raise
