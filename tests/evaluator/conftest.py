"""Factories for evaluator tests: systems, a synthetic stream, and a processor over SQLite.

``Harness`` drives ``StreamProcessor`` the way the runner does (skip what a checkpoint covers,
apply per partition, checkpoint), with knobs for batch sizes, how the two topics interleave,
and crashes (forget everything since the last checkpoint and resume from it).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlmodel import select

from services.evaluator.app import MIGRATIONS
from services.evaluator.consumer import ProcessorConfig, StreamProcessor
from services.evaluator.decoding import decode_records
from services.evaluator.models import EvaluationRow
from services.evaluator.pacing import OutcomePacer, apply_batch
from services.evaluator.references import ReferenceCache, StaticReferenceSource
from services.evaluator.store import EvaluatorStore
from shared.bus import Record, Topics
from shared.bus.framing import frame
from shared.contracts import (
    FeatureSpec,
    FeatureType,
    Objective,
    OutcomeEvent,
    PredictionEvent,
    SystemSnapshot,
    Task,
    encode,
)
from shared.db import Database
from shared.migrations import OUTBOX, upgrade
from shared.stats import ReferenceProfile
from tests.factories import make_snapshot

T0 = 1_800_000_000.0  # a window-aligned epoch second
WALL = T0 + 200_000.0
"""The harness's wall clock at start: after every event time of the streams here."""
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def objective(metric: str, threshold: float, comparator: str = "ge", **kw: Any) -> Objective:
    params = kw.pop("parameters", {})
    return Objective(
        id=kw.pop("id", f"{metric}-{uuid.uuid4().hex[:6]}"),
        version=1,
        system_id=kw.pop("system_id", "sys"),
        metric=metric,
        parameters=params,
        comparator=comparator,
        threshold=threshold,
        window_seconds=kw.pop("window_seconds", 60),
        min_samples=kw.pop("min_samples", 1),
        owner="q@example.org",
        changed_by="test",
        changed_at=NOW,
        **kw,
    )


def system(
    objectives: Sequence[Objective],
    *,
    system_id: str = "sys",
    reference: ReferenceProfile | None = None,
    features: Sequence[FeatureSpec] | None = None,
    task: Task = Task.BINARY_CLASSIFICATION,
    horizon: int = 3600,
) -> SystemSnapshot:
    return make_snapshot(
        system_id,
        name="test",
        owner="o@example.org",
        task=task,
        features=features
        or [
            FeatureSpec(name="x1", type=FeatureType.NUMERIC),
            FeatureSpec(name="x2", type=FeatureType.NUMERIC, min=-4.0, max=4.0),
            FeatureSpec(name="x3", type=FeatureType.NUMERIC, nullable=True),
            FeatureSpec(name="c", type=FeatureType.CATEGORICAL, categories=["a", "b", "c"]),
        ],
        label_horizon_seconds=horizon,
        objectives=objectives,
        reference_hash=None if reference is None else reference.content_hash,
        updated_at=NOW,
    )


def reference_profile(seed: int = 1, n: int = 4000) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "x1": rng.normal(0, 1, n),
            "x2": rng.normal(0, 1, n),
            "x3": rng.normal(5, 2, n),
            "c": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "prediction": rng.integers(0, 2, n),
        }
    )
    return ReferenceProfile.build(
        data,
        {
            "x1": FeatureType.NUMERIC,
            "x2": FeatureType.NUMERIC,
            "x3": FeatureType.NUMERIC,
            "c": FeatureType.CATEGORICAL,
        },
        prediction="prediction",
    )


@dataclass
class Stream:
    """Records of one partition per topic, in partition order."""

    predictions: list[PredictionEvent] = field(default_factory=list)
    outcomes: list[OutcomeEvent] = field(default_factory=list)


def synthetic_stream(
    *,
    system_id: str = "sys",
    n: int = 3000,
    rate: float = 20.0,
    seed: int = 7,
    shift_from: float | None = None,
    shift: float = 0.0,
    labelled: float = 0.7,
    label_delay_s: float = 90.0,
    duplicates: int = 20,
    unknown_outcomes: int = 10,
) -> Stream:
    """A calibrated binary classifier's predictions with late labels, out-of-order by a few
    seconds, with duplicate events and outcomes for predictions that never came."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n) / rate + rng.uniform(-2.0, 2.0, n)
    x1 = rng.normal(0, 1, n)
    if shift_from is not None:
        x1 = np.where(ts >= shift_from, x1 + shift, x1)
    p = 1 / (1 + np.exp(-1.5 * x1))
    actual = (rng.random(n) < p).astype(int)
    stream = Stream()
    outcomes: list[tuple[float, OutcomeEvent]] = []
    for i in range(n):
        event = PredictionEvent(
            event_id=f"p{seed}-{i}",
            system_id=system_id,
            model_version="m1" if i < n // 2 else "m2",
            timestamp=datetime.fromtimestamp(float(ts[i]), UTC),
            features={
                "x1": float(x1[i]),
                "x2": float(rng.normal()),
                "x3": None if rng.random() < 0.05 else float(rng.normal(5, 2)),
                "c": str(rng.choice(["a", "b", "c", "d"], p=[0.5, 0.3, 0.19, 0.01])),
            },
            prediction=int(p[i] > 0.5),
            scores={"0": float(1 - p[i]), "1": float(p[i])},
            attributes={"g": "u" if rng.random() < 0.4 else "v"},
            latency_ms=float(rng.gamma(2.0, 5.0)),
        )
        stream.predictions.append(event)
        if rng.random() < labelled:
            delay = float(rng.exponential(label_delay_s))
            outcomes.append(
                (
                    float(ts[i]) + delay,
                    OutcomeEvent(
                        event_id=f"o{seed}-{i}",
                        system_id=system_id,
                        prediction_id=event.event_id,
                        timestamp=datetime.fromtimestamp(float(ts[i]) + delay, UTC),
                        actual=int(actual[i]),
                    ),
                )
            )
    for j in rng.choice(n, duplicates, replace=False).tolist():  # at-least-once producers
        stream.predictions.insert(min(j + 5, len(stream.predictions)), stream.predictions[j])
    for k in range(unknown_outcomes):
        when = float(T0 + rng.uniform(0, n / rate))
        outcomes.append(
            (
                when,
                OutcomeEvent(
                    event_id=f"u{seed}-{k}",
                    system_id=system_id,
                    prediction_id=f"never-{k}",
                    timestamp=datetime.fromtimestamp(when, UTC),
                    actual=1,
                ),
            )
        )
    outcomes.sort(key=lambda item: item[0])
    # a few outcomes sent twice, a few a little out of order
    stream.outcomes = [o for _, o in outcomes]
    for j in rng.choice(
        len(stream.outcomes), min(10, len(stream.outcomes)), replace=False
    ).tolist():
        stream.outcomes.insert(min(j + 3, len(stream.outcomes)), stream.outcomes[j])
    return stream


def flush_events(system_id: str, at: float) -> Stream:
    """One prediction and one outcome far ahead, moving both watermarks past everything."""
    when = datetime.fromtimestamp(at, UTC)
    return Stream(
        predictions=[
            PredictionEvent(
                event_id=f"flush-{system_id}",
                system_id=system_id,
                model_version="m2",
                timestamp=when,
                features={"x1": 0.0, "x2": 0.0, "x3": 5.0, "c": "a"},
                prediction=0,
                scores={"0": 0.5, "1": 0.5},
            )
        ],
        outcomes=[
            OutcomeEvent(
                event_id=f"flush-o-{system_id}",
                system_id=system_id,
                prediction_id=f"flush-{system_id}",
                timestamp=when,
                actual=0,
            )
        ],
    )


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        systems: Iterable[SystemSnapshot],
        profiles: Iterable[ReferenceProfile] = (),
        *,
        config: ProcessorConfig | None = None,
        name: str = "run",
        pacer: OutcomePacer | None = None,
    ) -> None:
        self.topics = Topics()
        self.db = Database(f"sqlite:///{tmp_path / (name + '.db')}")
        upgrade(self.db.engine, OUTBOX)
        upgrade(self.db.engine, MIGRATIONS)
        self.systems = {s.system_id: s for s in systems}
        self.cache = ReferenceCache(StaticReferenceSource(profiles), self.db)
        self.config = config or ProcessorConfig(lateness_s=5.0, label_wait_s=1e9)
        self.processor = self._processor()
        self.pacer = pacer
        """Outcomes through the runner's pacer (None: applied as they come)."""
        self.most_held = 0
        self.wall = WALL
        """The wall clock (epoch s): the streams here are historical unless a test says so."""
        self.elapsed = 0.0
        """The processor's monotonic clock: pauses advance it (and the wall clock)."""

    def _processor(self) -> StreamProcessor:
        return StreamProcessor(
            store=EvaluatorStore(self.db, stream=self.topics.predictions),
            topics=self.topics,
            references=self.cache,
            config=self.config,
            clock=lambda: self.elapsed,
            wall_clock=lambda: self.wall,
        )

    async def ready(self) -> None:
        await self.cache.ensure(
            s.reference_hash for s in self.systems.values() if s.reference_hash is not None
        )

    def records(
        self, stream: Stream, partition: int = 0, *, max_events: int = 1
    ) -> tuple[list[Record], list[Record]]:
        """One record per event, or (``max_events`` > 1) events framed as ingest frames a
        system's batch (``shared.bus.framing``)."""
        out = []
        for topic, items in (
            (self.topics.predictions, stream.predictions),
            (self.topics.outcomes, stream.outcomes),
        ):
            values = [encode(e) for e in items]
            if max_events > 1:
                values = [value for value, _, _ in frame(values, max_events=max_events)]
            out.append([Record(topic, partition, i, None, v, 0) for i, v in enumerate(values)])
        return out[0], out[1]

    def feed(self, batch: Sequence[Record]) -> None:
        """One polled batch (any mix of topics and partitions), as the runner applies it."""
        batches, bad = decode_records(batch, self.topics, self.processor.start_offset)
        assert not bad, bad
        if self.pacer is not None:
            self.most_held = max(self.most_held, self.pacer.held())
        apply_batch(self.processor, self.pacer, batches, self.systems)
        if self.pacer is not None:
            self.most_held = max(self.most_held, self.pacer.held())

    def checkpoint(self) -> None:
        self.processor.checkpoint(self.systems)

    def pause(self, seconds: float, *, idle_s: float = 10.0) -> int:
        """The stream stops for ``seconds`` with no lag: the runner's idle closing runs (as
        ``EvaluatorRunner._idle`` calls it); returns how many systems it advanced."""
        self.elapsed += seconds
        self.wall += seconds
        busy = set() if self.pacer is None else self.pacer.systems()
        return self.processor.advance_idle(
            self.systems, idle_s=idle_s, wall_clock_s=self.wall, busy=busy
        )

    def crash(self) -> None:
        """kill -9: everything since the last checkpoint is gone; a new process resumes."""
        self.processor.abort()
        self.processor = self._processor()
        if self.pacer is not None:
            self.pacer.drop()  # held outcomes come again with the rest

    def run(
        self,
        streams: dict[int, Stream],
        *,
        seed: int = 0,
        max_batch: int = 500,
        checkpoint_every: int = 3,
        crashes: int = 0,
        max_events: int = 1,
        pauses: Collection[int] = (),
    ) -> None:
        """Deliver every partition's records, interleaving the topics at random, in random
        batch sizes, crashing ``crashes`` times at random points (and redelivering from the
        checkpoint, as Kafka does from the committed offsets); ``max_events`` > 1 delivers
        the events framed into records; after each batch numbered in ``pauses`` the stream
        pauses for 30 s (idle closing runs)."""
        rng = random.Random(seed)
        queues = {}
        for partition, stream in streams.items():
            preds, outs = self.records(stream, partition, max_events=max_events)
            queues[(self.topics.predictions, partition)] = preds
            queues[(self.topics.outcomes, partition)] = outs
        positions = dict.fromkeys(queues, 0)
        total = sum(len(q) for q in queues.values())
        crash_at = sorted(rng.sample(range(1, max(total, 2)), crashes)) if crashes else []
        delivered = 0
        batches = 0
        while any(positions[k] < len(q) for k, q in queues.items()):
            size = rng.randint(1, max_batch)
            batch: list[Record] = []
            live = [k for k, q in queues.items() if positions[k] < len(q)]
            while len(batch) < size and live:
                key = rng.choice(live)
                take = rng.randint(1, 50)
                chunk = queues[key][positions[key] : positions[key] + take]
                positions[key] += len(chunk)
                batch.extend(chunk)
                live = [k for k, q in queues.items() if positions[k] < len(q)]
            self.feed(batch)
            delivered += len(batch)
            batches += 1
            if crash_at and delivered >= crash_at[0]:
                crash_at.pop(0)
                self.crash()
                # redelivery starts at the committed offsets (here: the checkpoint's)
                for key in positions:
                    topic, partition = key
                    claim_offsets = self.processor.partition(partition).offsets
                    positions[key] = claim_offsets.get(topic, 0)
                continue
            if batches % checkpoint_every == 0:
                self.checkpoint()
            if batches in pauses:
                self.pause(30.0)
        self.feed([])  # an empty poll: whatever is held goes
        self.checkpoint()

    def evaluations(self) -> dict[str, dict[str, Any]]:
        with self.db.session() as session:
            return {row.id: row.payload for row in session.exec(select(EvaluationRow)).all()}


@pytest.fixture
def make_harness(tmp_path: Path) -> Any:
    made: list[Harness] = []

    def make(*args: Any, **kwargs: Any) -> Harness:
        harness = Harness(tmp_path, *args, name=f"run{len(made)}", **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.processor.store.close()
        harness.db.dispose()
