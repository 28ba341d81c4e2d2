"""A registry change reaches its consumers through the real Kafka registry topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from services.evaluator.app import create_app as create_evaluator
from services.evaluator.references import StaticReferenceSource
from services.evaluator.settings import Settings as EvaluatorSettings
from shared.bus import KafkaBus, Topics
from shared.contracts import EvaluationResult, PredictionEvent, encode
from shared.registry_view import RegistryView
from tests.deployments import first_evaluation
from tests.factories import make_objective, make_prediction, make_system, past_window_start
from tests.registry.conftest import Registry, RegistryFactory

TIMEOUT_S = 60.0


async def eventually(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def kafka_topics(kafka_bootstrap: str) -> AsyncIterator[Topics]:
    yield Topics(prefix=f"t{uuid.uuid4().hex[:8]}.")


@pytest.fixture
async def kafka_registry(
    make_registry: RegistryFactory, kafka_bootstrap: str, kafka_topics: Topics
) -> AsyncIterator[Registry]:
    bus = KafkaBus(kafka_bootstrap, kafka_topics)
    await bus.start()
    try:
        async with make_registry(bus=bus) as registry:
            yield registry
    finally:
        await bus.stop()


@pytest.fixture
async def view(kafka_bootstrap: str, kafka_topics: Topics) -> AsyncIterator[RegistryView]:
    """What evaluator and alerts hold: a view of the registry topic."""
    bus = KafkaBus(kafka_bootstrap, kafka_topics)
    await bus.start()
    registry_view = RegistryView(bus, name="test")
    await registry_view.start()
    try:
        yield registry_view
    finally:
        await registry_view.stop()
        await bus.stop()


def objective_version(view: RegistryView, system_id: str, objective_id: str) -> int | None:
    objective = view.objective(system_id, objective_id)
    return None if objective is None else objective.version


async def test_objective_change_reaches_a_registry_view(
    kafka_registry: Registry, view: RegistryView, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    system = make_system()
    objective = make_objective(threshold=0.8)
    client = kafka_registry.client
    assert (await client.post("/v1/systems", json=system)).status_code == 201
    url = f"/v1/systems/{system['id']}/objectives"
    assert (await client.post(url, json=objective)).status_code == 201
    await eventually(
        lambda: objective_version(view, system["id"], objective["id"]) == 1, "version 1"
    )

    change = {k: v for k, v in objective.items() if k != "id"}
    change |= {"threshold": 0.9, "changed_by": "bob", "change_reason": "tighter"}
    assert (await client.put(f"{url}/{objective['id']}", json=change)).status_code == 200
    await eventually(
        lambda: objective_version(view, system["id"], objective["id"]) == 2, "version 2"
    )
    seen = view.objective(system["id"], objective["id"])
    assert seen is not None
    assert (seen.threshold, seen.changed_by, seen.change_reason) == (0.9, "bob", "tighter")

    # a consumer starting later rebuilds the same state from the compacted topic
    bus = KafkaBus(kafka_bootstrap, kafka_topics)
    await bus.start()
    late = RegistryView(bus, name="late")
    await late.start()
    try:
        assert await late.wait_loaded(TIMEOUT_S)
        assert objective_version(late, system["id"], objective["id"]) == 2
    finally:
        await late.stop()
        await bus.stop()


async def test_a_running_evaluator_judges_the_new_objective_version(
    kafka_registry: Registry, kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> None:
    """The evaluator is running when the objective changes; its next evaluation names v2."""
    evaluator = create_evaluator(
        EvaluatorSettings(
            bus="kafka",
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=kafka_topics.prefix,
            database_url=f"sqlite:///{tmp_path / 'evaluator.db'}",
            group_id=f"{kafka_topics.prefix}evaluator",
            allowed_lateness_s=0.0,
            idle_close_s=1.0,
            tick_s=0.2,
        ),
        references=StaticReferenceSource(),
    )
    system = make_system()
    objective = make_objective(metric="volume", comparator="ge", threshold=1, min_samples=1)
    client = kafka_registry.client
    async with evaluator.router.lifespan_context(evaluator):
        assert (await client.post("/v1/systems", json=system)).status_code == 201
        url = f"/v1/systems/{system['id']}/objectives"
        assert (await client.post(url, json=objective)).status_code == 201
        change = {k: v for k, v in objective.items() if k != "id"}
        change |= {"threshold": 25, "changed_by": "bob", "change_reason": "expect more traffic"}
        assert (await client.put(f"{url}/{objective['id']}", json=change)).status_code == 200

        bus = kafka_registry.bus
        view = RegistryView(bus, name="probe")
        await view.start()
        try:
            await eventually(
                lambda: objective_version(view, system["id"], objective["id"]) == 2, "v2 on topic"
            )
        finally:
            await view.stop()

        start = past_window_start(60)
        events = [
            PredictionEvent.model_validate(
                make_prediction(system["id"], ts=start + timedelta(seconds=i))
            )
            for i in range(10)
        ]
        await bus.producer.send_many(
            bus.topics.predictions, [(system["id"].encode(), encode(e)) for e in events]
        )
        result = await evaluation_of(kafka_registry, objective["id"], version=2)
    assert result.threshold == 25
    assert result.evidence.objective_version == 2
    assert result.n_samples == 10


async def evaluation_of(registry: Registry, objective_id: str, *, version: int) -> EvaluationResult:
    def matches(result: EvaluationResult) -> bool:
        return result.objective_id == objective_id and result.objective_version == version

    result = await first_evaluation(registry.bus, matches, TIMEOUT_S)
    if result is None:
        raise AssertionError(f"no evaluation of {objective_id} v{version} within {TIMEOUT_S:.0f}s")
    return result
