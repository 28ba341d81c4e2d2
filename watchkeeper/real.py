"""The real deployment on one machine: ``watchkeeper up --kafka`` (``make up-real``).

Kafka and PostgreSQL come from ``KAFKA_BOOTSTRAP`` / ``DATABASE_URL`` or are started with
``deploy/local/kafka.py up`` and ``deploy/local/postgres.py up`` (which reuse a server already
running for ``.run/kafka`` / ``.run/postgres``). The four services then run as separate
processes (``python -m services.<name>``) with their settings wired to each other; once every
``/readyz`` answers 200 the URLs for the UI, the CLI and the SDK are printed (a summary on
stderr, one JSON line on stdout). Ctrl-C (SIGINT) or SIGTERM stops the services; Kafka and
PostgreSQL stay up, so data survives until ``watchkeeper down --servers`` (``make down-real``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

__all__ = ["SERVICES", "RealOptions", "down", "run_real"]

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL = REPO_ROOT / "deploy" / "local"
SERVICES = ("registry", "ingest", "evaluator", "alerts")
STATE_FILE = "services.json"
READY_TIMEOUT_S = 120.0
SERVER_UP_TIMEOUT_S = 900.0  # the first Kafka start resolves its jars with Maven


class RealError(Exception):
    """Something the user must fix; the message says what."""


@dataclass
class RealOptions:
    base_port: int = 8001
    """registry on base_port, ingest +1, evaluator +2, alerts +3 (the services' defaults)."""
    host: str = "127.0.0.1"
    topic_prefix: str = "wk."
    state_dir: Path = field(default_factory=lambda: REPO_ROOT / ".run" / "real")
    ready_timeout_s: float = READY_TIMEOUT_S

    def port(self, service: str) -> int:
        return self.base_port + SERVICES.index(service)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.port(service)}"


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _server(script: str, key: str, env_name: str) -> str:
    """The address from ``env_name``, else start (or reuse) the local server with ``script``."""
    if value := os.environ.get(env_name, "").strip():
        _say(f"{env_name}={value} (from the environment)")
        return value
    _say(f"{env_name} not set: starting the local server (deploy/local/{script} up) ...")
    proc = subprocess.run(
        [sys.executable, str(LOCAL / script), "up"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        timeout=SERVER_UP_TIMEOUT_S,
    )  # its progress goes to our stderr as it happens
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    info: Any = None
    if proc.returncode == 0 and lines:
        with contextlib.suppress(ValueError):
            info = json.loads(lines[-1])
    if not isinstance(info, dict) or not isinstance(info.get(key), str):
        raise RealError(f"deploy/local/{script} up failed (exit {proc.returncode}); see above")
    address: str = info[key]
    return address


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def service_env(
    name: str, options: RealOptions, *, bootstrap: str, database_url: str
) -> dict[str, str]:
    """The environment of one service process: the caller's, with the wiring set."""
    prefix = f"WK_{name.upper()}_"
    env = dict(os.environ)
    env.update(
        {
            f"{prefix}BUS": "kafka",
            f"{prefix}KAFKA_BOOTSTRAP": bootstrap,
            f"{prefix}DATABASE_URL": database_url,
            f"{prefix}TOPIC_PREFIX": options.topic_prefix,
            f"{prefix}HOST": options.host,
            f"{prefix}PORT": str(options.port(name)),
            f"{prefix}GROUP_ID": f"{options.topic_prefix}{name}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if name == "evaluator":  # reference profiles come from the registry over HTTP
        env["WK_EVALUATOR_REGISTRY_URL"] = options.url("registry")
    if name == "registry":
        env.setdefault("WK_REGISTRY_REFERENCE_DIR", str(options.state_dir / "references"))
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class _Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def _start(name: str, options: RealOptions, env: dict[str, str]) -> _Running:
    log = options.state_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the services in order
        )
    return _Running(name, proc, log)


def _wait_ready(running: list[_Running], options: RealOptions) -> None:
    deadline = time.monotonic() + options.ready_timeout_s
    with httpx.Client(timeout=5) as client:
        for service in running:
            url = options.url(service.name) + "/readyz"
            detail = "no answer yet"
            while True:
                if service.proc.poll() is not None:
                    raise RealError(
                        f"{service.name} exited with {service.proc.returncode} while starting; "
                        f"the end of {service.log}:\n{_tail(service.log)}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        break
                    detail = response.text
                except httpx.TransportError as exc:
                    detail = repr(exc)
                if time.monotonic() > deadline:
                    raise RealError(
                        f"{service.name} not ready after {options.ready_timeout_s:.0f}s "
                        f"({url}: {detail}); the end of {service.log}:\n{_tail(service.log)}"
                    )
                time.sleep(0.3)


def _stop(running: list[_Running], timeout_s: float = 30.0) -> None:
    for service in reversed(running):  # alerts first, registry last
        if service.proc.poll() is None:
            service.proc.terminate()
    for service in reversed(running):
        try:
            service.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait()


def urls(options: RealOptions, bootstrap: str, database_url: str) -> dict[str, str]:
    """What ``up --kafka`` prints as its JSON line."""
    return {
        "ui": options.url("alerts") + "/",
        "registry": options.url("registry"),
        "ingest": options.url("ingest"),
        "evaluator": options.url("evaluator"),
        "alerts": options.url("alerts"),
        "WK_REGISTRY_URL": options.url("registry"),
        "sdk_url": options.url("ingest"),
        "kafka_bootstrap": bootstrap,
        "database_url": database_url,
    }


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_real(options: RealOptions) -> int:
    """Start everything, print the URLs, run until Ctrl-C or a service dies; the exit code."""
    busy = [
        f"{name} :{options.port(name)}"
        for name in SERVICES
        if not _port_free(options.host, options.port(name))
    ]
    if busy:
        _say(
            f"port(s) already in use: {', '.join(busy)} (another `watchkeeper up`? stop it, "
            "or pick other ports with --base-port)"
        )
        return 1
    running: list[_Running] = []
    with _sigterm_as_interrupt():
        try:
            bootstrap = _server("kafka.py", "bootstrap", "KAFKA_BOOTSTRAP")
            database_url = _server("postgres.py", "url", "DATABASE_URL")
            options.state_dir.mkdir(parents=True, exist_ok=True)
            for name in SERVICES:
                env = service_env(name, options, bootstrap=bootstrap, database_url=database_url)
                running.append(_start(name, options, env))
            (options.state_dir / STATE_FILE).write_text(
                json.dumps({s.name: s.proc.pid for s in running}) + "\n"
            )
            _say(f"starting the services (logs in {options.state_dir / 'logs'}) ...")
            _wait_ready(running, options)
            found = urls(options, bootstrap, database_url)
            _say(
                "\nWatchkeeper is running on Kafka and PostgreSQL, each service its own process:\n"
                f"  UI (nonconformities)  {found['ui']}\n"
                f"  CLI                   export WK_REGISTRY_URL={found['registry']}\n"
                f'  SDK (ingest)          Watchkeeper("{found["ingest"]}", api_key, ...)\n'
                f"  API docs              {found['registry']}/docs  {found['ingest']}/docs  "
                f"{found['evaluator']}/docs  {found['alerts']}/docs\n"
                f"  Kafka {bootstrap}   PostgreSQL {database_url}\n"
                "Register a system (watchkeeper apply FILE.yaml) before streaming its events.\n"
                "Ctrl-C stops the services; `make down-real` also stops Kafka and PostgreSQL.\n"
            )
            sys.stdout.write(json.dumps(found) + "\n")
            sys.stdout.flush()
            while True:
                for service in running:
                    if service.proc.poll() is not None:
                        _say(
                            f"{service.name} exited with {service.proc.returncode}; stopping "
                            f"the others. The end of {service.log}:\n{_tail(service.log)}"
                        )
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            _say("stopping the services ...")
            return 0
        except (RealError, subprocess.TimeoutExpired) as exc:
            _say(str(exc))
            return 1
        finally:
            _stop(running)
            (options.state_dir / STATE_FILE).unlink(missing_ok=True)
            if running:
                _say("services stopped")


def _is_service(pid: int, name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"services.{name}".encode() in cmdline


def down(state_dir: Path, *, servers: bool) -> int:
    """Stop services a killed ``up --kafka`` left behind; with ``servers``, the local
    Kafka and PostgreSQL too (their data is kept: ``make clean`` purges it)."""
    state = state_dir / STATE_FILE
    if state.is_file():
        pids: dict[str, int] = json.loads(state.read_text())
        for name, pid in pids.items():
            if _is_service(pid, name):
                _say(f"stopping {name} (pid {pid})")
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, pid in pids.items():
            while _is_service(pid, name) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _is_service(pid, name):
                os.kill(pid, signal.SIGKILL)
        state.unlink()
    code = 0
    if servers:
        for script in ("kafka.py", "postgres.py"):
            proc = subprocess.run(
                [sys.executable, str(LOCAL / script), "down"], cwd=REPO_ROOT, check=False
            )
            code = code or proc.returncode
    return code
