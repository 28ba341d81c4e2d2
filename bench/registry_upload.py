"""Benchmark: upload a 1 GB reference CSV to a registry process and measure its peak memory.

Generates the CSV in a temporary directory (deleted at the end), starts the registry as its
own process (``python -m services.registry``, SQLite, in-process bus), registers a system,
streams the file to ``POST /v1/systems/{id}/references`` and reads the process's peak resident
set size (``VmHWM`` in ``/proc/<pid>/status``: the high-water mark since it started, imports
included). Prints a table, then one JSON line with the figures.

    make bench-registry            # or: .venv/bin/python bench/registry_upload.py --mb 1024
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from _service import free_port, service  # bench/ helper, beside this script

SYSTEM_ID = "bench-credit"
NUMERIC = [f"x{i}" for i in range(8)]
SYSTEM: dict[str, Any] = {
    "id": SYSTEM_ID,
    "name": "Benchmark credit model",
    "owner": "bench@example.org",
    "task": "binary_classification",
    "features": [
        *({"name": name, "type": "numeric"} for name in NUMERIC),
        {"name": "region", "type": "categorical", "categories": ["north", "south", "east", "west"]},
        {"name": "segment", "type": "categorical"},
        {"name": "existing_customer", "type": "boolean", "nullable": True},
    ],
    "prediction": {"classes": ["0", "1"], "scores": ["1"]},
}
CHUNK_ROWS = 250_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chunk(rng: np.random.Generator, rows: int) -> pa.Table:
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        if i % 3 == 0:
            values = np.round(rng.normal(50.0 * (i + 1), 10.0, rows), 3)
        elif i % 3 == 1:
            values = np.round(rng.lognormal(3.0, 0.8, rows), 2)
        else:
            values = rng.integers(0, 1_000, rows).astype(np.float64)
        columns[name] = values
    columns["region"] = rng.choice(["north", "south", "east", "west"], rows)
    columns["segment"] = np.char.add("s", rng.integers(0, 40, rows).astype(str))
    flags = rng.random(rows)
    columns["existing_customer"] = pa.array(flags < 0.5, mask=flags > 0.95)
    columns["prediction"] = rng.integers(0, 2, rows)
    columns["score_1"] = np.round(rng.beta(2.0, 5.0, rows), 4)
    return pa.table(columns)


def generate(path: Path, target_bytes: int) -> int:
    """Write CSV chunks until the file reaches ``target_bytes``; returns the row count."""
    rng = np.random.default_rng(2024)
    rows = 0
    with pa.OSFile(str(path), "wb") as sink:
        writer: pacsv.CSVWriter | None = None
        while sink.tell() < target_bytes:
            table = chunk(rng, CHUNK_ROWS)
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
            rows += table.num_rows
        if writer is not None:
            writer.close()
    return rows


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def registry_env(work: Path) -> dict[str, str]:
    return {
        "WK_REGISTRY_BUS": "memory",
        "WK_REGISTRY_DATABASE_URL": f"sqlite:///{work / 'registry.db'}",
        "WK_REGISTRY_REFERENCE_DIR": str(work / "references"),
        "WK_REGISTRY_PORT": str(free_port()),
        "WK_REGISTRY_LOG_LEVEL": "WARNING",
    }


class RssSampler:
    """Samples the process's resident set every 50 ms (the curve behind VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(memory_kb(self.pid, "VmRSS"))
            except (OSError, RuntimeError):
                return
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def file_chunks(path: Path, sent: list[int]) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while data := handle.read(1 << 20):
            sent[0] += len(data)
            yield data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the CSV in MiB")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wk-bench-registry-"))
    try:
        csv_path = work / "reference.csv"
        log(f"generating a {args.mb} MiB CSV in {work}")
        started = time.perf_counter()
        rows = generate(csv_path, args.mb << 20)
        size = csv_path.stat().st_size
        log(f"  {rows:,} rows, {size / 2**20:,.0f} MiB in {time.perf_counter() - started:.1f}s")

        with (
            service("registry", registry_env(work), work / "registry.log") as (process, url),
            httpx.Client(base_url=url, timeout=None) as client,
        ):
            response = client.post("/v1/systems", json=SYSTEM)
            response.raise_for_status()
            baseline_kb = memory_kb(process.pid, "VmRSS")
            startup_peak_kb = memory_kb(process.pid, "VmHWM")
            log("uploading")
            sent = [0]
            with RssSampler(process.pid) as sampler:
                started = time.perf_counter()
                response = client.post(
                    f"/v1/systems/{SYSTEM_ID}/references",
                    params={"filename": csv_path.name},
                    headers={"Content-Type": "text/csv", "Content-Length": str(size)},
                    content=file_chunks(csv_path, sent),
                )
                seconds = time.perf_counter() - started
            if response.status_code != 201:
                raise RuntimeError(f"upload failed: {response.status_code} {response.text}")
            uploaded = response.json()
            peak_kb = memory_kb(process.pid, "VmHWM")
            profile = client.get(f"/v1/references/{uploaded['hash']}")
            profile.raise_for_status()

        stored = sum(f.stat().st_size for f in (work / "references").glob("*.parquet"))
        figures = {
            "bench": "registry_reference_upload",
            "upload_mb": round(size / 2**20, 1),
            "rows": uploaded["n_rows"],
            "columns": len(SYSTEM["features"]) + 2,
            "seconds": round(seconds, 1),
            "mb_per_s": round(size / 2**20 / seconds, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "startup_peak_rss_mb": round(startup_peak_kb / 1024, 1),
            "baseline_rss_mb": round(baseline_kb / 1024, 1),
            "max_sampled_rss_mb": round(max(sampler.samples, default=0) / 1024, 1),
            "profile_kb": round(len(profile.content) / 1024, 1),
            "stored_parquet_mb": round(stored / 2**20, 1),
            "target_peak_rss_mb": 300,
            "ok": peak_kb / 1024 < 300,
        }
        print("\nRegistry reference upload (one process, SQLite, CSV streamed over HTTP)")
        for name, value in figures.items():
            if name != "bench":
                print(f"  {name:<22} {value}")
        print(json.dumps(figures))
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
