"""Atomic writes and consistent reads: a file or a whole directory appears complete or not at all.

Writers fill a temporary sibling named ``.NAME.XXXXXXXX.tmp`` (files keep their
suffix: ``.NAME.XXXXXXXX.tmp.pt``) and rename it into place; a rename within one
directory is atomic on POSIX. An existing directory is exchanged with the new one
in one step where the system can (Linux ``renameat2(RENAME_EXCHANGE)``), so its
path never stops naming a complete directory; elsewhere it is moved aside and
replaced with two renames. A failure removes the staging entry.

A writer holds an exclusive ``flock`` on its staging entry while it fills it. A
writer killed with SIGKILL leaves its entry behind; the next write to the same
destination removes every such entry that no live process holds (the kernel drops
a dead process's locks), and never touches an entry of another name or one that a
concurrent writer holds.

Readers take a ``DirectoryVersion``: the directory opened once, its files opened
relative to that handle, so every file comes from the same version even while a
writer replaces the directory; ``read_consistently`` reads again from the new
version when a read failed because the directory was replaced meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no flock, so stale staging entries are left alone
    fcntl = None

__all__ = ["DirectoryVersion", "check_target", "read_consistently", "staging_directory", "staging_file"]

T = TypeVar("T")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_READ_ATTEMPTS = 10


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
    """Yield an empty temporary sibling of ``path``; on success it replaces ``path``.

    An existing ``path`` is replaced only with ``overwrite`` (see ``check_target``).
    On any exception the temporary directory is removed and ``path`` is untouched.
    Stale staging directories of ``path`` (left by killed writers) are removed first.
    """
    target = check_target(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    staging, lock = _new_staging(target, lambda: tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                                                  dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; the result is read by whoever serves it
        yield staging
        if not target.exists():
            os.rename(staging, target)
        elif _exchange(staging, target):
            shutil.rmtree(staging, ignore_errors=True)  # now the old directory; a cleaner may race us
        else:
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            os.rename(target, retired)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(retired, target)
                raise
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(lock)


@contextmanager
def staging_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it goes.
    Stale staging files of ``path`` (left by killed writers) are removed first."""
    target = Path(path).absolute()
    # Keep the suffix: some writers (torch.save) judge a file by its name.
    suffix = target.suffix

    def make() -> str:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
        return name

    _remove_stale(target, suffix)
    staging, lock = _new_staging(target, make)
    try:
        yield str(staging)
        os.replace(staging, target)
    except BaseException:
        if os.path.lexists(staging):
            os.unlink(staging)
        raise
    finally:
        os.close(lock)


class DirectoryVersion:
    """One version of a directory, opened once (POSIX): files opened through it all come
    from that version, even when a writer replaces the directory meanwhile."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
        self._fd = os.open(self.path, flags) if os.open in os.supports_dir_fd else None
        identity = os.fstat(self._fd) if self._fd is not None else os.stat(self.path)
        if not stat.S_ISDIR(identity.st_mode):
            self.close()
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(self.path))
        self._identity = (identity.st_dev, identity.st_ino)

    def open(self, name: str) -> BinaryIO:
        """The regular file ``name`` of this version, opened for reading (FileNotFoundError when
        absent; OSError when it is not a regular file, e.g. a FIFO that would block a read)."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        if self._fd is not None:
            fd = os.open(name, flags, dir_fd=self._fd)
        else:
            fd = os.open(self.path / name, flags)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", name)
        return os.fdopen(fd, "rb")

    def replaced(self) -> bool:
        """True when ``path`` no longer names the directory this version was opened on."""
        try:
            now = os.stat(self.path)
        except OSError:
            return True
        return (now.st_dev, now.st_ino) != self._identity

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryVersion:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_consistently(path: str | os.PathLike, read: Callable[[DirectoryVersion], T]) -> T:
    """``read(version)`` on the current version of directory ``path``; when it raises and
    the directory was replaced meanwhile (its files may have gone with the old version),
    again on the new version, up to 10 times. Errors of a version that stayed in
    place are raised as they are, as is FileNotFoundError / NotADirectoryError for ``path``."""
    attempt = 1
    while True:
        with DirectoryVersion(path) as version:
            try:
                return read(version)
            except Exception:
                if attempt == _READ_ATTEMPTS or not version.replaced():
                    raise
        attempt += 1


def _new_staging(target: Path, make: Callable[[], str]) -> tuple[Path, int]:
    """A new staging entry made by ``make`` and an fd holding its lock. A cleaner may
    remove an entry between its creation and its lock: then make another."""
    while True:
        staging = Path(make())
        try:
            fd = os.open(staging, os.O_RDONLY)
        except FileNotFoundError:
            continue
        if _try_lock(fd) is not False and _same_file(fd, staging):
            return staging, fd
        os.close(fd)


def _remove_stale(target: Path, suffix: str = "") -> None:
    """Remove the staging entries of ``target`` that no live process holds."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}\.tmp" + re.escape(suffix) + r"\Z")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        if not pattern.match(name):
            continue
        entry = target.parent / name
        try:
            fd = os.open(entry, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            if _try_lock(fd) and _same_file(fd, entry):
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    os.unlink(entry)
        except OSError:
            pass  # removed by someone else meanwhile, or not ours to remove
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive flock on ``fd`` without waiting: True when taken, False when another
    process holds it, None when this system or file system has no flock."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return False if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
    return True


def _same_file(fd: int, path: Path) -> bool:
    """``path`` still names the file open as ``fd`` (nobody removed it meanwhile)."""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system or the
    file system cannot, and nothing changed."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))
