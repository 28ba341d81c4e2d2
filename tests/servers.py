"""Pytest plugin: real Kafka and PostgreSQL servers for the test session.

Register it with ``pytest_plugins = ["tests.servers"]`` (or ``-p tests.servers``).
It provides session-scoped fixtures that start their server only when a test
asks for them:

``kafka_broker``
    A :class:`KafkaBroker` with ``.bootstrap`` plus ``.pause()`` / ``.resume()``
    (and the ``.paused()`` context manager) to take the broker away for a while
    and bring it back on the same port with the same storage.
``kafka_bootstrap``
    ``"127.0.0.1:PORT"`` of that broker.
``database_url``
    ``"postgresql+psycopg://watchkeeper:watchkeeper@127.0.0.1:PORT/watchkeeper"``.

``KAFKA_BOOTSTRAP`` / ``DATABASE_URL`` in the environment point the fixtures at
servers that are already running instead (then ``pause()`` fails the test).
Otherwise ``deploy/local/kafka.py`` and ``deploy/local/postgres.py`` start
throwaway servers in a temporary dir and purge them at the end of the session.
A server that cannot start fails the tests that need it: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "local" / "kafka.py"
POSTGRES_SCRIPT = REPO_ROOT / "deploy" / "local" / "postgres.py"

# The first `up` on a machine resolves the Kafka jars with Maven (and may apt-get
# install Java or PostgreSQL): allow for that, not only for the broker's start.
UP_TIMEOUT_S = 900.0
RESUME_TIMEOUT_S = 180.0
DOWN_TIMEOUT_S = 120.0


def _run(script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(script), *args]
    try:
        return subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        pytest.fail(
            f"`{' '.join(cmd)}` did not finish within {timeout:.0f}s\n{stderr}", pytrace=False
        )


def _run_json(script: Path, what: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run ``script args`` and return the JSON line it prints; fail the test if it can't."""
    proc = _run(script, *args, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    info: Any = None
    if proc.returncode == 0 and lines:
        with contextlib.suppress(ValueError):
            info = json.loads(lines[-1])
    if not isinstance(info, dict):
        pytest.fail(
            f"could not {what} (`{script.name} {' '.join(args)}` exited {proc.returncode}):\n"
            f"--- stderr ---\n{proc.stderr.strip()}\n--- stdout ---\n{proc.stdout.strip()}",
            pytrace=False,
        )
    return info


def _down(script: Path, state_dir: Path, what: str) -> None:
    proc = _run(script, "down", "--purge", "--state-dir", str(state_dir), timeout=DOWN_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(
            f"could not stop {what} (exit {proc.returncode}):\n{proc.stderr.strip()}",
            pytrace=False,
        )


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


class KafkaBroker:
    """A Kafka broker for the test session.

    ``state_dir`` is None when the broker came from ``KAFKA_BOOTSTRAP``: the
    harness did not start it, so it cannot pause or resume it either.
    """

    def __init__(self, bootstrap: str, state_dir: Path | None = None) -> None:
        self.bootstrap = bootstrap
        self.state_dir = state_dir
        self.is_paused = False

    @property
    def managed(self) -> bool:
        """True if the harness started this broker (so pause/resume work)."""
        return self.state_dir is not None

    def _state_dir(self, action: str) -> Path:
        if self.state_dir is None:
            pytest.fail(
                f"cannot {action} the Kafka broker at {self.bootstrap}: it came from "
                "KAFKA_BOOTSTRAP, so the test harness does not control it (unset "
                "KAFKA_BOOTSTRAP to let the harness start its own broker)",
                pytrace=False,
            )
        return self.state_dir

    def pause(self) -> None:
        """Stop the broker (SIGTERM, clean shutdown); its storage and port are kept."""
        state_dir = self._state_dir("pause")
        proc = _run(KAFKA_SCRIPT, "pause", "--state-dir", str(state_dir), timeout=DOWN_TIMEOUT_S)
        if proc.returncode != 0:
            pytest.fail(f"could not pause the Kafka broker:\n{proc.stderr.strip()}", pytrace=False)
        self.is_paused = True

    def resume(self) -> None:
        """Start the paused broker again on the same port and wait until it is ready."""
        state_dir = self._state_dir("resume")
        info = _run_json(
            KAFKA_SCRIPT,
            "resume the Kafka broker",
            "resume",
            "--state-dir",
            str(state_dir),
            timeout=RESUME_TIMEOUT_S,
        )
        if info.get("bootstrap") != self.bootstrap:
            pytest.fail(
                f"the resumed broker listens on {info.get('bootstrap')}, not {self.bootstrap}",
                pytrace=False,
            )
        self.is_paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """``with broker.paused(): ...`` runs the block with the broker down, then resumes it."""
        self.pause()
        try:
            yield
        finally:
            self.resume()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's Kafka broker: ``KAFKA_BOOTSTRAP`` if set, else one started here."""
    external = _env("KAFKA_BOOTSTRAP")
    if external is not None:
        yield KafkaBroker(external)
        return
    state_dir = tmp_path_factory.mktemp("kafka")
    try:
        info = _run_json(
            KAFKA_SCRIPT,
            "start a Kafka broker",
            "up",
            "--state-dir",
            str(state_dir),
            timeout=UP_TIMEOUT_S,
        )
        broker = KafkaBroker(str(info["bootstrap"]), state_dir)
    except BaseException:
        _run(KAFKA_SCRIPT, "down", "--purge", "--state-dir", str(state_dir), timeout=DOWN_TIMEOUT_S)
        raise
    try:
        yield broker
    finally:
        _down(KAFKA_SCRIPT, state_dir, "the Kafka broker")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    """``host:port`` of the session's Kafka broker."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy-style URL of the session's PostgreSQL: ``DATABASE_URL`` if set, else started."""
    external = _env("DATABASE_URL")
    if external is not None:
        yield external
        return
    state_dir = tmp_path_factory.mktemp("postgres")
    try:
        info = _run_json(
            POSTGRES_SCRIPT,
            "start PostgreSQL",
            "up",
            "--state-dir",
            str(state_dir),
            timeout=UP_TIMEOUT_S,
        )
        url = str(info["url"])
    except BaseException:
        _run(
            POSTGRES_SCRIPT,
            "down",
            "--purge",
            "--state-dir",
            str(state_dir),
            timeout=DOWN_TIMEOUT_S,
        )
        raise
    try:
        yield url
    finally:
        _down(POSTGRES_SCRIPT, state_dir, "PostgreSQL")
