"""What ``kafka.py`` and ``postgres.py`` in this directory share.

Both scripts start a throwaway server whose files live in a state dir, print one
JSON line on stdout and talk to the user on stderr, prefixed with their own name.
This module holds the parts that are the same for both: the user-facing
``Failure``, messages and the error exit (``Program``), the command line
(``Program.main``), ports, processes, log tails and apt-get. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

STOP_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0  # how long to wait for a process to go after SIGKILL
LOG_TAIL_LINES = 30


class Failure(Exception):
    """A clear, user-facing reason why a command failed."""

    def __init__(self, message: str, log_files: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.log_files = list(log_files)


def is_root() -> bool:
    return os.geteuid() == 0


def output_tail(proc: subprocess.CompletedProcess[str], chars: int = 3000) -> str:
    """The end of what ``proc`` wrote to stdout, then the end of its stderr."""
    return f"{proc.stdout[-chars:]}{proc.stderr[-chars:]}"


def apt_get(install_args: Sequence[str], **env: str) -> None:
    """``apt-get update``, then ``apt-get install -y --no-install-recommends *install_args``.

    Both run non-interactively, with ``env`` added to the environment.
    """
    full_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", **env)
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *install_args],
    ):
        proc = subprocess.run(
            cmd, env=full_env, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise Failure(f"`{' '.join(cmd)}` failed:\n{output_tail(proc)}")


# --------------------------------------------------------------------------
# ports and processes


def free_port(exclude: Sequence[int] = ()) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require_free_port(port: int) -> None:
    if not port_is_free(port):
        raise Failure(f"port {port} on 127.0.0.1 is already in use by another process")


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


def pid_runs(pid: int, *args: str) -> bool:
    """True if ``pid`` is alive and each of ``args`` is one of its command-line arguments.

    Without a readable ``/proc/<pid>/cmdline`` a live pid is trusted.
    """
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return all(arg.encode() in cmdline for arg in args)


def stop_pid(
    pid: int,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = STOP_TIMEOUT_S,
    say: Callable[[str], None] | None = None,
) -> None:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL (told to ``say`` if given)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    if say is not None:
        say(f"pid {pid} did not stop within {timeout:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# the program: messages, its JSON file and its command line


@dataclass(frozen=True)
class Help:
    """The help texts of a script's command line."""

    state_dir: str
    up: str
    port: str
    down: str
    purge: str
    pause: str
    resume: str
    status: str


@dataclass(frozen=True)
class Program:
    """One of the scripts: its name in messages and the JSON file it keeps in the state dir."""

    name: str  # e.g. "kafka.py"
    info_file: str  # e.g. "kafka.json"

    def say(self, message: str) -> None:
        print(f"{self.name}: {message}", file=sys.stderr, flush=True)

    def fail(self, exc: Failure) -> NoReturn:
        print(f"{self.name}: ERROR: {exc}", file=sys.stderr)
        for path in exc.log_files:
            text = tail(path)
            if text.strip():
                print(f"--- last {LOG_TAIL_LINES} lines of {path} ---\n{text}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(1)

    def read_info(self, state_dir: Path) -> dict[str, Any] | None:
        try:
            info = json.loads((state_dir / self.info_file).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def print_status(self, state_dir: Path, pid: int | None) -> int:
        """Print the JSON file plus whether the server runs (as ``pid``); 1 if it does not."""
        info = self.read_info(state_dir) or {"state_dir": str(state_dir)}
        info["running"] = pid is not None
        if pid is not None:
            info["pid"] = pid
        print(json.dumps(info), flush=True)
        return 0 if pid is not None else 1

    def main(
        self,
        argv: Sequence[str] | None,
        *,
        doc: str | None,
        default_state_dir: Path,
        texts: Help,
        up: Callable[[Path, int | None], dict[str, Any]],
        resume: Callable[[Path], dict[str, Any]],
        stop: Callable[[Path, bool], None],
        status: Callable[[Path], int],
    ) -> int:
        """Parse ``up|down|pause|resume|status [--state-dir DIR] [--port N] [--purge]``, run it.

        ``up`` and ``resume`` return the JSON to print; ``stop`` gets whether to
        purge (``down --purge``), ``status`` prints and returns the exit code.
        A ``Failure`` (or Ctrl-C) ends the program through ``fail``.
        """
        parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
        sub = parser.add_subparsers(dest="command", required=True)

        def add(name: str, help_text: str) -> argparse.ArgumentParser:
            p = sub.add_parser(name, help=help_text)
            p.add_argument(
                "--state-dir",
                type=Path,
                default=default_state_dir,
                help=texts.state_dir,
            )
            return p

        add("up", texts.up).add_argument("--port", type=int, help=texts.port)
        add("down", texts.down).add_argument("--purge", action="store_true", help=texts.purge)
        add("pause", texts.pause)
        add("resume", texts.resume)
        add("status", texts.status)
        args = parser.parse_args(argv)
        state_dir: Path = args.state_dir.expanduser().resolve()

        try:
            if args.command == "up":
                info = up(state_dir, args.port)
            elif args.command == "resume":
                info = resume(state_dir)
            elif args.command == "status":
                return status(state_dir)
            else:
                stop(state_dir, args.command == "down" and args.purge)
                return 0
        except Failure as exc:
            self.fail(exc)
        except KeyboardInterrupt:
            self.fail(Failure("interrupted"))
        print(json.dumps(info), flush=True)
        return 0
