"""`make up-real` (``watchkeeper up --kafka``) as README.md tells a new user to use it.

The command runs as a subprocess against the session's Kafka and a fresh PostgreSQL database;
the test reads the URLs it prints, applies the README's YAML with the README's CLI command and
runs the README's SDK snippet (only the printed addresses substituted), checks the events
reached Kafka, then stops it with SIGINT as Ctrl-C would and checks every service is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO

import orjson

from shared.bus import KafkaBus, Topics
from tests.deployments import free_port, fresh_database

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def readme_block(language: str, containing: str) -> str:
    """The first fenced ``language`` block of README.md that contains ``containing``."""
    for block in re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S):
        if containing in block:
            return str(block)
    raise AssertionError(f"README.md has no ```{language} block with {containing!r}")


def four_free_ports() -> int:
    """A base port whose next three ports are free too."""
    for _ in range(50):
        base = free_port()
        if base > 65000:
            continue
        ports = range(base, base + 4)
        socks = []
        try:
            for port in ports:
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                socks.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no four consecutive free ports")


def read_json_line(stream: IO[str], timeout_s: float) -> dict[str, str]:
    found: list[dict[str, str]] = []

    def reader() -> None:
        for line in stream:
            if line.startswith("{"):
                found.append(json.loads(line))
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert found, f"`watchkeeper up --kafka` printed no URLs within {timeout_s:.0f}s"
    return found[0]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def predictions_of(bootstrap: str, prefix: str, system_id: str, want: int) -> int:
    bus = KafkaBus(bootstrap, Topics(prefix=prefix))
    await bus.start()
    consumer = bus.consumer([bus.topics.predictions], group_id=None)
    await consumer.start()
    seen = 0
    try:
        deadline = time.monotonic() + 30
        while seen < want and time.monotonic() < deadline:
            for record in await consumer.poll(timeout_s=0.5):
                seen += (record.value or b"").count(f'"system_id":"{system_id}"'.encode())
    finally:
        await consumer.stop()
        await bus.stop()
    return seen


def test_up_real_then_readme_apply_and_sdk(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    database = fresh_database(database_url)
    base = four_free_ports()
    state_dir = tmp_path / "real"
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "DATABASE_URL": database}
    with (tmp_path / "up.err").open("w") as errors:
        run_up_real(env, base, prefix, state_dir, errors, kafka_bootstrap, tmp_path)


def run_up_real(
    env: dict[str, str],
    base: int,
    prefix: str,
    state_dir: Path,
    errors: IO[str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [
            str(WATCHKEEPER),
            "up",
            "--kafka",
            "--base-port",
            str(base),
            "--topic-prefix",
            prefix,
            "--state-dir",
            str(state_dir),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    pids: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        printed = read_json_line(proc.stdout, timeout_s=180)
        pids = json.loads((state_dir / "services.json").read_text())
        assert set(pids) == {"registry", "ingest", "evaluator", "alerts"}
        assert printed["WK_REGISTRY_URL"] == f"http://127.0.0.1:{base}"
        assert printed["sdk_url"] == f"http://127.0.0.1:{base + 1}"
        assert printed["ui"] == f"http://127.0.0.1:{base + 3}/"

        # the README's YAML, with the README's command and WK_REGISTRY_URL as printed
        (tmp_path / "loan-approval.yaml").write_text(readme_block("yaml", "loan-approval"))
        command = readme_block("sh", "watchkeeper apply").strip().splitlines()[-1]
        assert command == ".venv/bin/watchkeeper apply loan-approval.yaml"
        applied = subprocess.run(
            [str(WATCHKEEPER), "apply", "loan-approval.yaml"],
            cwd=tmp_path,
            env={**env, "WK_REGISTRY_URL": printed["WK_REGISTRY_URL"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert applied.returncode == 0, applied.stderr
        assert orjson.loads(applied.stdout)["system"] == "created"

        # the README's SDK snippet, pointed at the printed ingest URL
        snippet = readme_block("python", "from watchkeeper_sdk import Watchkeeper")
        assert "http://127.0.0.1:8002" in snippet
        snippet = snippet.replace("http://127.0.0.1:8002", printed["sdk_url"])
        sent = subprocess.run(
            [sys.executable, "-c", snippet],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sent.returncode == 0, sent.stderr
        assert asyncio.run(predictions_of(kafka_bootstrap, prefix, "loan-approval", 200)) == 200
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0, (tmp_path / "up.err").read_text()
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not (state_dir / "services.json").exists()


def test_the_cli_says_where_the_registry_is_when_it_cannot_reach_it(tmp_path: Path) -> None:
    (tmp_path / "loan-approval.yaml").write_text(readme_block("yaml", "loan-approval"))
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [str(WATCHKEEPER), "apply", "loan-approval.yaml"],
        cwd=tmp_path,
        env={**os.environ, "WK_REGISTRY_URL": nowhere, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"cannot reach the registry at {nowhere}" in result.stderr
    assert "WK_REGISTRY_URL" in result.stderr and "make up-real" in result.stderr
