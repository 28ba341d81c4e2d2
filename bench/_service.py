"""One Watchkeeper service as a subprocess for a benchmark: started, ready, stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def service(
    name: str, env: dict[str, str], log_file: Path, *, timeout_s: float = 60.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m services.<name>`` with ``env`` added to this process's environment (it must
    set ``WK_<NAME>_PORT``); yields (process, base URL) once ``/readyz`` answers 200, and
    terminates the process afterwards."""
    port = env[f"WK_{name.upper()}_PORT"]
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited; see {log_file}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not become ready; see {log_file}")
            time.sleep(0.1)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def profile(
    pid: int, out: Path, *, gil: bool = False, threads: bool = False
) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (and its children) until SIGINT, collapsed stacks into ``out``;
    with ``gil``, only the samples of the thread holding the GIL (what bounds one process);
    with ``threads``, every thread's wall time (idle included), stacks named by thread."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
    command += ["--rate", "250", "--nonblocking", "--output", str(out)]
    if gil:
        command.append("--gil")
    if threads:
        command += ["--idle", "--threads"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the phase starts
    return proc
