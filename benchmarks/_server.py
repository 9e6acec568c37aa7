"""Start `booktower serve` in a second process on 127.0.0.1 and stop it again (shared by the serving benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(bundle: Path, workers: int = 1, index: str | None = None, threads: int = 1,
                   startup_timeout: float = 120.0) -> Iterator[str]:
    """Yield the base URL of a server answering from `bundle`; the process group is terminated on exit."""
    port = free_port()
    command = [sys.executable, "-m", "booktower", "serve", "--bundle", str(bundle), "--port", str(port),
               "--workers", str(workers), "--threads", str(threads)]
    if index:
        command += ["--index", index]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer /health within {startup_timeout:.0f} s")
            time.sleep(0.3)
        # every worker loads the bundle; give the others a moment after the first answers
        time.sleep(1.0 if workers > 1 else 0.0)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
