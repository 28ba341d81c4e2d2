#!/usr/bin/env python3
"""Run a throwaway single-node Apache Kafka broker (KRaft) for local work and tests.

No Docker and no Kafka tarball: the broker's jars are resolved from Maven
Central with ``deploy/local/kafka-pom.xml`` (once, cached under
``~/.cache/watchkeeper/kafka-<version>/libs``) and run with the local Java 17+.

Usage (run with the project's venv so the readiness check can use aiokafka)::

    .venv/bin/python deploy/local/kafka.py up     [--state-dir DIR] [--port N]
    .venv/bin/python deploy/local/kafka.py down   [--state-dir DIR] [--purge]
    .venv/bin/python deploy/local/kafka.py pause  [--state-dir DIR]
    .venv/bin/python deploy/local/kafka.py resume [--state-dir DIR]
    .venv/bin/python deploy/local/kafka.py status [--state-dir DIR]

``up`` formats fresh storage, starts the broker detached and waits until an
aiokafka admin client can list topics; it then prints one JSON line
``{"bootstrap": "127.0.0.1:PORT", "pid": ..., "state_dir": ..., "log": ...}``
on stdout and writes the same JSON to ``<state-dir>/kafka.json``.
``pause`` stops the broker but keeps its storage and ports; ``resume`` starts
it again from the same ``server.properties``. ``down`` stops it (``--purge``
also deletes the state dir). Progress and errors go to stderr.

Only the standard library is needed, plus aiokafka for the readiness check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported by path, not run as a script
    sys.path.insert(0, str(HERE))

from _harness import (  # noqa: E402
    Failure,
    Help,
    Program,
    apt_get,
    free_port,
    is_root,
    output_tail,
    pid_alive,
    pid_runs,
    port_is_free,
    require_free_port,
    stop_pid,
)

REPO_ROOT = HERE.parent.parent
POM = HERE / "kafka-pom.xml"
DEFAULT_STATE_DIR = REPO_ROOT / ".run" / "kafka"

READY_TIMEOUT_S = 90.0
HEAP_OPTS = ["-Xms128m", "-Xmx512m"]
MIN_JAVA = 17

INFO_FILE = "kafka.json"
PROPS_FILE = "server.properties"
LOG4J_FILE = "log4j2.properties"
SERVER_LOG = "server.log"  # written by log4j2
CONSOLE_LOG = "kafka.out"  # the JVM's own stdout/stderr
DATA_DIR = "data"

PROGRAM = Program(name="kafka.py", info_file=INFO_FILE)
say = PROGRAM.say
read_info = PROGRAM.read_info


# --------------------------------------------------------------------------
# Kafka jars


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise Failure(f"no <kafka.version> property in {POM}")
    return match.group(1).strip()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "watchkeeper"


def apt_install(packages: Sequence[str], why: str) -> None:
    if not is_root() or shutil.which("apt-get") is None:
        raise Failure(f"{why}; install {' '.join(packages)} (needs root and apt-get)")
    say(f"{why}: apt-get install {' '.join(packages)} ...")
    apt_get(packages)


def ensure_libs() -> Path:
    """Return the directory holding the broker's jars, resolving them on first use."""
    version = kafka_version()
    pom_digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    home = cache_root() / f"kafka-{version}"
    libs = home / "libs"
    stamp = home / "libs.sha256"  # digest of the POM the libs came from
    home.mkdir(parents=True, exist_ok=True)

    def complete() -> bool:
        return libs.is_dir() and stamp.is_file() and stamp.read_text().strip() == pom_digest

    if complete():
        return libs
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be resolving too
        if complete():
            return libs
        if shutil.which("mvn") is None:
            apt_install(["maven"], "Maven (mvn) is needed once to fetch the Kafka jars")
        say(f"resolving Kafka {version} jars with Maven (first run only) ...")
        started = time.monotonic()
        tmp = home / "libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        cmd = [
            "mvn", "-q", "-B", "-f", str(POM),
            "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        jars = sorted(p.name for p in tmp.glob("*.jar")) if tmp.is_dir() else []
        if proc.returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
            raise Failure(
                f"Maven could not resolve the Kafka jars (exit {proc.returncode}):\n"
                f"{output_tail(proc, 4000)}"
            )
        tmp.rename(libs)
        stamp.write_text(pom_digest + "\n")
        say(f"resolved {len(jars)} jars into {libs} in {time.monotonic() - started:.1f}s")
    return libs


# --------------------------------------------------------------------------
# Java


def java_major(java: str) -> int | None:
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_candidates() -> Iterator[str]:
    if java_home := os.environ.get("JAVA_HOME"):
        yield str(Path(java_home) / "bin" / "java")
    if on_path := shutil.which("java"):
        yield on_path
    yield from sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))


def find_java() -> str:
    seen: set[str] = set()
    for _attempt in range(2):
        for java in java_candidates():
            if java in seen or not os.access(java, os.X_OK):
                continue
            seen.add(java)
            major = java_major(java)
            if major is not None and major >= MIN_JAVA:
                return java
        apt_install(["default-jre-headless"], f"Kafka 4 needs Java {MIN_JAVA}+ and none was found")
        seen.clear()
    raise Failure(f"no Java {MIN_JAVA}+ found (set JAVA_HOME)")


# --------------------------------------------------------------------------
# processes


def is_our_broker(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` is a live kafka.Kafka process started for ``state_dir``."""
    return pid_runs(pid, "kafka.Kafka", str(state_dir / PROPS_FILE))


# --------------------------------------------------------------------------
# state dir


def running_pid(state_dir: Path) -> int | None:
    info = read_info(state_dir)
    pid = info.get("pid") if info else None
    if isinstance(pid, int) and is_our_broker(pid, state_dir):
        return pid
    return None


def read_props(state_dir: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in (state_dir / PROPS_FILE).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def random_cluster_id() -> str:
    # Kafka's Uuid.randomUuid(): base64url without padding, never starting with "-"
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def write_config(state_dir: Path, port: int, controller_port: int) -> None:
    data = state_dir / DATA_DIR
    props = f"""\
# Single-node KRaft broker+controller for local development and tests.
# Written by deploy/local/kafka.py; `resume` reuses this file as it is.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
"""
    (state_dir / PROPS_FILE).write_text(props)
    log_file = state_dir / SERVER_LOG
    log4j = f"""\
# log4j2 config for the local broker: INFO to {SERVER_LOG}, the chattiest loggers at WARN.
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.internals.AppInfoParser
logger.appinfo.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""
    (state_dir / LOG4J_FILE).write_text(log4j)


def format_storage(java: str, libs: Path, state_dir: Path) -> str:
    cluster_id = random_cluster_id()
    cmd = [
        java, *HEAP_OPTS, f"-Dlog4j2.configurationFile={state_dir / LOG4J_FILE}",
        "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--standalone",
        "-t", cluster_id, "-c", str(state_dir / PROPS_FILE),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise Failure(
            f"kafka.tools.StorageTool format failed (exit {proc.returncode}):\n{output_tail(proc)}"
        )
    return cluster_id


def launch(java: str, libs: Path, state_dir: Path) -> int:
    cmd = [
        java, *HEAP_OPTS, "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={state_dir / LOG4J_FILE}",
        f"-Dkafka.logs.dir={state_dir}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(state_dir / PROPS_FILE),
    ]  # fmt: skip
    with open(state_dir / CONSOLE_LOG, "ab") as console:
        console.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting kafka.Kafka\n".encode())
        console.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=state_dir,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


# --------------------------------------------------------------------------
# readiness


async def _admin_lists_topics(bootstrap: str) -> None:
    admin_mod = importlib.import_module("aiokafka.admin")
    admin = admin_mod.AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="watchkeeper-kafka-up"
    )
    try:
        await asyncio.wait_for(admin.start(), 10)
        await asyncio.wait_for(admin.list_topics(), 10)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)


def require_aiokafka() -> None:
    try:
        importlib.import_module("aiokafka.admin")
    except ImportError as exc:
        raise Failure(
            f"aiokafka is needed for the readiness check ({exc}); run this script with the "
            "project's venv, e.g. .venv/bin/python deploy/local/kafka.py"
        ) from exc


def wait_ready(bootstrap: str, pid: int, state_dir: Path, timeout: float = READY_TIMEOUT_S) -> None:
    require_aiokafka()
    aiokafka_logger = logging.getLogger("aiokafka")
    level = aiokafka_logger.level
    aiokafka_logger.setLevel(logging.CRITICAL)  # connection errors while starting are expected
    deadline = time.monotonic() + timeout
    last_error = "not tried"
    try:
        while True:
            if not pid_alive(pid):
                raise Failure(f"the broker (pid {pid}) exited while starting")
            try:
                asyncio.run(_admin_lists_topics(bootstrap))
                return
            except Exception as exc:  # any error just means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise Failure(
                    f"the broker was not ready after {timeout:.0f}s "
                    f"(aiokafka admin at {bootstrap}: {last_error})"
                )
            time.sleep(0.5)
    finally:
        aiokafka_logger.setLevel(level)


# --------------------------------------------------------------------------
# commands


def start_and_wait(state_dir: Path, java: str, libs: Path) -> dict[str, Any]:
    props = read_props(state_dir)
    bootstrap = props["advertised.listeners"].removeprefix("PLAINTEXT://")
    ports = [int(p.rsplit(":", 1)[1]) for p in props["listeners"].split(",")]
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        raise Failure(f"port(s) {busy} on 127.0.0.1 are already in use by another process")
    say(f"starting Kafka broker on {bootstrap} (log: {state_dir / SERVER_LOG}) ...")
    started = time.monotonic()
    pid = launch(java, libs, state_dir)
    try:
        wait_ready(bootstrap, pid, state_dir)
    except BaseException as exc:
        stop_pid(pid, timeout=10, say=say)
        if isinstance(exc, Failure):
            exc.log_files = [state_dir / CONSOLE_LOG, state_dir / SERVER_LOG]
        raise
    say(f"Kafka broker ready on {bootstrap} (pid {pid}) after {time.monotonic() - started:.1f}s")
    info: dict[str, Any] = {
        "bootstrap": bootstrap,
        "pid": pid,
        "state_dir": str(state_dir),
        "log": str(state_dir / SERVER_LOG),
        "console_log": str(state_dir / CONSOLE_LOG),
        "kafka_version": kafka_version(),
    }
    (state_dir / INFO_FILE).write_text(json.dumps(info) + "\n")
    return info


def cmd_up(state_dir: Path, port: int | None) -> dict[str, Any]:
    pid = running_pid(state_dir)
    if pid is not None:
        info = read_info(state_dir) or {}
        say(f"a broker is already running for {state_dir} (pid {pid}); reusing it")
        return info
    require_aiokafka()
    if port is not None:
        require_free_port(port)
    java = find_java()
    libs = ensure_libs()
    state_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(state_dir / DATA_DIR, ignore_errors=True)
    for name in (INFO_FILE, SERVER_LOG, CONSOLE_LOG):
        (state_dir / name).unlink(missing_ok=True)
    broker_port = port if port is not None else free_port()
    controller_port = free_port(exclude=[broker_port])
    write_config(state_dir, broker_port, controller_port)
    cluster_id = format_storage(java, libs, state_dir)
    say(f"formatted fresh storage in {state_dir / DATA_DIR} (cluster id {cluster_id})")
    return start_and_wait(state_dir, java, libs)


def cmd_resume(state_dir: Path) -> dict[str, Any]:
    if not (state_dir / PROPS_FILE).is_file() or not (state_dir / DATA_DIR).is_dir():
        raise Failure(f"nothing to resume in {state_dir} (run `up` first)")
    pid = running_pid(state_dir)
    if pid is not None:
        say(f"the broker is already running (pid {pid})")
        return read_info(state_dir) or {}
    require_aiokafka()
    return start_and_wait(state_dir, find_java(), ensure_libs())


def cmd_stop(state_dir: Path, purge: bool) -> None:
    pid = running_pid(state_dir)
    if pid is None:
        say(f"no broker running for {state_dir}")
    else:
        say(f"stopping the broker (pid {pid}) ...")
        stop_pid(pid, say=say)
        say("stopped")
    if purge and state_dir.exists():
        shutil.rmtree(state_dir)
        say(f"removed {state_dir}")


def cmd_status(state_dir: Path) -> int:
    return PROGRAM.print_status(state_dir, running_pid(state_dir))


def main(argv: Sequence[str] | None = None) -> int:
    return PROGRAM.main(
        argv,
        doc=__doc__,
        default_state_dir=DEFAULT_STATE_DIR,
        texts=Help(
            state_dir=f"where config, storage and logs live (default: {DEFAULT_STATE_DIR})",
            up="format fresh storage, start the broker and wait until it is ready",
            port="broker port on 127.0.0.1 (default: a free one)",
            down="stop the broker (SIGTERM, then SIGKILL after 30s)",
            purge="also delete the state dir",
            pause="stop the broker but keep its storage and ports for `resume`",
            resume="start the paused broker again with the same storage and ports",
            status="print kafka.json plus whether the broker runs; exit 1 if it does not",
        ),
        up=cmd_up,
        resume=cmd_resume,
        stop=cmd_stop,
        status=cmd_status,
    )


if __name__ == "__main__":
    sys.exit(main())
