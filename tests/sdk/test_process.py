"""Behaviour across process boundaries: exit without flush, crash, asyncio.run ending, fork."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sdk.conftest import API_KEY, FakeIngest, spool_files
from watchkeeper_sdk import Watchkeeper

MakeClient = Callable[..., Watchkeeper]


def run_python(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_events_are_flushed_at_interpreter_exit_without_an_explicit_flush(
    ingest: FakeIngest, spool_dir: Path
) -> None:
    ingest.start()

    result = run_python(
        """
        import sys
        from watchkeeper_sdk import Watchkeeper

        url, key, spool = sys.argv[1:]
        client = Watchkeeper(url, key, "credit", model_version="v1", spool_dir=spool,
                             linger=60.0)  # only the exit flush can send these in time
        print(",".join(client.log_prediction({"i": i}, 0) for i in range(5)))
        """,
        ingest.url,
        API_KEY,
        str(spool_dir),
    )

    assert ingest.accepted_ids() == result.stdout.strip().split(",")
    assert spool_files(spool_dir) == []


def test_a_crashed_process_spool_is_replayed_by_the_next_client(
    ingest: FakeIngest, spool_dir: Path, make_client: MakeClient
) -> None:
    port = ingest.start()
    ingest.stop()  # ingest is down while the first process runs

    result = run_python(
        """
        import os, sys, time
        from watchkeeper_sdk import Watchkeeper

        url, key, spool = sys.argv[1:]
        client = Watchkeeper(url, key, "credit", model_version="v1", spool_dir=spool,
                             max_retries=0, backoff=0.01, linger=0.01)
        ids = [client.log_prediction({"i": i}, 0) for i in range(10)]
        while client.stats().spooled < 10:
            time.sleep(0.01)
        print(",".join(ids), flush=True)
        os._exit(0)  # no atexit, no close: as if killed
        """,
        f"http://127.0.0.1:{port}",
        API_KEY,
        str(spool_dir),
    )
    assert spool_files(spool_dir)

    ingest.start(port)
    make_client(url=ingest.url, transport=None)

    ingest.wait_for(10)
    assert ingest.accepted_ids() == result.stdout.strip().split(",")


def test_asyncio_run_ending_without_aclose_spools_what_is_queued(
    ingest: FakeIngest, spool_dir: Path, make_client: MakeClient
) -> None:
    ingest.start()

    result = run_python(
        """
        import asyncio, sys
        from watchkeeper_sdk import AsyncWatchkeeper

        url, key, spool = sys.argv[1:]

        async def main() -> list[str]:
            client = AsyncWatchkeeper(url, key, "credit", model_version="v1", spool_dir=spool,
                                      linger=60.0)
            return [await client.log_prediction({"i": i}, 0) for i in range(4)]

        print(",".join(asyncio.run(main())))
        """,
        ingest.url,
        API_KEY,
        str(spool_dir),
    )
    assert ingest.accepted_ids() == []  # the loop ended before the linger: nothing sent...
    assert spool_files(spool_dir)  # ...but nothing lost either

    make_client(url=ingest.url, transport=None)
    ingest.wait_for(4)
    assert ingest.accepted_ids() == result.stdout.strip().split(",")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_forked_child_gets_its_own_sender(
    ingest: FakeIngest, spool_dir: Path, make_client: MakeClient
) -> None:
    ingest.start()
    client = make_client(url=ingest.url, transport=None)
    parent_id = client.log_prediction({"who": "parent"}, 0)
    assert client.flush(timeout=5)

    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is gone, the client must still deliver
        code = 1
        try:
            client.log_prediction({"who": "child"}, 1, event_id="from-child")
            code = 0 if client.flush(timeout=10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert ingest.accepted_ids() == [parent_id, "from-child"]
