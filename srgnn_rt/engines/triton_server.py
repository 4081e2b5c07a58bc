"""A local Triton Inference Server on 127.0.0.1, from the binary that ``nvidia-pytriton`` ships.

For tests, benchmarks and trying a repository without a Triton container:
``with LocalTritonServer(repo_dir) as server: server.http_url`` starts
``tritonserver`` (Triton 2.51 with its Python backend) on free loopback ports,
waits until every model is ready, and stops it on exit.

Triton 2.51's Python backend was built with a pybind11 that does not speak numpy 2
(outputs come back empty, BYTES inputs kill the stub); ``server_python_path``
builds, once, a directory holding numpy < 2 and this srgnn_rt for the
repository's ``python_path`` (see ``srgnn_rt.engines.triton``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..atomic import staging_directory

_MISSING = "the local Triton server needs nvidia-pytriton: pip install nvidia-pytriton"
_SERVER_NUMPY = "numpy>=1.24,<2"


def _pytriton_dir() -> Path:
    """Where nvidia-pytriton is installed, found without importing it (only its server binary and
    libraries are used; its Python side pins numpy < 2, so it may be installed with --no-deps)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_MISSING)
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def server_python_path(cache: str | os.PathLike | None = None) -> list[Path]:
    """Directories for a repository's ``python_path`` so that the local server's
    Python backend finds numpy < 2 and this srgnn_rt: built on first use under
    ``cache`` (default ``~/.cache/srgnn-rt``) with pip, reused afterwards.

    The server runs this interpreter's Python (same version), so its onnxruntime
    comes from this Python's site-packages; the second directory is the one this
    srgnn_rt is imported from (numpy < 2 stays first).
    """
    root = Path(cache or Path.home() / ".cache" / "srgnn-rt")
    tag = f"triton-python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = root / f"{tag}-numpy1"
    if not (packages / "numpy").is_dir():
        with staging_directory(packages, overwrite=True) as staging:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--target", str(staging), _SERVER_NUMPY], check=True)
    return [packages, Path(__file__).resolve().parents[2]]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalTritonServer:
    """``tritonserver`` serving ``repo_dir`` on 127.0.0.1; a context manager.

    ``http_url`` / ``grpc_url`` are ``127.0.0.1:<port>`` (the form tritonclient
    takes); ``log`` is the server's output so far. Clients must be closed before
    ``stop()``: an open connection holds the server's exit for ``exit_timeout_s``.
    """

    def __init__(self, repo_dir: str | os.PathLike, *, exit_timeout_s: int = 3, ready_timeout_s: float = 120.0,
                 log_verbose: int = 0):
        self.repo_dir = Path(repo_dir).absolute()
        self.http_port, self.grpc_port, self._metrics_port = free_port(), free_port(), free_port()
        self.http_url = f"127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self._exit_timeout_s = exit_timeout_s
        self._ready_timeout_s = ready_timeout_s
        self._log_verbose = log_verbose
        self._workdir: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running ``tritonserver`` (None when stopped)."""
        return self._process.pid if self._process else None

    @property
    def log(self) -> str:
        path = self._workdir / "server.log" if self._workdir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def start(self) -> LocalTritonServer:
        dist = _pytriton_dir() / "tritonserver"
        self._workdir = Path(tempfile.mkdtemp(prefix="srgnn-rt-tritonserver-"))
        backends = self._workdir / "backends"
        shutil.copytree(dist / "backends", backends)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise RuntimeError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
        shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        env = dict(os.environ)
        # The stub embeds this Python: its libpython first, then the server's own libraries.
        libraries = [sysconfig.get_config_var("LIBDIR"), str(dist.parent.parent / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = ":".join(libraries + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p])
        command = [
            str(dist / "bin" / "tritonserver"), f"--model-repository={self.repo_dir}",
            f"--backend-directory={backends}", f"--cache-directory={dist / 'caches'}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self._metrics_port}",
            f"--exit-timeout-secs={self._exit_timeout_s}", f"--log-verbose={self._log_verbose}",
            "--strict-readiness=true", "--exit-on-error=true",
        ]
        with open(self._workdir / "server.log", "wb") as log:
            self._process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self._process.returncode}:\n{self.log[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"tritonserver not ready after {self._ready_timeout_s} s:\n{self.log[-4000:]}")

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); returns its exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            process.terminate()
            try:
                code = process.wait(timeout=self._exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
        return code

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
