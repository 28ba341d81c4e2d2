"""Evaluator benchmark: throughput on real Kafka, one drift window against Evidently, memory.

Run with ``make bench-evaluator`` (or ``python bench/evaluator.py``). Three parts, printed as
tables, then one JSON line with every figure:

1. **drift window**: one 10,000-row window of 20 features (16 numeric, 4 categorical) against a
   10,000-row reference, then against a 1,000,000-row reference: the evaluator's accumulation
   plus per-feature drift with Evidently's default methods, side by side with Evidently's
   ``DataDriftPreset`` report on the same data; the drifted / not drifted decision and the value
   of every feature are compared (largest |ours - Evidently's|).
2. **throughput**: a throwaway Kafka broker (deploy/local/kafka.py), 20-feature predictions and
   their outcomes produced beforehand, one evaluator process (``python -m services.evaluator``,
   SQLite database) with 10 objectives consuming them; events/s between its first and its
   last checkpoint. Measured twice: with the events framed as ingest writes them (up to 1,000
   events of one system per record, ``shared.bus.framing``; ``events_per_s``) and with one
   record per event (``events_per_s_single_records``); the same in process, without Kafka.
3. **memory**: peak RSS of a process feeding 1 and 10 million events into one window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _service import profile  # bench/ helper, beside this script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.evaluator.columns import ColumnBatch  # noqa: E402
from services.evaluator.plan import WindowPlan  # noqa: E402
from services.evaluator.window import WindowState  # noqa: E402
from shared.bus.framing import frame as frame_values  # noqa: E402
from shared.contracts import (  # noqa: E402
    FeatureSpec,
    FeatureType,
    Objective,
    OutcomeEvent,
    PredictionEvent,
    SystemSnapshot,
    Task,
    encode,
)
from shared.stats import ReferenceProfile, column_drift  # noqa: E402

NUMERIC = [f"n{i}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
SHIFTED = {"n0": 0.5, "n1": 0.3, "n2": 0.05, "c0": None}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def frame(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for name in NUMERIC:
        shift = SHIFTED.get(name, 0.0) if shifted else 0.0
        data[name] = rng.normal(shift or 0.0, 1.0, n)
    for name in CATEGORICAL:
        p = [0.3, 0.5, 0.2] if shifted and name in SHIFTED else [0.5, 0.3, 0.2]
        data[name] = rng.choice(["a", "b", "c"], n, p=p)
    return pd.DataFrame(data)


def feature_types() -> dict[str, FeatureType]:
    types = dict.fromkeys(NUMERIC, FeatureType.NUMERIC)
    types.update(dict.fromkeys(CATEGORICAL, FeatureType.CATEGORICAL))
    return types


def make_system(objectives: list[Objective], reference: ReferenceProfile | None) -> SystemSnapshot:
    return SystemSnapshot(
        system_id="bench",
        name="bench",
        owner="bench",
        task=Task.BINARY_CLASSIFICATION,
        features=[FeatureSpec(name=n, type=t) for n, t in feature_types().items()],
        label_horizon_seconds=3600,
        objectives=objectives,
        reference_hash=None if reference is None else reference.content_hash,
        updated_at=NOW,
    )


def make_objective(
    oid: str, metric: str, threshold: float, comparator: str, **params: str
) -> Objective:
    return Objective(
        id=oid,
        version=1,
        system_id="bench",
        metric=metric,
        parameters=params,
        comparator=comparator,  # type: ignore[arg-type]
        threshold=threshold,
        window_seconds=60,
        min_samples=1,
        owner="bench",
        changed_by="bench",
        changed_at=NOW,
    )


class ArrayBatch(ColumnBatch):
    """A ColumnBatch over ready columns (the benchmark's events are already columnar)."""

    def __init__(self, data: pd.DataFrame) -> None:
        self.size = len(data)
        self.rows = None
        self.ts = np.zeros(self.size)
        self.offsets = np.arange(self.size)
        self._versions = ["m1"] * self.size
        self._cache = {}
        self._keyed = {}
        for name in NUMERIC:
            self._cache[("column", f"feature:{name}", "1")] = data[name].to_numpy(np.float64)
        for name in CATEGORICAL:
            self._cache[("column", f"feature:{name}", "0")] = data[name].to_numpy(object)
        self._cache[("latency",)] = np.full(self.size, 5.0)

    def model_versions(self) -> list[str]:
        return self._versions

    def coded(self, name: str) -> None:
        """No dictionary codes: categories are counted from the object columns (the decoder's
        Arrow codes would spare that work; the drift window is timed without them)."""
        return None


# --- 1. one drift window against Evidently -------------------------------------------------


def drift_window(n_reference: int = 10_000, *, runs: int = 3) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    reference_data = frame(n_reference, 1, shifted=False)
    current = frame(10_000, 2, shifted=True)
    started = time.perf_counter()
    profile = ReferenceProfile.build(reference_data, feature_types())
    profile_s = time.perf_counter() - started
    objective = make_objective("share", "dataset_drift_share", 0.5, "lt")
    plan = WindowPlan.build(make_system([objective], profile), 60, [objective], profile)
    batch = ArrayBatch(current)

    def ours() -> dict[str, tuple[bool, float, bool]]:
        window = WindowState(start=0, size=60, reference_hash=profile.content_hash)
        window.update(plan, batch, np.arange(batch.size), 0, np.arange(batch.size))
        results = {
            name: column_drift(
                profile.features[name], window.accumulators[("column", f"feature:{name}")]
            )
            for name in NUMERIC + CATEGORICAL
        }
        return {n: (r.drifted, r.value, r.approximate) for n, r in results.items()}

    ours()  # warm up imports and caches (the reference's grid is built once per reference)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        decisions = ours()
        timings.append(time.perf_counter() - started)
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    evidently_timings = []
    for _ in range(runs):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = Report([DataDriftPreset()]).run(
                Dataset.from_pandas(current, data_definition=definition),
                Dataset.from_pandas(reference_data, data_definition=definition),
            )
        evidently_timings.append(time.perf_counter() - started)
    theirs: dict[str, tuple[bool, float]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            value = float(metric["value"])
            theirs[config["column"]] = (value >= float(config["threshold"]), value)
    ours_s, theirs_s = min(timings), min(evidently_timings)
    delta = max(abs(decisions[n][1] - theirs[n][1]) for n in NUMERIC + CATEGORICAL)
    agree = all(decisions[n][0] == theirs[n][0] for n in NUMERIC + CATEGORICAL)
    exact = not any(d[2] for d in decisions.values())
    print(f"\n== one drift window: 10,000 rows x 20 features, {n_reference:,}-row reference ==")
    print(f"{'':24}{'seconds':>10}")
    print(f"{'watchkeeper':24}{ours_s:10.4f}")
    print(f"{'evidently DataDriftPreset':24}{theirs_s:10.4f}")
    print(f"speedup {theirs_s / ours_s:.0f}x; profile built in {profile_s:.2f} s (once)")
    print(f"largest |ours - evidently| {delta:.2e}; every column exact: {exact}")
    print("feature  ours  evidently")
    for name in NUMERIC + CATEGORICAL:
        print(f"{name:8} {decisions[name][0]!s:5} {theirs[name][0]!s}")
    suffix = "" if n_reference == 10_000 else f"_{n_reference // 1_000_000}m_reference"
    return {
        f"drift_window_s{suffix}": round(ours_s, 5),
        f"evidently_window_s{suffix}": round(theirs_s, 4),
        f"speedup_vs_evidently{suffix}": round(theirs_s / ours_s, 1),
        f"decisions_agree{suffix}": agree,
        f"max_abs_delta{suffix}": float(f"{delta:.3g}"),
        f"exact{suffix}": exact,
    }


# --- 2. throughput on real Kafka -----------------------------------------------------------


def throughput_objectives() -> list[Objective]:
    return [
        make_objective("acc", "accuracy", 0.7, "ge"),
        make_objective("auc", "roc_auc", 0.7, "ge"),
        make_objective("cov", "label_coverage", 0.3, "ge"),
        make_objective("cbpe", "estimated_accuracy", 0.6, "ge"),
        make_objective("share", "dataset_drift_share", 0.5, "lt"),
        make_objective("psi0", "psi", 0.1, "lt", feature="n0"),
        make_objective("ks1", "ks", 0.0001, "gt", feature="n1"),
        make_objective("miss", "missing_rate", 0.05, "le", feature="n2"),
        make_objective("vol", "volume", 100, "ge"),
        make_objective("p95", "latency_percentile", 50, "le", percentile="95"),
    ]


EVENT_RATE = 1_000.0
"""Predictions per second of event time: 300,000 predictions span five 60 s windows."""
LABEL_DELAY_S = 30.0
"""Mean label delay (exponential): many labels come after their window closed (revisions)."""


def events(n: int, labelled: float, seed: int = 5) -> tuple[list[bytes], list[bytes]]:
    """Predictions in event-time order and, for a share of them, outcomes ordered by their
    own time (a mean ``LABEL_DELAY_S`` later), as a real outcome stream would be."""
    rng = np.random.default_rng(seed)
    data = frame(n, seed, shifted=False)
    t0 = 1_800_000_000.0
    preds = []
    outs: list[tuple[float, bytes]] = []
    columns = {name: data[name].tolist() for name in NUMERIC + CATEGORICAL}
    p = 1 / (1 + np.exp(-data["n0"].to_numpy()))
    for i in range(n):
        at = t0 + i / EVENT_RATE
        event_id = f"e{i}"
        preds.append(
            encode(
                PredictionEvent(
                    event_id=event_id,
                    system_id="bench",
                    model_version="m1",
                    timestamp=datetime.fromtimestamp(at, UTC),
                    features={name: columns[name][i] for name in NUMERIC + CATEGORICAL},
                    prediction=int(p[i] > 0.5),
                    scores={"0": float(1 - p[i]), "1": float(p[i])},
                    latency_ms=float(rng.gamma(2.0, 4.0)),
                )
            )
        )
        if rng.random() < labelled:
            when = at + float(rng.exponential(LABEL_DELAY_S))
            outcome = OutcomeEvent(
                event_id=f"o{i}",
                system_id="bench",
                prediction_id=event_id,
                timestamp=datetime.fromtimestamp(when, UTC),
                actual=int(rng.random() < p[i]),
            )
            outs.append((when, encode(outcome)))
    outs.sort(key=lambda item: item[0])
    return preds, [value for _, value in outs]


def run_json(*cmd: str) -> dict[str, Any]:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def layout(values: list[bytes], framed: bool) -> list[bytes]:
    """The record values: one event each, or framed as ingest frames one system's events
    (``shared.bus.framing``: up to 1,000 events / 512 KiB per record)."""
    return [value for value, _, _ in frame_values(values)] if framed else values


async def produce(
    bootstrap: str,
    prefix: str,
    preds: list[bytes],
    outs: list[bytes],
    snapshot: SystemSnapshot,
    *,
    framed: bool,
) -> None:
    from shared.bus import KafkaBus, Topics

    # a generous timeout: on a busy machine the fresh broker may take a while to elect leaders
    bus = KafkaBus(bootstrap, Topics(prefix=prefix, partitions=1), send_timeout_s=120.0)
    await bus.start()
    try:
        await bus.producer.send(bus.topics.registry, encode(snapshot), key=b"bench")
        for topic, events_ in ((bus.topics.predictions, preds), (bus.topics.outcomes, outs)):
            values = layout(events_, framed)
            for start in range(0, len(values), 10_000):
                await bus.producer.send_many(
                    topic, [(b"bench", v) for v in values[start : start + 10_000]]
                )
    finally:
        await bus.stop()


def consumed(rows: Any) -> tuple[int, int, float]:
    """(records, events, when) the evaluator has checkpointed: its offsets, its event counters,
    and the time (epoch s) of its latest checkpoint."""
    records = events_ = 0
    when = 0.0
    for offsets, state, updated_at in rows:
        if isinstance(updated_at, str):
            updated_at = datetime.fromisoformat(updated_at)
        if updated_at is not None:
            if updated_at.tzinfo is None:  # SQLite keeps the UTC time without its zone
                updated_at = updated_at.replace(tzinfo=UTC)
            when = max(when, updated_at.timestamp())
        offsets = json.loads(offsets) if isinstance(offsets, str) else offsets
        state = json.loads(state) if isinstance(state, str) else state
        records += sum(offsets.values())
        events_ += int(state.get("counters", {}).get("unknown_system_events", 0))
        for system in state.get("systems", {}).values():
            counters = system.get("counters", {})
            events_ += int(counters.get("predictions", 0)) + int(counters.get("outcomes", 0))
    return records, events_, when


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(
    n: int,
    workdir: Path,
    *,
    postgres: bool = False,
    framed: bool = True,
    profile_to: Path | None = None,
    gil: bool = False,
) -> dict[str, Any]:
    import sqlalchemy as sa

    reference = ReferenceProfile.build(frame(10_000, 1, shifted=False), feature_types())
    snapshot = make_system(throughput_objectives(), reference)
    shape = "framed records" if framed else "one record per event"
    print(f"\n== throughput: {n:,} predictions (20 features) + outcomes, 10 objectives, {shape} ==")
    preds, outs = events(n, labelled=0.5)
    total = len(preds) + len(outs)
    total_records = len(layout(preds, framed)) + len(layout(outs, framed))
    workdir = workdir / f"{'postgres' if postgres else 'sqlite'}-{'framed' if framed else 'single'}"
    workdir.mkdir()
    kafka_dir = workdir / "kafka"
    info = run_json(sys.executable, "deploy/local/kafka.py", "up", "--state-dir", str(kafka_dir))
    bootstrap = str(info["bootstrap"])
    pg_dir = workdir / "postgres"
    if postgres:
        pg = run_json(sys.executable, "deploy/local/postgres.py", "up", "--state-dir", str(pg_dir))
        url = str(pg["url"])
    else:
        url = f"sqlite:///{workdir / 'evaluator.db'}"
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    try:
        asyncio.run(produce(bootstrap, prefix, preds, outs, snapshot, framed=framed))
        # the reference profile is preloaded into the evaluator's cache table
        engine = sa.create_engine(url)
        from services.evaluator.app import MIGRATIONS
        from services.evaluator.models import ReferenceRow, ReferenceValuesRow
        from shared.migrations import OUTBOX, upgrade

        upgrade(engine, OUTBOX)
        upgrade(engine, MIGRATIONS)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(ReferenceRow.__table__),  # type: ignore[attr-defined]
                {"hash": reference.content_hash, "profile": reference.model_dump_json()},
            )
            for sha256, blob in reference.blobs().items():  # every reference value, as fetched
                conn.execute(
                    sa.insert(ReferenceValuesRow.__table__),  # type: ignore[attr-defined]
                    {"sha256": sha256, "data": blob},
                )
        env = {
            **os.environ,
            "WK_EVALUATOR_BUS": "kafka",
            "WK_EVALUATOR_KAFKA_BOOTSTRAP": bootstrap,
            "WK_EVALUATOR_TOPIC_PREFIX": prefix,
            "WK_EVALUATOR_TOPIC_PARTITIONS": "1",
            "WK_EVALUATOR_DATABASE_URL": url,
            "WK_EVALUATOR_PORT": "0",
            "WK_EVALUATOR_IDLE_CLOSE_S": "100000",
            # the events are dated 2027 (after the objectives' creation): no future-skew guard
            "WK_EVALUATOR_MAX_FUTURE_SKEW_S": "1000000000",
            "WK_EVALUATOR_LOG_LEVEL": "WARNING",
        }
        log = (workdir / "evaluator.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.evaluator"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        profiler = profile(proc.pid, profile_to, gil=gil, threads=not gil) if profile_to else None
        try:
            # (checkpoint time, events): the rate is taken between the evaluator's own
            # checkpoint timestamps, not when this loop happened to see them
            first: tuple[float, int] | None = None
            last: tuple[float, int] = (0.0, 0)
            cpu_first = cpu_last = seen_first = seen_last = 0.0
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                time.sleep(0.25)
                if proc.poll() is not None:
                    raise RuntimeError((workdir / "evaluator.log").read_text()[-3000:])
                try:
                    with engine.connect() as conn:
                        rows = conn.execute(
                            sa.text("SELECT offsets, state, updated_at FROM evaluator_partition")
                        ).all()
                except sa.exc.OperationalError:
                    continue
                records, done, when = consumed(rows)
                if done and first is None:
                    first = (when, done)
                    cpu_first, seen_first = cpu_seconds(proc.pid), time.monotonic()
                if done != last[1]:
                    last = (when, done)
                    cpu_last, seen_last = cpu_seconds(proc.pid), time.monotonic()
                if records >= total_records:
                    break
            assert first is not None and last[1] >= total, f"consumed {last[1]} of {total}"
            rate = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
            busy = (cpu_last - cpu_first) / max(seen_last - seen_first, 1e-9)
            with engine.connect() as conn:
                n_eval, n_revised = conn.execute(
                    sa.text(
                        "SELECT count(*), coalesce(sum(CASE WHEN revision > 0 THEN 1 ELSE 0 END), "
                        "0) FROM evaluator_evaluation"
                    )
                ).one()
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            proc.terminate()
            proc.wait(timeout=60)
            engine.dispose()
    finally:
        servers = [("kafka.py", kafka_dir)] + ([("postgres.py", pg_dir)] if postgres else [])
        for script, state_dir in servers:
            subprocess.run(
                [
                    sys.executable,
                    f"deploy/local/{script}",
                    "down",
                    "--purge",
                    "--state-dir",
                    str(state_dir),
                ],
                cwd=REPO,
                capture_output=True,
                timeout=300,
            )
    store = "PostgreSQL" if postgres else "SQLite"
    print(
        f"events {total:,} in {total_records:,} records  evaluations {n_eval} ({n_revised} "
        f"revisions)  events/s {rate:,.0f}  ({store} state; the evaluator process used "
        f"{busy:.0%} of one core)"
    )
    key = "events_per_s_postgres" if postgres else "events_per_s"
    if not framed:
        key += "_single_records"
    return {key: round(rate), "throughput_events": total}


def server_cpu_seconds(postmaster: int) -> float:
    """CPU time of a PostgreSQL server so far: the postmaster and its backends."""
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
    ).stdout.split()
    return sum(cpu_seconds(int(pid)) for pid in [postmaster, *children])


def in_process(
    n: int, workdir: Path, *, framed: bool = True, postgres: bool = False
) -> dict[str, Any]:
    """The same records through decoding and ``StreamProcessor`` in this process, without
    Kafka (polls of about 5,000 events, two thirds predictions, a checkpoint every 20 polls,
    SQLite state, or with ``postgres`` a throwaway PostgreSQL, whose CPU time is reported):
    what the evaluator's own code costs, the ceiling of one process."""
    from services.evaluator.app import MIGRATIONS
    from services.evaluator.consumer import ProcessorConfig, StreamProcessor
    from services.evaluator.decoding import decode_records
    from services.evaluator.references import ReferenceCache, StaticReferenceSource
    from services.evaluator.store import EvaluatorStore
    from shared.bus import Record, Topics
    from shared.db import Database
    from shared.migrations import OUTBOX, upgrade

    reference = ReferenceProfile.build(frame(10_000, 1, shifted=False), feature_types())
    snapshot = make_system(throughput_objectives(), reference)
    preds, outs = events(n, labelled=0.5)
    topics = Topics(prefix="bench.")
    pg_dir = workdir / f"in-process-postgres-{framed}"
    postmaster = 0
    if postgres:
        pg = run_json(sys.executable, "deploy/local/postgres.py", "up", "--state-dir", str(pg_dir))
        db = Database(str(pg["url"]))
        postmaster = int(pg["pid"])
    else:
        db = Database(f"sqlite:///{workdir / f'in-process-{framed}.db'}")
    upgrade(db.engine, OUTBOX)
    upgrade(db.engine, MIGRATIONS)
    cache = ReferenceCache(StaticReferenceSource([reference]), db)
    asyncio.run(cache.ensure([reference.content_hash]))
    processor = StreamProcessor(
        store=EvaluatorStore(db, stream=topics.predictions),
        topics=topics,
        references=cache,
        config=ProcessorConfig(max_future_skew_s=1e9),  # events dated 2027
    )
    systems = {snapshot.system_id: snapshot}
    n_polls = -(-len(preds) // 3334)
    polls: list[list[Record]] = [[] for _ in range(n_polls)]
    for topic, values, per_poll in (
        (topics.predictions, preds, 3334),
        (topics.outcomes, outs, 1667),
    ):
        records = (
            frame_values(values)
            if framed
            else [(value, i, i + 1) for i, value in enumerate(values)]
        )
        for offset, (value, start, _) in enumerate(records):
            poll = polls[min(start // per_poll, n_polls - 1)]
            poll.append(Record(topic, 0, offset, b"bench", value, 0))
    server = server_cpu_seconds(postmaster) if postgres else 0.0
    started, cpu = time.perf_counter(), time.process_time()
    for k, poll in enumerate(polls):
        batches, _ = decode_records(poll, topics, processor.start_offset)
        for partition, part in sorted(batches.items()):
            processor.apply(partition, part.predictions, part.outcomes, systems)
            processor.advance(partition, part.seen)
        if k % 20 == 19:
            processor.checkpoint(systems)
    processor.checkpoint(systems)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if postgres:  # before the backend exits with its CPU time
        server = server_cpu_seconds(postmaster) - server
    processor.store.close()
    db.dispose()
    figures: dict[str, Any] = {}
    note = ""
    if postgres:
        down = ["down", "--purge", "--state-dir", str(pg_dir)]
        subprocess.run(
            [sys.executable, "deploy/local/postgres.py", *down],
            cwd=REPO,
            capture_output=True,
            timeout=300,
        )
        note = f"; PostgreSQL server CPU {server:.1f} s"
        figures["postgres_server_cpu_s_in_process"] = round(server, 2)
    total = len(preds) + len(outs)
    shape = "framed records" if framed else "one record per event"
    state = "PostgreSQL" if postgres else "SQLite"
    print(f"\n== in process, no Kafka: {total:,} events, {shape}, {state} state ==")
    print(f"events/s {total / wall:,.0f}  (CPU {cpu:.1f} s for {wall:.1f} s{note})")
    key = "events_per_s_in_process" + ("" if framed else "_single_records")
    key += "_postgres" if postgres else ""
    figures[key] = round(total / wall)
    return figures


# --- 3. memory with 1 and 10 million events in one window ----------------------------------


def memory_child(events_total: int) -> None:
    """Feed ``events_total`` events into one window (all drift, quality and ops needs of 20
    features), checkpointing it every 100,000 events, and print the peak RSS in MB."""
    reference = ReferenceProfile.build(frame(10_000, 1, shifted=False), feature_types())
    objectives = [make_objective("share", "dataset_drift_share", 0.5, "lt")] + [
        make_objective(f"miss-{n}", "missing_rate", 0.1, "le", feature=n) for n in NUMERIC
    ]
    plan = WindowPlan.build(make_system(objectives, reference), 60, objectives, reference)
    window = WindowState(start=0, size=60, reference_hash=reference.content_hash)
    batches = [ArrayBatch(frame(10_000, 10 + i, shifted=False)) for i in range(3)]
    rows = np.arange(10_000)
    offsets = np.arange(10_000)
    for i in range(events_total // 10_000):
        window.update(plan, batches[i % 3], rows, 0, offsets)
        if i % 10 == 0:
            WindowState.from_json(window.to_json())
    # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec)
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                print(int(line.split()[1]) / 1024)
                return
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def memory() -> dict[str, Any]:
    figures = {}
    for label, n in (("1m", 1_000_000), ("10m", 10_000_000)):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        figures[f"peak_rss_mb_{label}"] = round(float(out.stdout.strip().splitlines()[-1]), 1)
    print("\n== memory: one window ==")
    print(f"1M events  {figures['peak_rss_mb_1m']:8.1f} MB")
    print(f"10M events {figures['peak_rss_mb_10m']:8.1f} MB")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-child", type=int)
    parser.add_argument("--events", type=int, default=int(os.environ.get("BENCH_EVENTS", "300000")))
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument(
        "--skip-million", action="store_true", help="no drift window on a 1,000,000-row reference"
    )
    parser.add_argument("--only-kafka", action="store_true", help="only the throughput part")
    parser.add_argument(
        "--postgres", action="store_true", help="also measure throughput with PostgreSQL state"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the evaluator during one Kafka run (--profile-case), collapsed stacks here",
    )
    parser.add_argument(
        "--gil", action="store_true", help="with --profile: only samples holding the GIL"
    )
    parser.add_argument(
        "--profile-case",
        choices=["sqlite", "single", "postgres"],
        default="sqlite",
        help="with --profile: the Kafka run to profile (framed + SQLite, one record per event, "
        "framed + PostgreSQL)",
    )
    parser.add_argument(
        "--cases",
        default="in-process,sqlite,single,postgres",
        help="with the Kafka parts: which to run (comma-separated; postgres needs --postgres)",
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    figures: dict[str, Any] = {}
    if not args.only_kafka:
        figures.update(drift_window())
        if not args.skip_million:
            figures.update(drift_window(1_000_000, runs=1))
    if not args.skip_kafka:
        workdir = Path(tempfile.mkdtemp(prefix="wk-bench-"))
        try:
            cases = set(args.cases.split(","))
            if "in-process" in cases:
                figures.update(in_process(args.events, workdir))
                figures.update(in_process(args.events, workdir, framed=False))
                if args.postgres:
                    figures.update(in_process(args.events, workdir, postgres=True))
            for case, postgres, framed in (
                ("sqlite", False, True),
                ("single", False, False),
                ("postgres", True, True),
            ):
                if case not in cases or (postgres and not args.postgres):
                    continue
                profile_to = args.profile if args.profile_case == case else None
                figures.update(
                    throughput(
                        args.events,
                        workdir,
                        postgres=postgres,
                        framed=framed,
                        profile_to=profile_to,
                        gil=args.gil,
                    )
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.only_kafka:
        figures.update(memory())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
