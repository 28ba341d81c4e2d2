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

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".run" / "postgres"

DB_USER = "watchkeeper"
DB_PASSWORD = "watchkeeper"
DB_NAME = "watchkeeper"
PG_OS_USER = "postgres"

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 30
MAX_SOCKET_DIR_LEN = 80  # sun_path holds 107 bytes; leave room for "/.s.PGSQL.NNNNN"

INFO_FILE = "postgres.json"
LOG_NAME = "postgres.log"


class Failure(Exception):
    """A clear, user-facing reason why a command failed."""

    def __init__(self, message: str, log_files: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.log_files = list(log_files)


def say(message: str) -> None:
    print(f"postgres.py: {message}", file=sys.stderr, flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


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
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", UCF_FORCE_CONFFOLD="1")
    for cmd in (
        ["apt-get", "update"],
        [
            "apt-get", "install", "-y", "--no-install-recommends",
            "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
            "postgresql",
        ],
    ):  # fmt: skip
        proc = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise Failure(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


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
        raise Failure(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process that nobody reaped yet is a zombie: count it as dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def postmaster_pid(layout: Layout) -> int | None:
    """The pid of a live postmaster serving ``layout.data_dir``, if any."""
    try:
        pid = int((layout.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid
    return pid if str(layout.data_dir).encode() in args else None


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# state


def read_info(state_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((state_dir / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


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


def start_server(layout: Layout, bindir: Path) -> None:
    port = configured_port(layout)
    if not port_is_free(port):
        raise Failure(f"port {port} on 127.0.0.1 is already in use by another process")
    say(f"starting PostgreSQL on 127.0.0.1:{port} (log: {layout.log}) ...")
    proc = run(
        [
            str(bindir / "pg_ctl"), "-D", str(layout.data_dir), "-l", str(layout.log),
            "-w", "-t", str(int(READY_TIMEOUT_S)), "start",
        ],
        cwd=layout.pg_root,
        timeout=READY_TIMEOUT_S + 10,
        check=False,
    )  # fmt: skip
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
        run(
            [
                str(bindir / "pg_ctl"), "-D", str(layout.data_dir), "-m", "fast",
                "-w", "-t", str(int(STOP_TIMEOUT_S)), "stop",
            ],
            cwd=layout.pg_root,
            timeout=STOP_TIMEOUT_S + 10,
            check=False,
        )  # fmt: skip
    if pid_alive(pid):  # pg_ctl missing or failed: signal the postmaster ourselves
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # "fast" shutdown
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
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
    if port is not None and not port_is_free(port):
        raise Failure(f"port {port} on 127.0.0.1 is already in use by another process")
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
    info = read_info(state_dir) or {"state_dir": str(state_dir)}
    pid = postmaster_pid(layout_for(state_dir))
    info["running"] = pid is not None
    if pid is not None:
        info["pid"] = pid
    print(json.dumps(info), flush=True)
    return 0 if pid is not None else 1


def fail(exc: Failure) -> NoReturn:
    print(f"postgres.py: ERROR: {exc}", file=sys.stderr)
    for path in exc.log_files:
        text = tail(path)
        if text.strip():
            print(f"--- last {LOG_TAIL_LINES} lines of {path} ---\n{text}", file=sys.stderr)
    sys.stderr.flush()
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE_DIR,
            help=f"holds postgres.json and usually the data dir (default: {DEFAULT_STATE_DIR})",
        )
        return p

    up = add("up", "initialise a fresh cluster, start it and create the watchkeeper database")
    up.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    down = add("down", "stop the server (pg_ctl stop -m fast)")
    down.add_argument("--purge", action="store_true", help="also delete the data and state dirs")
    add("pause", "stop the server but keep its data for `resume`")
    add("resume", "start the paused server again with the same data and port")
    add("status", "print postgres.json plus whether the server runs; exit 1 if it does not")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.expanduser().resolve()

    try:
        if args.command == "up":
            info = cmd_up(state_dir, args.port)
        elif args.command == "resume":
            info = cmd_resume(state_dir)
        elif args.command == "status":
            return cmd_status(state_dir)
        else:
            cmd_stop(state_dir, purge=args.command == "down" and args.purge)
            return 0
    except Failure as exc:
        fail(exc)
    except KeyboardInterrupt:
        fail(Failure("interrupted"))
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
