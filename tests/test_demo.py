"""`watchkeeper demo --duration`: the embedded platform raises a nonconformity by itself."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.deployments import REPO_ROOT, free_port


def test_demo_raises_a_nonconformity_and_prints_a_json_summary(tmp_path: object) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "demo",
            "--duration",
            "45",
            "--degrade-after",
            "10",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    last_line = completed.stdout.strip().splitlines()[-1]
    summary = orjson.loads(last_line)
    assert set(summary) == {"events", "evaluations", "nonconformities"}
    assert summary["events"] > 1000
    assert summary["evaluations"] >= 3
    assert summary["nonconformities"] >= 1
