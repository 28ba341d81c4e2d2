#!/usr/bin/env python3
"""Run a throwaway PostgreSQL server for local work and tests.

Uses Debian's PostgreSQL packages (installed with apt-get when missing) and
the newest ``/usr/lib/postgresql/*/bin``. No Docker, no system cluster: the
server gets its own data dir, listens on 127.0.0.1 only and is tuned for
tests (fsync off).

Usage::

    python deploy/local/postgres.py up     [--state-dir DIR] [--port N]
    python deploy/local/postgres.py down   [--state-dir DIR] [--purge]
    python deploy/local/postgres.py pause  [--state-dir DIR]
    python deploy/local/postgres.py resume [--state-dir DIR]
    python deploy/local/postgres.py status [--state-dir DIR]

``up`` initialises a fresh data dir, starts the server, creates the role
``watchkeeper`` (password ``watchkeeper``) and the database ``watchkeeper``
owned by it, then prints one JSON line
``{"url": "postgresql+psycopg://watchkeeper:watchkeeper@127.0.0.1:PORT/watchkeeper",
"pid": ..., "state_dir": ..., "log": ...}`` on stdout and writes the same JSON
to ``<state-dir>/postgres.json``. ``pause``/``resume`` stop and start the same
server with its data kept; ``down`` stops it (``--purge`` also deletes its
files). Progress and errors go to stderr.

PostgreSQL refuses to run as root, so as root the server's files belong to the
``postgres`` user and its binaries run through ``runuser -u postgres --``; as
any other user they run directly. When ``postgres`` cannot reach the state dir
(a parent is 0700, as under pytest's temporary dirs) or the path is too long
for a unix socket, the server's files go to ``/tmp/watchkeeper-pg-<hash>``
instead; the JSON records where (``data_dir``). Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported by path, not run as a script
    sys.path.insert(0, str(HERE))

from _harness import (  # noqa: E402
    STOP_TIMEOUT_S,
    Failure,
    Help,
    Program,
    apt_get,
    free_port,
    is_root,
    output_tail,
    pid_alive,
    pid_runs,
    require_free_port,
    stop_pid,
)

REPO_ROOT = HERE.parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".run" / "postgres"

DB_USER = "watchkeeper"
DB_PASSWORD = "watchkeeper"
DB_NAME = "watchkeeper"
PG_OS_USER = "postgres"

READY_TIMEOUT_S = 60.0
MAX_SOCKET_DIR_LEN = 80  # sun_path holds 107 bytes; leave room for "/.s.PGSQL.NNNNN"

INFO_FILE = "postgres.json"
LOG_NAME = "postgres.log"

PROGRAM = Program(name="postgres.py", info_file=INFO_FILE)
say = PROGRAM.say
read_info = PROGRAM.read_info


# --------------------------------------------------------------------------
# binaries


def pg_version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name)) or (0,)


def find_bindir() -> Path | None:
    bindirs = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    if bindirs:
        return max(bindirs, key=pg_version_key)
    pg_ctl = shutil.which("pg_ctl")  # other distributions put the binaries on PATH
    if pg_ctl and (Path(pg_ctl).parent / "postgres").exists():
        return Path(pg_ctl).parent
    return None


def install_postgresql() -> None:
    if not is_root() or shutil.which("apt-get") is None:
        raise Failure("PostgreSQL is not installed; install the `postgresql` package (needs root)")
    say("PostgreSQL is not installed: apt-get install postgresql (first run only) ...")
    # Don't let the package create (and maybe start) the system's "main" cluster on port
    # 5432: postgresql-common's postinst reads this file; ucf keeps ours (UCF_FORCE_CONFFOLD).
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            "# written by watchkeeper deploy/local/postgres.py\ncreate_main_cluster = false\n"
        )
    apt_get(
        [
            "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
            "postgresql",
        ],
        UCF_FORCE_CONFFOLD="1",
    )  # fmt: skip


def ensure_bindir() -> Path:
    bindir = find_bindir()
    if bindir is None:
        install_postgresql()
        bindir = find_bindir()
    if bindir is None:
        raise Failure("no PostgreSQL server binaries found under /usr/lib/postgresql/*/bin")
    return bindir


# --------------------------------------------------------------------------
# layout and running things as the postgres user


@dataclass(frozen=True)
class Layout:
    state_dir: Path
    pg_root: Path  # owned by the user the server runs as

    @property
    def data_dir(self) -> Path:
        return self.pg_root / "data"

    @property
    def log(self) -> Path:
        return self.pg_root / LOG_NAME


def as_server_user(cmd: Sequence[str]) -> list[str]:
    return ["runuser", "-u", PG_OS_USER, "--", *cmd] if is_root() else list(cmd)


def run(
    cmd: Sequence[str], cwd: Path, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    try:
        proc = subprocess.run(
            as_server_user(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # the postmaster that pg_ctl forks stays out of our session
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"`{' '.join(cmd)}` timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{output_tail(proc)}")
    return proc


def server_user_can_enter(path: Path) -> bool:
    if not is_root():
        return True
    proc = subprocess.run(
        ["runuser", "-u", PG_OS_USER, "--", "test", "-x", str(path)],
        cwd="/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return proc.returncode == 0


def fallback_root(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(f"/tmp/watchkeeper-pg-{digest}")


def layout_for(state_dir: Path) -> Layout:
    """Where the server's files live; same answer every time for the same state dir."""
    info = read_info(state_dir)
    if info and isinstance(info.get("pg_root"), str):
        return Layout(state_dir, Path(info["pg_root"]))
    inside = state_dir / "pg"
    if (
        len(str(inside / "data")) <= MAX_SOCKET_DIR_LEN
        and state_dir.is_dir()
        and server_user_can_enter(state_dir)
    ):
        return Layout(state_dir, inside)
    return Layout(state_dir, fallback_root(state_dir))


def prepare_pg_root(layout: Layout) -> None:
    root = layout.pg_root
    root.mkdir(parents=True, exist_ok=True)
    if is_root():
        try:
            pw = pwd.getpwnam(PG_OS_USER)
        except KeyError as exc:
            raise Failure(f"there is no `{PG_OS_USER}` user to run PostgreSQL as") from exc
        os.chown(root, pw.pw_uid, pw.pw_gid)
    root.chmod(0o700)
    link = layout.state_dir / LOG_NAME
    if layout.log.parent != layout.state_dir:  # make the log easy to find from the state dir
        with contextlib.suppress(OSError):
            link.unlink(missing_ok=True)
            link.symlink_to(layout.log)


# --------------------------------------------------------------------------
# processes


def postmaster_pid(layout: Layout) -> int | None:
    """The pid of a live postmaster serving ``layout.data_dir``, if any."""
    try:
        pid = int((layout.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid_runs(pid, str(layout.data_dir)) else None


# --------------------------------------------------------------------------
# state


def configured_port(layout: Layout) -> int:
    text = (layout.data_dir / "postgresql.conf").read_text()
    ports = re.findall(r"^port\s*=\s*(\d+)", text, flags=re.MULTILINE)
    if not ports:
        raise Failure(f"no port in {layout.data_dir / 'postgresql.conf'}")
    return int(ports[-1])


def url_for(port: int) -> str:
    return f"postgresql+psycopg://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{port}/{DB_NAME}"


def write_info(layout: Layout, bindir: Path) -> dict[str, Any]:
    port = configured_port(layout)
    pid = postmaster_pid(layout)
    info: dict[str, Any] = {
        "url": url_for(port),
        "pid": pid,
        "state_dir": str(layout.state_dir),
        "log": str(layout.log),
        "port": port,
        "data_dir": str(layout.data_dir),
        "pg_root": str(layout.pg_root),
        "bindir": str(bindir),
    }
    (layout.state_dir / INFO_FILE).write_text(json.dumps(info) + "\n")
    return info


# --------------------------------------------------------------------------
# server control


def init_cluster(layout: Layout, bindir: Path, port: int) -> None:
    shutil.rmtree(layout.data_dir, ignore_errors=True)
    layout.log.unlink(missing_ok=True)
    run(
        [
            str(bindir / "initdb"), "-D", str(layout.data_dir), "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ],
        cwd=layout.pg_root,
    )  # fmt: skip
    settings = f"""
# --- deploy/local/postgres.py: throwaway server for development and tests ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{layout.data_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
"""
    with open(layout.data_dir / "postgresql.conf", "a") as conf:
        conf.write(settings)


def pg_ctl(
    layout: Layout, bindir: Path, action: str, timeout: float, *options: str
) -> subprocess.CompletedProcess[str]:
    """``pg_ctl -D DATA *options -w -t TIMEOUT action``; the caller checks the exit code."""
    return run(
        [
            str(bindir / "pg_ctl"), "-D", str(layout.data_dir), *options,
            "-w", "-t", str(int(timeout)), action,
        ],
        cwd=layout.pg_root,
        timeout=timeout + 10,
        check=False,
    )  # fmt: skip


def start_server(layout: Layout, bindir: Path) -> None:
    port = configured_port(layout)
    require_free_port(port)
    say(f"starting PostgreSQL on 127.0.0.1:{port} (log: {layout.log}) ...")
    proc = pg_ctl(layout, bindir, "start", READY_TIMEOUT_S, "-l", str(layout.log))
    if proc.returncode != 0:
        raise Failure(
            f"pg_ctl start failed (exit {proc.returncode}): {proc.stdout.strip()} "
            f"{proc.stderr.strip()}",
            [layout.log],
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        ready = run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
            cwd=layout.pg_root,
            check=False,
        )
        if ready.returncode == 0:
            return
        if postmaster_pid(layout) is None:
            raise Failure("PostgreSQL exited while starting", [layout.log])
        if time.monotonic() >= deadline:
            raise Failure(
                f"PostgreSQL not ready after {READY_TIMEOUT_S:.0f}s: {ready.stdout.strip()}",
                [layout.log],
            )
        time.sleep(0.3)


def create_app_database(layout: Layout, bindir: Path) -> None:
    port = configured_port(layout)
    psql = [
        str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
        "-h", str(layout.data_dir), "-p", str(port), "-U", "postgres", "-d", "postgres",
    ]  # fmt: skip
    run(
        [
            *psql,
            "-c", f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'",
            "-c", f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}",
        ],
        cwd=layout.pg_root,
    )  # fmt: skip


def stop_server(layout: Layout, bindir: Path | None) -> bool:
    """Stop the server if it runs; return whether it was running."""
    pid = postmaster_pid(layout)
    if pid is None:
        return False
    say(f"stopping PostgreSQL (pid {pid}) ...")
    if bindir is not None:
        pg_ctl(layout, bindir, "stop", STOP_TIMEOUT_S, "-m", "fast")
    if pid_alive(pid):  # pg_ctl missing or failed: signal the postmaster ourselves
        stop_pid(pid, signal.SIGINT)  # "fast" shutdown, then SIGKILL
    say("stopped")
    return True


# --------------------------------------------------------------------------
# commands


def cmd_up(state_dir: Path, port: int | None) -> dict[str, Any]:
    state_dir.mkdir(parents=True, exist_ok=True)
    if is_root():  # let the postgres user through to the data dir below (o+x only)
        state_dir.chmod(state_dir.stat().st_mode | 0o001)
    layout = layout_for(state_dir)
    running = postmaster_pid(layout)
    info = read_info(state_dir)
    if running is not None and info is not None:
        say(f"PostgreSQL is already running for {state_dir} (pid {running}); reusing it")
        return info
    if port is not None:
        require_free_port(port)
    bindir = ensure_bindir()
    stop_server(layout, bindir)  # a leftover server of an earlier `up` of this state dir
    (state_dir / INFO_FILE).unlink(missing_ok=True)
    layout = layout_for(state_dir)
    prepare_pg_root(layout)
    say(f"initialising a fresh cluster in {layout.data_dir} (PostgreSQL {bindir.parent.name})")
    init_cluster(layout, bindir, port if port is not None else free_port())
    started = time.monotonic()
    try:
        start_server(layout, bindir)
        create_app_database(layout, bindir)
    except BaseException:
        stop_server(layout, bindir)
        raise
    info = write_info(layout, bindir)
    say(f"PostgreSQL ready at {info['url']} after {time.monotonic() - started:.1f}s")
    return info


def cmd_resume(state_dir: Path) -> dict[str, Any]:
    layout = layout_for(state_dir)
    if not (layout.data_dir / "PG_VERSION").is_file():
        raise Failure(f"nothing to resume for {state_dir} (run `up` first)")
    bindir = ensure_bindir()
    if postmaster_pid(layout) is None:
        try:
            start_server(layout, bindir)
        except BaseException:
            stop_server(layout, bindir)
            raise
    else:
        say("PostgreSQL is already running")
    return write_info(layout, bindir)


def cmd_stop(state_dir: Path, purge: bool) -> None:
    layout = layout_for(state_dir)
    if not stop_server(layout, find_bindir()):
        say(f"no PostgreSQL running for {state_dir}")
    if purge:
        for path in (layout.pg_root, state_dir):
            if path.exists():
                shutil.rmtree(path)
                say(f"removed {path}")


def cmd_status(state_dir: Path) -> int:
    return PROGRAM.print_status(state_dir, postmaster_pid(layout_for(state_dir)))


def main(argv: Sequence[str] | None = None) -> int:
    return PROGRAM.main(
        argv,
        doc=__doc__,
        default_state_dir=DEFAULT_STATE_DIR,
        texts=Help(
            state_dir=(
                f"holds postgres.json and usually the data dir (default: {DEFAULT_STATE_DIR})"
            ),
            up="initialise a fresh cluster, start it and create the watchkeeper database",
            port="port on 127.0.0.1 (default: a free one)",
            down="stop the server (pg_ctl stop -m fast)",
            purge="also delete the data and state dirs",
            pause="stop the server but keep its data for `resume`",
            resume="start the paused server again with the same data and port",
            status="print postgres.json plus whether the server runs; exit 1 if it does not",
        ),
        up=cmd_up,
        resume=cmd_resume,
        stop=cmd_stop,
        status=cmd_status,
    )


if __name__ == "__main__":
    sys.exit(main())
